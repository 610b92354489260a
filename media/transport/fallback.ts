// Thin adapter for the TCP fallback: WebTransport over WebSocket (and the HTTP/2 mapping) with
// `@fails-components/webtransport`'s pure-JS `Http2Server`, in the node's own Deno process. It
// hands the node the same `TransportSession` shape as the QUIC adapter (quic.ts), so sessions,
// probes and the relay above it cannot tell the two apart. Terminals reach it when UDP is
// blocked on their network (the SDK's connectivity ladder, client/sdk/connect.ts).
//
// Differences smoothed over here: the package's sessions carry the request path in
// `header[':path']` (no `url`), want `datagrams.createWritable()` (plain `writable` is
// deprecated and warns) and announce a `maxDatagramSize` of 16 KB — the relay sizes a group's
// fragments to the smallest member, so a QUIC member's ~1.2 KB still rules a mixed group.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { randomBytes, toBase64Url } from "../../src/bytes.ts";
import type { TransportServer, TransportSession, TransportStreamPair } from "./quic.ts";
import { denoApi } from "./deno.ts";

export interface FallbackServerOptions {
  hostname: string;
  /** TCP port; 0 picks a free one (the `port` of the result says which). */
  port: number;
  cert: string;
  key: string;
  /** Request paths served (the session and probe paths). */
  paths: string[];
  onError?: (err: unknown) => void;
  /**
   * Files `cert`/`key` came from (a CA-signed pair): re-read every `checkMs` and served to new
   * connections once they hold a new, valid, matching pair, so a renewal needs no restart.
   */
  certFiles?: { cert: string; key: string; checkMs: number };
  /** Outcome of each change seen in `certFiles` (for the node's log). */
  onCertFiles?: (outcome: { ok: true; validTo: string } | { ok: false; reason: string }) => void;
}

/**
 * Why a PEM certificate and key cannot be served (undefined: they can). Deno's TLS takes a
 * mismatched pair without a word and then fails every handshake, so it is checked first.
 */
export function certificatePairProblem(certPem: string, keyPem: string, now = Date.now()): string | undefined {
  let x: X509Certificate;
  try {
    x = new X509Certificate(certPem);
  } catch {
    return "the certificate file holds no PEM certificate";
  }
  try {
    if (!x.checkPrivateKey(createPrivateKey(keyPem))) return "the key does not belong to the certificate";
  } catch {
    return "the key file holds no PEM private key";
  }
  if (Date.parse(x.validFrom) > now) return `the certificate is not valid before ${x.validFrom}`;
  if (Date.parse(x.validTo) <= now) return `the certificate expired ${x.validTo}`;
  return undefined;
}

/** The package's server session, as much of it as this adapter touches. */
interface PackageSession {
  readonly ready: Promise<unknown>;
  readonly closed: Promise<unknown>;
  readonly header?: Record<string, string | string[] | undefined>;
  readonly datagrams: {
    readonly readable: ReadableStream<Uint8Array>;
    readonly maxDatagramSize: number;
    createWritable?: () => WritableStream<Uint8Array>;
    readonly writable?: WritableStream<Uint8Array>;
  };
  readonly incomingBidirectionalStreams: ReadableStream<TransportStreamPair>;
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
  close(info?: { closeCode?: number; reason?: string }): void;
}

interface PackageServer {
  startServer(): void;
  stopServer(): void;
  readonly ready: Promise<void>;
  address(): { port: number; host: string } | null;
  sessionStream(path: string): ReadableStream<PackageSession>;
  updateCert(cert: string, key: string, http2only: boolean): void;
}

type Http2ServerCtor = new (args: { port: number; host: string; secret: string; cert: string; privKey: string }) => PackageServer;

/**
 * Whether an uncaught error was thrown inside the package, or inside Deno's `node:http2` under
 * it (only the fallback uses that module here; a client leaving mid-stream can throw there, in
 * `doStreamClose`, about 1 run in 8 of test/media/fallback.test.ts). main.ts keeps serving
 * through those.
 */
export function isFallbackPackageError(err: unknown): boolean {
  const stack = String((err as Error)?.stack ?? "");
  return stack.includes("@fails-components/webtransport") || stack.includes("ext:deno_node/http2.ts");
}

