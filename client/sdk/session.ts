// The SDK's view of the WebTransport session: TerminalSession from src/terminal (the same
// core the headless terminals use), plus what the call needs on top of it.
import { SessionError, TerminalSession } from "../../src/terminal/session.ts";
import { HuizhenError, messageFor } from "./errors.ts";

export type { Member, SendOptions, FrameEvent, SessionEvents } from "../../src/terminal/session.ts";

/** What the call uses of a session: TerminalSession's own shape, narrowed so the call stays testable. */
export type SessionLike = Pick<
  TerminalSession,
  "self" | "members" | "isConnected" | "counters" | "on" | "sendFrame" | "requestKeyframe" | "sendStats" | "sendSignal" | "leave"
>;

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
