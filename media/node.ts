// The media node put together: certificates, QUIC transport, relay core, sessions, control API
// and edge reporter. main.ts builds it from the environment; tests and the bench build it in
// process with their own settings.
import type { JWTVerifyGetKey } from "jose";
import { CertRotation, pemHash } from "./cert.ts";
import { EdgeAuth, edgeJwks } from "./auth.ts";
import { createApi } from "./api.ts";
import { EdgeReporter } from "./reporter.ts";
import { EventJournal, type JournaledEvent } from "./journal.ts";
import { JournalFile } from "./journal-file.ts";
import { signingFetch } from "./node-auth.ts";
import { ProbeServer, isProbeSession, PROBE_PATH } from "./probe.ts";
import { CascadeManager, isCascadeJti, isCascadeSession } from "./cascade/manager.ts";
import { RevocationPoller } from "./revocations.ts";
import { LoadMeter } from "./metrics.ts";
import { Relay, type RelayLimits } from "./relay/relay.ts";
import { DEFAULT_SESSION_OPTIONS, NodeSession, type SessionOptions } from "./session.ts";
import { listenQuic, type TransportServer, type TransportSession } from "./transport/quic.ts";
import { certificatePairProblem, listenFallback } from "./transport/fallback.ts";
import { denoApi, type HttpServerLike } from "./transport/deno.ts";

export interface NodeConfig {
  nodeId: string;
  region: string;
  secret: string;
  edgeUrl: string;
  issuer: string;
  mediaHost: string;
  mediaPort: number;
  publicUrl: string;
  apiHost: string;
  apiPort: number;
  apiPublicUrl: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  capacity: { maxSessions: number; maxGroups: number; maxKbpsOut: number };
  heartbeatMs: number;
  limits: Partial<RelayLimits>;
  session: Partial<SessionOptions>;
  certValidityMs?: number;
  certRotateEveryMs?: number;
  /** How often the node re-checks the edge's revocation feed, ms (media/revocations.ts; default 5000). */
  revocationCheckMs?: number;
  /** WebTransport over WebSocket/HTTP-2 on TCP for terminals whose network blocks UDP (media/transport/fallback.ts). */
  fallback?: FallbackConfig;
  /** The node's own state (the event journal, media/journal.ts); without it events are queued in memory only. */
  stateDir?: string;
}

export interface FallbackConfig {
  host: string;
  /** TCP port; by default the QUIC port's number (0: any free port). */
  port: number;
  /** URL terminals use for the fallback; by default the session URL's host on `port`. */
  publicUrl?: string;
  /** A certificate browsers trust (a WebSocket cannot pin a hash): CA-signed in production. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** How often that pair's files are re-read for a renewal, ms (default 60000; 0: never). */
  tlsReloadMs?: number;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

function int(env: Record<string, string | undefined>, name: string, fallback: number): number {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`${name} must be a non-negative number`);
  return n;
}

