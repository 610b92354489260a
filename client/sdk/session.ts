// The SDK's view of the WebTransport session: TerminalSession from src/terminal (the same
// core the headless terminals use), wrapped in FailoverSession when the page knows its
// consultation and edge, so a node that dies or drains mid-call is left for another by itself.
import { SessionError, TerminalSession, type ConnectOptions } from "../../src/terminal/session.ts";
import { edgeReplacer, FailoverSession, type MoveReason, type MoveRecord, type ReplaceCall } from "../../src/terminal/failover.ts";
import { HuizhenError, messageFor } from "./errors.ts";
import { Connector, LadderError, openedAs } from "./connect.ts";

export type { Member, SendOptions, FrameEvent, SessionEvents } from "../../src/terminal/session.ts";
export type { MoveReason, MoveRecord } from "../../src/terminal/failover.ts";

/** What the call uses of a session: TerminalSession's own shape, narrowed so the call stays testable. */
export type SessionLike = Pick<
  TerminalSession,
  "self" | "members" | "isConnected" | "counters" | "on" | "sendFrame" | "requestKeyframe" | "sendStats" | "sendSignal" | "leave"
>;

export interface FailoverConfig {
  consultationId: string;
  /** The node the token was issued for (GET /v1/join `node.id`). */
  nodeId: string;
  /** The edge that answers POST /v1/join/replace (default: the page's origin). */
  edgeUrl?: string;
  /** Fresh path measurements to send with a move (e.g. the pre-join probe). */
  measure?: () => Promise<ReplaceCall["measurements"]>;
}

export interface OpenSessionOptions {
  url: string;
  certHashes?: string[];
  /** The node's TCP fallback (GET /v1/join `node.fallbackUrl`). */
  fallbackUrl?: string;
  token: string;
  sdk?: string;
  timeoutMs?: number;
  failover?: FailoverConfig;
  /** The connectivity ladder (client/sdk/connect.ts); without one, native QUIC only. */
  connector?: Connector;
}

/** Connects with the token; a refusal becomes a HuizhenError whose `reason` the page can show. */
export async function openSession(opts: OpenSessionOptions): Promise<SessionLike> {
  const connector = opts.connector;
  // Every session of the call, moves included, goes up the same ladder.
  const connect = connector
    ? async (p: { url: string; certHashes?: string[]; fallbackUrl?: string }, o: ConnectOptions) => {
      const opened = await connector.open({ url: p.url, certHashes: p.certHashes, fallbackUrl: p.fallbackUrl });
      return TerminalSession.connect({ ...o, url: opened.url, WebTransport: openedAs(opened.wt), ...(opened.rung === "quic-streams" ? { streamsOnly: true } : {}) });
    }
    : (_: unknown, o: ConnectOptions) => TerminalSession.connect(o);
  try {
    const f = opts.failover;
    if (f) {
      return await FailoverSession.connect({
        sdk: opts.sdk, timeoutMs: opts.timeoutMs,
        consultationId: f.consultationId,
        placement: { nodeId: f.nodeId, url: opts.url, certHashes: opts.certHashes, ...(opts.fallbackUrl ? { fallbackUrl: opts.fallbackUrl } : {}), token: opts.token },
        replace: edgeReplacer(f.edgeUrl ?? location.origin),
        measure: f.measure,
        connect,
      });
    }
    // TerminalSession has exactly the SessionLike shape; the interface keeps the call testable.
    return await connect(opts, { url: opts.url, certHashes: opts.certHashes, token: opts.token, sdk: opts.sdk, timeoutMs: opts.timeoutMs });
  } catch (err) {
    if (err instanceof LadderError) throw new HuizhenError("nodeUnreachable", `${messageFor("nodeUnreachable")} (${err.message})`);
    if (err instanceof SessionError) {
      if (err.reason === "connectFailed" || err.reason === "timeout") throw new HuizhenError("nodeUnreachable", `${messageFor("nodeUnreachable")} (${err.message})`);
      throw new HuizhenError(err.reason, messageFor(err.reason));
    }
    throw new HuizhenError("nodeUnreachable", `${messageFor("nodeUnreachable")} (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Subscribes to a session's moves between nodes; a session that cannot move has none. */
export function onMoves(s: SessionLike, h: { moving(e: { from: string; reason: MoveReason }): void; moved(e: MoveRecord): void }): (() => void)[] {
  if (!(s instanceof FailoverSession)) return [];
  return [s.on("moving", h.moving), s.on("moved", h.moved)];
}
