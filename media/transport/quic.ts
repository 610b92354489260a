// Thin adapter from Deno's native QUIC to the neutral session shape the node works with.
// Everything above this file sees only `TransportSession` (a subset of the W3C WebTransport
// interface), so a TCP fallback transport can plug in beside it.
import { denoApi, type QuicEndpointLike, type QuicListenerLike } from "./deno.ts";

export interface TransportStreamPair {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

/** One terminal's WebTransport session, as the node needs it. */
export interface TransportSession {
  /** The request URL (path and query; never carries a token). */
  readonly url: string;
  /** Largest datagram that can be sent on this session. */
  readonly maxDatagramSize: number;
  readonly datagrams: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> };
  readonly incomingBidirectionalStreams: ReadableStream<TransportStreamPair>;
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
  close(info?: { closeCode?: number; reason?: string }): void;
  /** Settles (either way) when the session is gone. */
  readonly closed: Promise<unknown>;
}

export interface TransportServer {
  readonly port: number;
  /** Serves new handshakes with this certificate; open sessions keep theirs. */
  setCertificate(cert: string, key: string): void;
  close(): void;
}

export interface QuicServerOptions {
  hostname: string;
  port: number;
  cert: string;
  key: string;
  /** QUIC idle timeout, ms: a vanished terminal is noticed by QUIC itself after this. */
  maxIdleTimeoutMs?: number;
  onError?: (err: unknown) => void;
}

/** Listens for WebTransport over QUIC (HTTP/3) and hands every ready session to `onSession`. */
export function listenQuic(opts: QuicServerOptions, onSession: (s: TransportSession) => void): TransportServer {
  const Deno = denoApi();
  const endpoint: QuicEndpointLike = new Deno.QuicEndpoint({ hostname: opts.hostname, port: opts.port });
  const onError = opts.onError ?? (() => {});
  let listener: QuicListenerLike | undefined;
  let closed = false;

  const serve = async (l: QuicListenerLike) => {
    try {
      for await (const incoming of l) {
        void (async () => {
          const conn = await incoming.accept();
          conn.closed.catch(() => {});
          const wt = await Deno.upgradeWebTransport(conn);
          wt.closed.catch(() => {});
          await wt.ready;
          onSession(adapt(wt));
        })().catch(onError);
      }
    } catch (err) {
      if (!closed) onError(err);
    }
  };

  const listen = (cert: string, key: string) => {
    // Re-listening on the same endpoint swaps the certificate for new handshakes only; open
    // connections keep theirs. The old listener must stop first: stopping it after the new
    // one is made stops the endpoint accepting at all (Deno 2.9).
    try { listener?.stop(); } catch { /* already stopped */ }
    const next = endpoint.listen({ cert, key, alpnProtocols: ["h3"], maxIdleTimeout: opts.maxIdleTimeoutMs ?? 30_000 });
    listener = next;
    void serve(next);
  };
  listen(opts.cert, opts.key);

  return {
    port: endpoint.addr.port,
    setCertificate: listen,
    close() {
      closed = true;
      try { listener?.stop(); } catch { /* gone */ }
      try { endpoint.close({ closeCode: 0, reason: "node stopping" }); } catch { /* gone */ }
    },
  };
}

function adapt(wt: WebTransport & { url: string }): TransportSession {
  return {
    url: wt.url,
    get maxDatagramSize() {
      return wt.datagrams.maxDatagramSize;
    },
    datagrams: wt.datagrams as unknown as TransportSession["datagrams"],
    incomingBidirectionalStreams: wt.incomingBidirectionalStreams as unknown as ReadableStream<TransportStreamPair>,
    incomingUnidirectionalStreams: wt.incomingUnidirectionalStreams as unknown as ReadableStream<ReadableStream<Uint8Array>>,
    createUnidirectionalStream: () => wt.createUnidirectionalStream() as unknown as Promise<WritableStream<Uint8Array>>,
    close: (info) => {
      try { wt.close(info); } catch { /* already closed */ }
    },
    closed: wt.closed.then(() => undefined, () => undefined),
  };
}