export function configFromEnv(env: Record<string, string | undefined>): NodeConfig {
  const need = (name: string) => {
    const v = env[name];
    if (!v) throw new ConfigError(`${name} is required`);
    return v;
  };
  const mediaHost = env.MEDIA_HOST || "127.0.0.1";
  const mediaPort = int(env, "MEDIA_PORT", 4433);
  const apiHost = env.MEDIA_API_HOST || "127.0.0.1";
  const apiPort = int(env, "MEDIA_API_PORT", 4434);
  if ((env.TLS_CERT_FILE && !env.TLS_KEY_FILE) || (!env.TLS_CERT_FILE && env.TLS_KEY_FILE)) {
    throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together");
  }
  const maxSessions = int(env, "MAX_SESSIONS", 1000);
  const maxGroups = int(env, "MAX_GROUPS", 500);
  const limits: Partial<RelayLimits> = { maxSessions, maxGroups };
  if (env.MEDIA_PING_INTERVAL_MS) limits.pingIntervalMs = int(env, "MEDIA_PING_INTERVAL_MS", 2000);
  if (env.MEDIA_MAX_DATAGRAMS_PER_SEC) limits.maxDatagramsPerSec = int(env, "MEDIA_MAX_DATAGRAMS_PER_SEC", 20_000);
  if (env.MEDIA_ABUSE_DROPS_PER_SEC) limits.abuseDropsPerSec = int(env, "MEDIA_ABUSE_DROPS_PER_SEC", 2000);
  const session: Partial<SessionOptions> = {};
  if (env.MEDIA_JOIN_TIMEOUT_MS) session.joinTimeoutMs = int(env, "MEDIA_JOIN_TIMEOUT_MS", 10_000);
  const publicUrl = env.MEDIA_PUBLIC_URL || `https://${mediaHost}:${mediaPort}/v1/session`;
  if ((env.MEDIA_FALLBACK_TLS_CERT_FILE && !env.MEDIA_FALLBACK_TLS_KEY_FILE) || (!env.MEDIA_FALLBACK_TLS_CERT_FILE && env.MEDIA_FALLBACK_TLS_KEY_FILE)) {
    throw new ConfigError("MEDIA_FALLBACK_TLS_CERT_FILE and MEDIA_FALLBACK_TLS_KEY_FILE go together");
  }
  const fallbackMode = (env.MEDIA_FALLBACK || "on").toLowerCase();
  if (fallbackMode !== "on" && fallbackMode !== "off") throw new ConfigError("MEDIA_FALLBACK must be on or off");
  if (env.MEDIA_FALLBACK_PUBLIC_URL && !/^https:\/\/\S+$/.test(env.MEDIA_FALLBACK_PUBLIC_URL)) throw new ConfigError("MEDIA_FALLBACK_PUBLIC_URL must be an https:// URL");
  const fallback: FallbackConfig | undefined = fallbackMode === "off" ? undefined : {
    host: env.MEDIA_FALLBACK_HOST || mediaHost,
    port: int(env, "MEDIA_FALLBACK_PORT", mediaPort),
    publicUrl: env.MEDIA_FALLBACK_PUBLIC_URL || undefined,
    // A CA-signed pair for the fallback; else TLS_CERT_FILE's; else the node's own certificate.
    tlsCertFile: env.MEDIA_FALLBACK_TLS_CERT_FILE || env.TLS_CERT_FILE || undefined,
    tlsKeyFile: env.MEDIA_FALLBACK_TLS_KEY_FILE || env.TLS_KEY_FILE || undefined,
    ...(env.MEDIA_FALLBACK_TLS_RELOAD_MS ? { tlsReloadMs: int(env, "MEDIA_FALLBACK_TLS_RELOAD_MS", 60_000) } : {}),
  };
  return {
    nodeId: need("NODE_ID"),
    region: env.NODE_REGION || "local",
    secret: need("NODE_SECRET"),
    edgeUrl: need("EDGE_URL"),
    issuer: env.EDGE_ISSUER || "huizhen-edge",
    mediaHost, mediaPort, publicUrl, apiHost, apiPort,
    apiPublicUrl: env.MEDIA_API_PUBLIC_URL || `http://${apiHost}:${apiPort}`,
    tlsCertFile: env.TLS_CERT_FILE || undefined,
    tlsKeyFile: env.TLS_KEY_FILE || undefined,
    capacity: { maxSessions, maxGroups, maxKbpsOut: int(env, "MAX_KBPS_OUT", 1_000_000) },
    heartbeatMs: int(env, "MEDIA_HEARTBEAT_MS", 5000),
    limits,
    session,
    certValidityMs: env.MEDIA_CERT_VALIDITY_MS ? int(env, "MEDIA_CERT_VALIDITY_MS", 0) : undefined,
    certRotateEveryMs: env.MEDIA_CERT_ROTATE_MS ? int(env, "MEDIA_CERT_ROTATE_MS", 0) : undefined,
    revocationCheckMs: int(env, "MEDIA_REVOCATION_CHECK_MS", 5000),
    fallback,
    // Beside `npm start`'s state (.huizhen/<node id>) unless set.
    stateDir: env.MEDIA_STATE_DIR || `.huizhen/${need("NODE_ID").replace(/[^A-Za-z0-9_-]/g, "_")}`,
  };
}

