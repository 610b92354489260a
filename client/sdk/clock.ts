// Wall-clock time in µs, the unit of the media header's capture timestamp. Both ends stamp and
// read with this clock; `PeerClock` estimates how far the other terminal's clock is from ours.

export function nowUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/**
 * NTP-style offset estimate from probe round trips: offset = peer − local. Keeps the sample
 * with the smallest round trip of the recent ones, which is the least disturbed by queuing.
 */
export class PeerClock {
  private samples: { rttUs: number; offsetUs: number; at: number }[] = [];
  /** Peer clock minus local clock, µs; 0 until measured (same machine: about right). */
  offsetUs = 0;
  measured = false;

  /** t0: local send, t1: peer receive (peer clock), t2: local receive. */
  add(t0: number, t1: number, t2: number): void {
    const rttUs = t2 - t0;
    if (rttUs < 0) return;
    const offsetUs = t1 - (t0 + t2) / 2;
    this.samples.push({ rttUs, offsetUs, at: t2 });
    if (this.samples.length > 16) this.samples.shift();
    let best = this.samples[0]!;
    for (const s of this.samples) if (s.rttUs < best.rttUs) best = s;
    this.offsetUs = best.offsetUs;
    this.measured = true;
  }

  /** A capture timestamp of the peer expressed on the local clock. */
  toLocal(peerUs: number): number {
    return peerUs - this.offsetUs;
  }
}

/** Rolling window of numeric samples with quantiles (small N: sorting is fine). */
export class Window {
  private values: { v: number; at: number }[] = [];
  constructor(private readonly spanMs: number) {}

  push(v: number, at = performance.now()): void {
    this.values.push({ v, at });
    this.trim(at);
  }

  private trim(now: number): void {
    while (this.values.length && now - this.values[0]!.at > this.spanMs) this.values.shift();
  }

  quantile(q: number, now = performance.now()): number | undefined {
    this.trim(now);
    if (!this.values.length) return undefined;
    const sorted = this.values.map((x) => x.v).sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  get size(): number {
    return this.values.length;
  }
}
