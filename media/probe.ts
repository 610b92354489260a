// Path probe: a WebTransport session on `/v1/probe` whose datagrams are echoed back, so a
// terminal can measure RTT, jitter and loss to this node before it is placed (src/terminal/
// probe.ts). No token: it carries no media and reveals nothing but the round trip. Bounded so
// it cannot be used to amplify or to load the node: echoes are never larger than what came in
// (and at most 64 bytes), a session lasts at most `maxSessionMs` and echoes at most
// `maxDatagrams`, and only `maxConcurrent` probe sessions run at once, `maxPerSec` new ones
// per second; beyond that a session is closed at once.
import { CloseCode } from "../src/protocol/codes.ts";
import type { TransportSession } from "./transport/quic.ts";

export const PROBE_PATH = "/v1/probe";
export const PROBE_MAX_BYTES = 64;

export interface ProbeLimits {
  maxConcurrent: number;
  maxPerSec: number;
  maxSessionMs: number;
  maxDatagrams: number;
}

export const DEFAULT_PROBE_LIMITS: ProbeLimits = { maxConcurrent: 64, maxPerSec: 50, maxSessionMs: 3000, maxDatagrams: 400 };

export function isProbeSession(t: Pick<TransportSession, "url">): boolean {
  try {
    return new URL(t.url).pathname === PROBE_PATH;
  } catch {
    return false;
  }
}

export class ProbeServer {
  active = 0;
  served = 0;
  refused = 0;
  private windowStart = 0;
  private inWindow = 0;
  private readonly limits: ProbeLimits;

  constructor(limits: Partial<ProbeLimits> = {}) {
    this.limits = { ...DEFAULT_PROBE_LIMITS, ...limits };
  }

  /** Takes a probe session; never rejects. */
  serve(t: TransportSession): void {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.active >= this.limits.maxConcurrent || this.inWindow >= this.limits.maxPerSec) {
      this.refused++;
      t.close({ closeCode: CloseCode.limitExceeded, reason: "probe rate limited" });
      return;
    }
    this.inWindow++;
    this.active++;
    this.served++;
    void this.echo(t).catch(() => {}).finally(() => {
      this.active--;
      t.close({ closeCode: 0, reason: "" });
    });
  }

  private async echo(t: TransportSession): Promise<void> {
    const reader = t.datagrams.readable.getReader();
    const writer = t.datagrams.writable.getWriter();
    writer.closed.catch(() => {});
    const timer = setTimeout(() => void reader.cancel().catch(() => {}), this.limits.maxSessionMs);
    t.closed.then(() => clearTimeout(timer), () => clearTimeout(timer));
    void t.closed.then(() => reader.cancel().catch(() => {}));
    try {
      for (let n = 0; n < this.limits.maxDatagrams; n++) {
        const { value, done } = await reader.read();
        if (done || !value) return;
        writer.write(value.length > PROBE_MAX_BYTES ? value.slice(0, PROBE_MAX_BYTES) : value).catch(() => {});
      }
    } finally {
      clearTimeout(timer);
      try { reader.releaseLock(); } catch { /* pending read */ }
    }
  }
}
