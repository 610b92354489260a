// FailoverSession: a TerminalSession that moves to another media node when its node dies,
// drains, or the path to it degrades. Runtime-neutral (Deno terminals in tests and benches;
// the browser SDK can wrap its session the same way).
//
//   const f = await FailoverSession.connect({
//     consultationId, placement: { nodeId, url, certHashes, token },
//     replace: edgeReplacer(edgeUrl),
//   });
//   f.on("frame", …); f.on("moved", ({ from, to, interruptionMs }) => …);
//   f.sendFrame(Track.audio, bytes);
//
// Detecting a lost node: QUIC notices a silent peer only after its idle timeout (tens of
// seconds), so the wrapper watches what it hears — media bytes and pongs. After `suspectAfterMs`
// of silence it pings every 150 ms; after `deadAfterMs` without an answer the node counts as
// lost. A session closed by the node with `nodeDraining` (maintenance, or the edge moving the
// group) is a move too. Either way the terminal asks the edge (POST /v1/join/replace) with its
// current token; the edge answers with the node the group now lives on and a fresh token for it
// (both terminals asking at once get the same node), and the wrapper joins there.
import type { CloseReason } from "../protocol/codes.ts";
import type { QualityMessage } from "../protocol/control.ts";
import { TerminalSession, SessionError, type ConnectOptions, type SendOptions, type SessionEvents } from "./session.ts";
import type { NodePlacement } from "../types.ts";

export interface Placement {
  nodeId: string;
  url: string;
  certHashes?: string[];
  /** The node's TCP fallback (WebTransport over WebSocket), when it has one. */
  fallbackUrl?: string;
  token: string;
}

export type MoveReason = "nodeLost" | "nodeDraining" | "pathDegraded";

export interface ReplaceCall {
  consultationId: string;
  failedNodeId: string;
  reason: MoveReason;
  measurements?: { nodeId: string; rttMs: number; jitterMs: number; loss: number }[];
}

/** Asks for the group's new placement with the terminal's current token. */
export type Replacer = (call: ReplaceCall, currentToken: string) => Promise<Placement>;

/** The edge refused for good (consultation ended, token revoked or invalid): do not retry. */
export class ReplaceRefused extends Error {
  override name = "ReplaceRefused";
  constructor(readonly status: number, readonly code: string) {
    super(`the edge refused the move (${status} ${code})`);
  }
}

/** POST /v1/join/replace on the edge (docs/api.md). */
export function edgeReplacer(edgeUrl: string, doFetch: typeof fetch = (i, init) => fetch(i, init)): Replacer {
  return async (call, token) => {
    const res = await doFetch(`${edgeUrl.replace(/\/+$/, "")}/v1/join/replace`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(call),
      signal: AbortSignal.timeout(4000),
    });
    const body = (await res.json().catch(() => ({}))) as {
      node?: NodePlacement; token?: string; error?: { code?: string };
    };
    if (res.status === 200 && body.node && body.token) {
      const { id, url, certHashes, fallbackUrl } = body.node;
      return { nodeId: id, url, certHashes, ...(fallbackUrl ? { fallbackUrl } : {}), token: body.token };
    }
    if (res.status === 401 || res.status === 403 || res.status === 410) throw new ReplaceRefused(res.status, body.error?.code ?? "refused");
    throw new Error(`the edge could not move the consultation now (${res.status})`);
  };
}

export interface DegradeLimits {
  /** RTT to the node above this… */
  rttMs: number;
  /** …or loss of what this terminal receives above this… */
  loss: number;
  /** …for this long moves the terminal (ms). */
  forMs: number;
  /** At most one such move per this long (ms). */
  cooldownMs: number;
}

