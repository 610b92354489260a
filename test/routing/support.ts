// A live two-terminal consultation for the routing tests and bench/failover.ts: both
// terminals are FailoverSessions (Deno WebTransport) sending numbered audio frames every 20 ms,
// and each records when frames from the other arrive, so an interruption can be measured from
// the moment a node is killed to the first frame sent after it that reaches the other side.
import { FailoverSession, edgeReplacer, type MoveRecord } from "../../src/terminal/failover.ts";
import { Track } from "../../src/protocol/media.ts";
import type { CreatedConsultation } from "../support/clinic-client.ts";

const clock = () => performance.timeOrigin + performance.now();

export class Talker {
  received = 0;
  /** Arrival time of every frame, with the time it was sent (same process: one clock). */
  readonly arrivals: { sentAt: number; at: number }[] = [];
  private timer?: ReturnType<typeof setInterval>;
  private n = 0;
  constructor(readonly name: string, readonly session: FailoverSession) {
    session.on("frame", ({ payload }) => {
      if (payload.length < 12) return;
      const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      this.received++;
      this.arrivals.push({ sentAt: view.getFloat64(4), at: clock() });
      if (this.arrivals.length > 20_000) this.arrivals.splice(0, 10_000);
    });
  }

  start(): void {
    this.timer = setInterval(() => {
      const p = new Uint8Array(160);
      const view = new DataView(p.buffer);
      view.setUint32(0, this.n++);
      view.setFloat64(4, clock());
      this.session.sendFrame(Track.audio, p);
    }, 20);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** First arrival of a frame sent after `t`, or undefined. */
  firstSentAfter(t: number): number | undefined {
    return this.arrivals.find((a) => a.sentAt > t)?.at;
  }

  /** Waits until a frame sent after `t` has arrived; resolves with its arrival time. */
  async waitSentAfter(t: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const at = this.firstSentAfter(t);
      if (at !== undefined) return at;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`${this.name}: no media sent after the event arrived within ${timeoutMs} ms (moves: ${JSON.stringify(this.session.moves)})`);
  }
}

export interface Call {
  a: Talker;
  b: Talker;
  stop(): Promise<void>;
  moves(): MoveRecord[][];
}

/** Where a terminal joins: its token's node (a cascade puts the two on different nodes). */
export function placementOf(created: CreatedConsultation, role: "requester" | "consultant", rewrite?: (url: string) => string) {
  const t = created.tokens.find((x) => x.role === role)! as CreatedConsultation["tokens"][number] & { node?: { id: string; url: string; certHashes?: string[] } };
  const node = t.node ?? created.group.node;
  return { nodeId: node.id, url: rewrite ? rewrite(node.url) : node.url, certHashes: node.certHashes, token: t.token };
}

/** Joins both terminals of a created consultation and starts talking; resolves once media flows both ways. */
export async function startCall(
  edgeUrl: string,
  created: CreatedConsultation,
  opts: { deadAfterMs?: number; degrade?: boolean; requesterUrl?: (url: string) => string } = {},
): Promise<Call> {
  const replace = edgeReplacer(edgeUrl);
  const join = (role: "requester" | "consultant") => FailoverSession.connect({
    consultationId: created.id,
    placement: placementOf(created, role, role === "requester" ? opts.requesterUrl : undefined),
    replace, sdk: "routing-test", deadAfterMs: opts.deadAfterMs,
    degrade: opts.degrade ? { rttMs: 300, loss: 0.15, forMs: 2000 } : false,
  });
  const [sa, sb] = await Promise.all([join("requester"), join("consultant")]);
  const a = new Talker("requester", sa);
  const b = new Talker("consultant", sb);
  a.start();
  b.start();
  const t0 = clock();
  await Promise.all([a.waitSentAfter(t0, 10_000), b.waitSentAfter(t0, 10_000)]);
  return {
    a, b,
    moves: () => [sa.moves, sb.moves],
    async stop() {
      a.stop();
      b.stop();
      await Promise.all([sa.leave(), sb.leave()]);
    },
  };
}

/** From `t` (ms, performance clock of this process) to media flowing both ways again. */
export async function interruptionAfter(call: Call, t: number, timeoutMs: number): Promise<number> {
  const [x, y] = await Promise.all([call.a.waitSentAfter(t, timeoutMs), call.b.waitSentAfter(t, timeoutMs)]);
  return Math.max(x, y) - t;
}

export const now = clock;