export type Logger = (msg: string, fields?: Record<string, unknown>) => void;

export function consoleLogger(nodeId: string): Logger {
  return (msg, fields) => {
    const extra = fields ? Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ") : "";
    console.log(`${new Date().toISOString()} ${nodeId} ${msg}${extra ? " " + extra : ""}`);
  };
}

export interface NodeDeps {
  /** Key source for tokens and API calls; the edge's JWKS by default. */
  keys?: JWTVerifyGetKey;
  fetch?: typeof fetch;
  log?: Logger;
  /** Skip heartbeats and events (bench). */
  noReporter?: boolean;
}

export class MediaNode {
  readonly relay: Relay;
  readonly reporter?: EdgeReporter;
  /** Re-checks revocations on a timer, should an edge → node revocation call be lost. */
  readonly revocations?: RevocationPoller;
  private quic?: TransportServer;
  private tcp?: TransportServer;
  /** Follows the node's rotating certificate (no CA-signed pair given). */
  private tcpFollowsRotation = false;
  private http?: HttpServerLike;
  private certs?: CertRotation;
  private fixedHashes: string[] = [];
  private readonly meter = new LoadMeter();
  /** Path probes on /v1/probe (media/probe.ts). */
  readonly probes = new ProbeServer();
  /** Node-to-node links of cascaded groups (media/cascade/). */
  cascade?: CascadeManager;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private lastCounters = { bytesIn: 0, bytesOut: 0, at: Date.now() };
  private readonly log: Logger;
  quicPort = 0;
  apiPort = 0;
  /** TCP port of the fallback (0: none). */
  fallbackPort = 0;
  /** URL terminals use for the fallback (undefined: none). */
  fallbackUrl?: string;

  private constructor(readonly config: NodeConfig, private readonly deps: NodeDeps, journal?: { journal: EventJournal; recovered: JournaledEvent[] }) {
    this.log = deps.log ?? consoleLogger(config.nodeId);
    let reporter: EdgeReporter | undefined;
    this.relay = new Relay({
      limits: config.limits,
      log: this.log,
      onEvent: (e) => {
        this.cascade?.onRelayEvent(e);
        // A cascade link's stand-in for a remote terminal is not a join to report.
        if (!isCascadeJti(e.jti)) reporter?.enqueue(e);
      },
    });
    if (!deps.noReporter) {
      reporter = this.reporter = new EdgeReporter({
        edgeUrl: config.edgeUrl, nodeId: config.nodeId, secret: config.secret,
        heartbeatMs: config.heartbeatMs, fetch: signingFetch(config.nodeId, config.secret, deps.fetch), log: this.log,
        heartbeat: () => this.heartbeat(), journal,
      });
      this.revocations = new RevocationPoller({
        edgeUrl: config.edgeUrl, nodeId: config.nodeId, secret: config.secret, relay: this.relay,
        intervalMs: config.revocationCheckMs || 5000, fetch: signingFetch(config.nodeId, config.secret, deps.fetch), log: this.log,
      });
    }
  }

  static async start(config: NodeConfig, deps: NodeDeps = {}): Promise<MediaNode> {
    // The journal is read before any session can add events: last run's undelivered ones go first.
    const journal = config.stateDir && !deps.noReporter ? await MediaNode.openJournal(config.stateDir, deps.log ?? consoleLogger(config.nodeId)) : undefined;
    const node = new MediaNode(config, deps, journal);
    try {
      await node.listen();
    } catch (err) {
      await node.reporter?.close();
      throw err;
    }
    return node;
  }

  private static async openJournal(dir: string, log: Logger) {
    let file: JournalFile;
    try {
      file = await JournalFile.open(dir);
    } catch (err) {
      throw new ConfigError(`MEDIA_STATE_DIR: ${(err as Error)?.message ?? err}`);
    }
    try {
      return await EventJournal.open(file, { log });
    } catch (err) {
      await file.close();
      throw new ConfigError(`MEDIA_STATE_DIR: cannot read or rewrite the event journal in ${dir}: ${(err as Error)?.message ?? err}`);
    }
  }