export interface FailoverOptions extends Omit<ConnectOptions, "url" | "certHashes" | "token" | "resume"> {
  consultationId: string;
  placement: Placement;
  replace: Replacer;
  /** Silence before pinging the node, ms (default 400). */
  suspectAfterMs?: number;
  /** Silence after which the node counts as lost, ms (default 1000). */
  deadAfterMs?: number;
  /** Re-route on a degraded path (default: 400 ms RTT or 15% loss for 3 s); false turns it off. */
  degrade?: Partial<DegradeLimits> | false;
  /** Give up moving after this long, ms (default 30 s). */
  maxMoveMs?: number;
  /** Fresh measurements to send with a move (e.g. a probe of the candidates). */
  measure?: () => Promise<ReplaceCall["measurements"]>;
  /** Opens a session to a placement (default: TerminalSession.connect to its QUIC URL); the SDK's connectivity ladder. */
  connect?: (placement: Placement, opts: ConnectOptions) => Promise<TerminalSession>;
}

export interface MoveRecord {
  from: string;
  to: string;
  reason: MoveReason;
  startedAt: number;
  /** Welcome from the new node, ms after the move started. */
  rejoinMs: number;
}

export interface FailoverEvents extends SessionEvents {
  moving: { from: string; reason: MoveReason };
  moved: MoveRecord;
}

type Listener = (v: never) => void;
const FINAL: ReadonlySet<string> = new Set(["normal", "consultationEnded", "revoked", "tokenInvalid", "tokenExpired", "protocolError", "replaced"]);

export class FailoverSession {
  session: TerminalSession;
  placement: Placement;
  state: "live" | "moving" | "closed" = "live";
  readonly moves: MoveRecord[] = [];
  private readonly listeners = new Map<string, Set<Listener>>();
  private unsubscribe: (() => void)[] = [];
  private heardAt = Date.now();
  private lastBytes = 0;
  private lastPingAt = 0;
  private badSince?: number;
  private lastDegradeMove = 0;
  private lastLoss = 0;
  private watchdog?: ReturnType<typeof setInterval>;
  private readonly degrade: DegradeLimits | false;

  private constructor(private readonly opts: FailoverOptions, session: TerminalSession) {
    this.placement = opts.placement;
    this.session = session;
    this.degrade = opts.degrade === false ? false : { rttMs: 400, loss: 0.15, forMs: 3000, cooldownMs: 30_000, ...opts.degrade };
    this.attach(session);
    this.watchdog = setInterval(() => this.check(), 100);
  }

  static async connect(opts: FailoverOptions): Promise<FailoverSession> {
    return new FailoverSession(opts, await open(opts, opts.placement));
  }

