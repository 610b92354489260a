// The SDK's view of the WebTransport session: TerminalSession from src/terminal (the same
// core the headless terminals use), plus what the call needs on top of it.
import type { Role } from "../../src/types.ts";
import { SessionError, TerminalSession, type SessionCounters } from "../../src/terminal/session.ts";
import { HuizhenError, messageFor } from "./errors.ts";

export interface Member { terminalId: string; role: Role; slot: number }

export interface SendOptions { keyframe?: boolean; timestamp?: number; reliable?: boolean; layer?: number; discardable?: boolean }

export interface FrameEvent {
  header: { track: number; source: number; sequence: number; timestamp: number; flags: number };
  payload: Uint8Array;
}

export interface SessionEvents {
  connected: Member[];
  "peer-joined": Member;
  "peer-left": { member: Member; reason: string };
  frame: FrameEvent;
  "keyframe-request": { track: number; from?: number };
  "peer-stats": { from: number; report: Record<string, number | string> };
  signal: { kind: string; body?: unknown; from?: number };
  rtt: number;
  /** The node's view of one direction (docs/protocol.md §11); `send` carries the encoder target. */
  quality: { slot: number; direction: "send" | "receive"; estimateKbps: number; kbps: number; loss: number; delayMs: number; targetKbps?: number; rttMs?: number };
  ended: string;
  closed: string;
}

export interface SessionLike {
  readonly self: Member;
  readonly members: Member[];
  readonly isConnected: boolean;
  readonly counters?: Readonly<SessionCounters>;
  on<K extends keyof SessionEvents>(event: K, fn: (v: SessionEvents[K]) => void): () => void;
  sendFrame(track: number, payload: Uint8Array, opts?: SendOptions): number;
  requestKeyframe(track: number, slot?: number): void;
  sendStats(report: Record<string, number | string>): void;
  sendSignal?(kind: string, body?: unknown, to?: number): void;
  leave(): Promise<void>;
}

/** Connects with the token; a refusal becomes a HuizhenError whose `reason` the page can show. */
export async function openSession(opts: { url: string; certHashes?: string[]; token: string; sdk?: string; timeoutMs?: number }): Promise<SessionLike> {
  try {
    // TerminalSession has exactly the SessionLike shape; the interface keeps the call testable.
    return await TerminalSession.connect(opts);
  } catch (err) {
    if (err instanceof SessionError) {
      if (err.reason === "connectFailed" || err.reason === "timeout") throw new HuizhenError("nodeUnreachable", `${messageFor("nodeUnreachable")} (${err.message})`);
      throw new HuizhenError(err.reason, messageFor(err.reason));
    }
    throw new HuizhenError("nodeUnreachable", `${messageFor("nodeUnreachable")} (${err instanceof Error ? err.message : String(err)})`);
  }
}