  get certHashes(): string[] {
    return this.certs ? this.certs.hashes : this.fixedHashes;
  }

  private async listen(): Promise<void> {
    const Deno = denoApi();
    const { config } = this;
    let cert: string, key: string;
    if (config.tlsCertFile && config.tlsKeyFile) {
      cert = await Deno.readTextFile(config.tlsCertFile);
      key = await Deno.readTextFile(config.tlsKeyFile);
      this.fixedHashes = [await pemHash(cert)];
    } else {
      const host = new URL(config.publicUrl).hostname;
      this.certs = new CertRotation({
        hosts: [...new Set([host, "localhost", "127.0.0.1"])],
        validityMs: config.certValidityMs, rotateEveryMs: config.certRotateEveryMs,
      });
      await this.certs.init();
      cert = this.certs.current.certPem;
      key = this.certs.current.keyPem;
    }
    const keys = this.deps.keys ?? edgeJwks(config.edgeUrl);
    const auth = new EdgeAuth(keys, config.nodeId, config.issuer);
    this.cascade = new CascadeManager({ nodeId: config.nodeId, issuer: config.issuer, relay: this.relay, keys, log: this.log });
    const sessionOptions = config.session;
    const onError = (err: unknown) => this.log("transport error", { error: String((err as Error)?.message ?? err).slice(0, 200) });
    const terminalSession = (t: TransportSession) => {
      const s = new NodeSession(t, { relay: this.relay, verifyToken: (tok) => auth.verifyConsultation(tok), log: this.log, options: sessionOptions });
      void s.run().catch(() => {});
    };
    this.quic = listenQuic({ hostname: config.mediaHost, port: config.mediaPort, cert, key, onError }, (t) => {
      if (isProbeSession(t)) return this.probes.serve(t);
      if (isCascadeSession(t)) return this.cascade!.accept(t);
      terminalSession(t);
    });
    this.quicPort = this.quic.port;

    if (config.fallback) {
      const f = config.fallback;
      let tcpCert = cert, tcpKey = key;
      let certFiles: { cert: string; key: string; checkMs: number } | undefined;
      if (f.tlsCertFile && f.tlsKeyFile) {
        tcpCert = await Deno.readTextFile(f.tlsCertFile);
        tcpKey = await Deno.readTextFile(f.tlsKeyFile);
        const problem = certificatePairProblem(tcpCert, tcpKey);
        if (problem) {
          this.quic.close();
          throw new ConfigError(`the TCP fallback's certificate (${f.tlsCertFile}, ${f.tlsKeyFile}): ${problem}; fix the pair, or set MEDIA_FALLBACK=off`);
        }
        // A CA-signed pair is renewed in place (certbot and the like): picked up without a restart.
        const checkMs = f.tlsReloadMs ?? 60_000;
        if (checkMs > 0) certFiles = { cert: f.tlsCertFile, key: f.tlsKeyFile, checkMs };
      } else this.tcpFollowsRotation = !!this.certs;
      // Same session handling as QUIC; node-to-node cascade links stay on QUIC.
      const port = f.port;
      try {
        this.tcp = await listenFallback({
          hostname: f.host, port, cert: tcpCert, key: tcpKey,
          paths: [sessionOptions.path ?? DEFAULT_SESSION_OPTIONS.path, PROBE_PATH], onError,
          certFiles,
          onCertFiles: (o) => (o.ok ? this.log("fallback certificate reloaded", { validTo: o.validTo }) : this.log("fallback certificate not reloaded", { reason: o.reason })),
        }, (t) => (isProbeSession(t) ? this.probes.serve(t) : terminalSession(t)));
      } catch (err) {
        this.quic.close();
        throw new ConfigError(`the TCP fallback cannot listen on ${f.host}:${port} (${(err as Error)?.message ?? err}); set MEDIA_FALLBACK_PORT, or MEDIA_FALLBACK=off`);
      }
      this.fallbackPort = this.tcp.port;
      if (f.publicUrl) this.fallbackUrl = f.publicUrl;
      else {
        const u = new URL(config.publicUrl);
        u.port = String(this.fallbackPort);
        this.fallbackUrl = u.href;
      }
    }

    const api = createApi({
      nodeId: config.nodeId, relay: this.relay, auth, log: this.log,
      certHashes: () => this.certHashes,
      stats: () => ({ reporterQueue: this.reporter?.queue.length ?? 0, edgeUp: this.reporter?.edgeUp ?? false, revocationChecks: this.revocations?.checks ?? 0, cascade: this.cascade?.stats() }),
      cascade: (spec) => this.cascade!.cascade(spec),
    });
    await new Promise<void>((resolve) => {
      this.http = Deno.serve({
        hostname: config.apiHost, port: config.apiPort,
        onListen: (addr) => { this.apiPort = addr.port; resolve(); },
      }, (req) => api.fetch(req));
    });

    this.timers.push(setInterval(() => this.relay.tick(), 50));
    if (this.certs) this.scheduleRotation();
    this.meter.start();
    this.reporter?.start();
    this.revocations?.start();
    this.log("media node listening", {
      quic: `${config.mediaHost}:${this.quicPort}`, api: `${config.apiHost}:${this.apiPort}`, url: config.publicUrl,
      tcpFallback: this.tcp ? `${config.fallback!.host}:${this.fallbackPort}` : "off",
    });
  }