  on<K extends keyof FailoverEvents>(event: K, fn: (v: FailoverEvents[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener);
    return () => { set!.delete(fn as Listener); };
  }

  private emit<K extends keyof FailoverEvents>(event: K, v: FailoverEvents[K]): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) {
      try {
        (fn as (x: FailoverEvents[K]) => void)(v);
      } catch (err) {
        console.error(`huizhen: a "${event}" listener threw`, err);
      }
    }
  }

  // The current session's view, so a FailoverSession can stand where a TerminalSession did.
  get self() { return this.session.self; }
  get members() { return this.session.members; }
  get isConnected() { return this.state === "live" && this.session.isConnected; }
  get counters() { return this.session.counters; }

  sendStats(report: Record<string, number | string>): void {
    if (this.state === "live") this.session.sendStats(report);
  }

  sendSignal(kind: string, body?: unknown, to?: number): void {
    if (this.state === "live") this.session.sendSignal(kind, body, to);
  }

  /** Sends on the current session; -1 while moving (the frame is dropped, as on a lost path). */
  sendFrame(track: number, payload: Uint8Array, opts?: SendOptions): number {
    if (this.state !== "live") return -1;
    return this.session.sendFrame(track, payload, opts);
  }

  requestKeyframe(track: number, slot?: number): void {
    if (this.state === "live") this.session.requestKeyframe(track, slot);
  }

  async leave(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    clearInterval(this.watchdog);
    this.detach();
    await this.session.leave();
    this.emit("closed", "normal");
  }

  /** Moves now (tests, or an application that knows better). */
  moveNow(reason: MoveReason): Promise<void> {
    return this.move(reason);
  }

  private attach(s: TerminalSession): void {
    this.heardAt = Date.now();
    this.lastBytes = s.counters.bytesReceived;
    this.badSince = undefined;
    const forward = <K extends keyof SessionEvents>(event: K) => s.on(event, (v) => this.emit(event, v as FailoverEvents[K]));
    for (const e of ["connected", "peer-joined", "peer-left", "frame", "keyframe-request", "peer-stats", "signal", "rtt", "quality", "skip"] as const) {
      this.unsubscribe.push(forward(e));
    }
    this.unsubscribe.push(
      s.on("rtt", () => { this.heardAt = Date.now(); }),
      s.on("quality", (q: QualityMessage) => { if (q.direction === "receive") this.lastLoss = q.loss; }),
      s.on("ended", (reason) => {
        if (reason !== "nodeDraining") this.emit("ended", reason);
      }),
      s.on("closed", (reason) => this.onClosed(s, reason)),
    );
  }

  private detach(): void {
    for (const u of this.unsubscribe) u();
    this.unsubscribe = [];
  }

  private onClosed(s: TerminalSession, reason: CloseReason): void {
    if (s !== this.session || this.state !== "live") return;
    // The edge closing the old group after our own degraded-path request: that move is under way.
    if (this.asking && reason === "nodeDraining") return;
    if (FINAL.has(reason)) {
      this.state = "closed";
      clearInterval(this.watchdog);
      this.detach();
      this.emit("closed", reason);
      return;
    }
    void this.move(reason === "nodeDraining" ? "nodeDraining" : "nodeLost");
  }

  private check(): void {
    if (this.state !== "live") return;
    const s = this.session;
    const now = Date.now();
    if (s.counters.bytesReceived !== this.lastBytes) {
      this.lastBytes = s.counters.bytesReceived;
      this.heardAt = now;
    }
    const silence = now - this.heardAt;
    if (silence >= (this.opts.deadAfterMs ?? 1000)) {
      void this.move("nodeLost");
      return;
    }
    if (silence >= (this.opts.suspectAfterMs ?? 400) && now - this.lastPingAt >= 150) {
      this.lastPingAt = now;
      s.keepAlive();
    }
    if (this.degrade) {
      const bad = s.counters.rttMs > this.degrade.rttMs || this.lastLoss > this.degrade.loss;
      if (!bad) this.badSince = undefined;
      else if (this.badSince === undefined) this.badSince = now;
      else if (now - this.badSince >= this.degrade.forMs && now - this.lastDegradeMove >= this.degrade.cooldownMs) {
        this.lastDegradeMove = now;
        void this.move("pathDegraded");
      }
    }
  }

  private asking = false;

  private async move(reason: MoveReason): Promise<void> {
    if (this.state !== "live" || this.asking) return;
    let first: Placement | undefined;
    if (reason === "pathDegraded") {
      // A slow path still carries the call: ask first and stay when there is nowhere better
      // (e.g. the only live node), instead of leaving a working session for nothing.
      this.asking = true;
      try {
        const measurements = this.opts.measure ? await this.opts.measure().catch(() => undefined) : undefined;
        first = await this.opts.replace({ consultationId: this.opts.consultationId, failedNodeId: this.placement.nodeId, reason, ...(measurements?.length ? { measurements } : {}) }, this.placement.token);
      } catch {
        first = undefined;
      } finally {
        this.asking = false;
      }
      if (this.state !== "live" || !first || first.nodeId === this.placement.nodeId) return;
    }
    this.state = "moving";
    const startedAt = Date.now();
    const from = this.placement.nodeId;
    const old = this.session;
    // Silence can be this terminal's own path (a burst of heavy loss) while the node lives on.
    // When the edge has no other node to offer, rejoin this one with the same token and the
    // resume secret of its welcome, instead of asking until the move times out and the call ends.
    const resume = reason === "nodeLost" && old.resume ? { placement: this.placement, secret: old.resume } : undefined;
    this.detach();
    void old.leave().catch(() => {});
    this.emit("moving", { from, reason });
    const deadline = startedAt + (this.opts.maxMoveMs ?? 30_000);
    let failed = from;
    let why = reason;
    while (Date.now() < deadline && this.state === "moving") {
      let next: Placement;
      if (first) {
        next = first;
        first = undefined;
      } else try {
        const measurements = this.opts.measure ? await this.opts.measure().catch(() => undefined) : undefined;
        next = await this.opts.replace({ consultationId: this.opts.consultationId, failedNodeId: failed, reason: why, ...(measurements?.length ? { measurements } : {}) }, this.placement.token);
      } catch (err) {
        if (err instanceof ReplaceRefused) return this.giveUp(err.code === "consultation_ended" ? "consultationEnded" : err.code === "revoked" ? "revoked" : "tokenInvalid");
        if (resume && failed === from) {
          const back = await this.rejoin(resume.placement, resume.secret, deadline);
          if (back || this.state !== "moving") {
            if (back) this.settle(back, resume.placement, from, reason, startedAt);
            return;
          }
        }
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      // The edge's answer is the placement from now on, even if joining it fails below.
      this.placement = next;
      try {
        const s = await open(this.opts, next, { timeoutMs: moveTimeout(this.opts, deadline) });
        if (this.state !== "moving") {
          void s.leave();
          return;
        }
        this.settle(s, next, from, reason, startedAt);
        return;
      } catch (err) {
        const r = err instanceof SessionError ? err.reason : "connectFailed";
        if (r === "consultationEnded" || r === "revoked") return this.giveUp(r);
        // That node failed too (or was left already): ask again, naming it.
        failed = next.nodeId;
        why = "nodeLost";
        await new Promise((r2) => setTimeout(r2, 100));
      }
    }
    if (this.state === "moving") this.giveUp("timeout");
  }

  /** Live again on `s` (at `to`): the move is over. */
  private settle(s: TerminalSession, to: Placement, from: string, reason: MoveReason, startedAt: number): void {
    this.placement = to;
    this.session = s;
    this.state = "live";
    this.attach(s);
    const rec: MoveRecord = { from, to: to.nodeId, reason, startedAt, rejoinMs: Date.now() - startedAt };
    this.moves.push(rec);
    this.emit("moved", rec);
  }

  /** Resumes on the node left (same token, its welcome's resume secret); undefined if that fails. */
  private async rejoin(p: Placement, secret: string, deadline: number): Promise<TerminalSession | undefined> {
    try {
      const s = await open(this.opts, p, { resume: secret, timeoutMs: moveTimeout(this.opts, deadline) });
      if (this.state !== "moving") {
        void s.leave();
        return undefined;
      }
      return s;
    } catch {
      return undefined;
    }
  }

  private giveUp(reason: CloseReason): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearInterval(this.watchdog);
    this.emit("closed", reason);
  }
}

/** Opens a session to a placement, through the options' connect (the SDK's ladder) or plain QUIC. */
function open(opts: FailoverOptions, p: Placement, extra: Partial<ConnectOptions> = {}): Promise<TerminalSession> {
  return (opts.connect ?? ((_, o) => TerminalSession.connect(o)))(p, { ...opts, url: p.url, certHashes: p.certHashes, token: p.token, ...extra });
}

/** A join during a move waits no longer than the move has left (at least 500 ms). */
function moveTimeout(opts: FailoverOptions, deadline: number): number {
  return Math.min(opts.timeoutMs ?? 3000, Math.max(500, deadline - Date.now()));
}