/** Listens for WebTransport over WebSocket/HTTP-2 on TCP and hands every ready session to `onSession`. */
export async function listenFallback(opts: FallbackServerOptions, onSession: (s: TransportSession) => void): Promise<TransportServer> {
  const onError = opts.onError ?? (() => {});
  // Imported here so a node started without the fallback never loads the package (it logs a
  // harmless "cannot load the HTTP/3 transport" line: only its HTTP/2 part is used).
  const { Http2Server } = (await import("@fails-components/webtransport")) as unknown as { Http2Server: Http2ServerCtor };
  const server = new Http2Server({
    port: opts.port, host: opts.hostname,
    // Keys the package's own session bookkeeping; nothing outside this process sees it.
    secret: toBase64Url(randomBytes(24)),
    cert: opts.cert, privKey: opts.key,
  });
  const streams = opts.paths.map((p) => server.sessionStream(p));
  // Under Deno a failed listen of `node:http2` (port taken) is an unhandled rejection, not the
  // server's 'error' event: `ready` would never settle and the node would hang half started.
  if (opts.port !== 0) {
    try {
      denoApi().listen({ hostname: opts.hostname, port: opts.port, transport: "tcp" }).close();
    } catch (err) {
      throw new Error(`TCP port ${opts.port} is not available (${(err as Error)?.name ?? err})`);
    }
  }
  server.startServer();
  let waited: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      server.ready,
      new Promise((_, reject) => { waited = setTimeout(() => reject(new Error(`not listening on TCP port ${opts.port} after 10 s`)), 10_000); }),
    ]);
  } catch (err) {
    try { server.stopServer(); } catch { /* never started */ }
    throw err;
  } finally {
    clearTimeout(waited);
  }
  const port = server.address()?.port ?? opts.port;
  let closed = false;
  const reload = opts.certFiles ? watchCertFiles(opts, (cert, key) => server.updateCert(cert, key, true)) : undefined;
  for (const stream of streams) {
    void (async () => {
      const reader = stream.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || closed) return;
        void (async () => {
          value.closed.catch(() => {});
          await value.ready;
          onSession(adapt(value, opts.hostname, port));
        })().catch(onError);
      }
    })().catch((err) => { if (!closed) onError(err); });
  }
  return {
    port,
    setCertificate(cert, key) {
      try { server.updateCert(cert, key, true); } catch (err) { onError(err); }
    },
    close() {
      closed = true;
      if (reload) clearInterval(reload);
      try { server.stopServer(); } catch { /* gone */ }
    },
  };
}

/** Polls the certificate files; a new pair that passes `certificatePairProblem` is served. */
function watchCertFiles(opts: FallbackServerOptions, serve: (cert: string, key: string) => void): ReturnType<typeof setInterval> {
  const files = opts.certFiles!;
  const report = opts.onCertFiles ?? (() => {});
  let served = { cert: opts.cert, key: opts.key };
  // A renewal may be caught half written (new certificate, old key): said once, retried.
  let refused = "";
  let busy = false;
  return setInterval(async () => {
    if (busy) return;
    busy = true;
    const refuse = (reason: string, key: string) => {
      if (refused !== key) report({ ok: false, reason: `${reason}; still serving the previous certificate` });
      refused = key;
    };
    try {
      const Deno = denoApi();
      const read = (path: string) => Deno.readTextFile(path);
      let cert: string, key: string;
      try {
        [cert, key] = await Promise.all([read(files.cert), read(files.key)]);
      } catch (err) {
        const reason = `cannot read the certificate files (${(err as Error)?.name ?? "error"})`;
        return refuse(reason, reason);
      }
      if (cert === served.cert && key === served.key) return;
      const problem = certificatePairProblem(cert, key);
      if (problem) return refuse(problem, cert + key);
      try {
        serve(cert, key);
      } catch (err) {
        return refuse(`the TLS listener refused the pair (${(err as Error)?.message?.slice(0, 80) ?? "error"})`, cert + key);
      }
      served = { cert, key };
      refused = "";
      report({ ok: true, validTo: new X509Certificate(cert).validTo });
    } finally {
      busy = false;
    }
  }, files.checkMs);
}

/** The request path of a package session (`header[':path']`, with any query). */
export function pathOf(header: PackageSession["header"]): string {
  const p = header?.[":path"];
  const path = Array.isArray(p) ? p[0] : p;
  return typeof path === "string" && path.startsWith("/") ? path : "/";
}

function adapt(s: PackageSession, host: string, port: number): TransportSession {
  let writable: WritableStream<Uint8Array> | undefined;
  // The node cancels its readers when a session ends; the package then closes the same stream
  // itself and throws out of an event handler ("cannot close or enqueue"). A pass-through that
  // never cancels its source keeps the package's stream for the package to close.
  const relay = new TransformStream<Uint8Array, Uint8Array>();
  s.datagrams.readable.pipeTo(relay.writable, { preventCancel: true }).catch(() => {});
  const datagrams = {
    readable: relay.readable,
    get writable(): WritableStream<Uint8Array> {
      writable ??= s.datagrams.createWritable ? s.datagrams.createWritable() : s.datagrams.writable!;
      return writable;
    },
  };
  return {
    url: `https://${host.includes(":") ? `[${host}]` : host}:${port}${pathOf(s.header)}`,
    get maxDatagramSize() {
      return s.datagrams.maxDatagramSize || 16_384;
    },
    datagrams,
    incomingBidirectionalStreams: s.incomingBidirectionalStreams,
    incomingUnidirectionalStreams: s.incomingUnidirectionalStreams,
    createUnidirectionalStream: () => s.createUnidirectionalStream(),
    close: (info) => {
      try { s.close(info); } catch { /* already closed */ }
    },
    closed: s.closed.then(() => undefined, () => undefined),
  };
}