  private scheduleRotation(): void {
    const certs = this.certs!;
    const t = setTimeout(async () => {
      try {
        const c = await certs.rotate();
        this.quic?.setCertificate(c.certPem, c.keyPem);
        if (this.tcpFollowsRotation) this.tcp?.setCertificate(c.certPem, c.keyPem);
        this.log("certificate rotated", { hash: c.hash });
      } catch (err) {
        this.log("certificate rotation failed", { error: (err as Error)?.message });
      }
      this.scheduleRotation();
    }, Math.min(certs.rotateEveryMs, 2 ** 31 - 1));
    this.timers.push(t as unknown as ReturnType<typeof setInterval>);
  }

  heartbeat() {
    const c = this.relay.snapshot();
    const now = Date.now();
    const secs = Math.max(0.001, (now - this.lastCounters.at) / 1000);
    const kbpsIn = Math.max(0, Math.round(((c.bytesIn - this.lastCounters.bytesIn) * 8) / 1000 / secs));
    const kbpsOut = Math.max(0, Math.round(((c.bytesOut - this.lastCounters.bytesOut) * 8) / 1000 / secs));
    this.lastCounters = { bytesIn: c.bytesIn, bytesOut: c.bytesOut, at: now };
    return {
      region: this.config.region,
      url: this.config.publicUrl,
      apiUrl: this.config.apiPublicUrl,
      certHashes: this.certHashes,
      ...(this.fallbackUrl ? { fallbackUrl: this.fallbackUrl } : {}),
      capacity: this.config.capacity,
      load: {
        sessions: this.relay.sessions,
        groups: this.relay.groups.size,
        kbpsIn, kbpsOut,
        cpu: Math.min(64, this.meter.takeCpu()),
        loopLagMs: this.meter.takeLoopLagMs(),
        lossRate: this.relay.lossRate(),
      },
      draining: this.relay.draining,
    };
  }

  /** Stops taking sessions, tells live ones to reconnect elsewhere, closes everything. */
  async stop(): Promise<void> {
    this.relay.draining = true;
    for (const g of [...this.relay.groups.values()]) {
      for (const m of [...g.live]) this.relay.refuse(m, "nodeDraining");
    }
    for (const t of this.timers) clearInterval(t);
    this.revocations?.stop();
    this.meter.stop();
    this.cascade?.close();
    // Give the `left` events a last chance to reach the edge (they are retried only while running).
    // What is still undelivered stays in the journal for the next start.
    if (this.reporter) await Promise.race([this.reporter.deliver(), new Promise((r) => setTimeout(r, 1000))]);
    if (this.reporter) await Promise.race([this.reporter.close(), new Promise((r) => setTimeout(r, 1000))]);
    await new Promise((r) => setTimeout(r, 350));
    this.quic?.close();
    this.tcp?.close();
    await this.http?.shutdown().catch(() => {});
  }
}
