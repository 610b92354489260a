// Bandwidth estimation from receiver feedback, runtime-neutral (node, terminal and browser use
// the same code). A simplified GCC: queueing delay growing means the path is full (back off
// to what actually arrived); loss alone backs off only when it is heavy, because Wi-Fi and
// the test profiles lose packets at random without any queue; otherwise probe upwards.

export interface ReceiveSample {
  /** Length of the interval the sample covers, ms. */
  intervalMs: number;
  /** Media bytes that arrived in the interval. */
  bytes: number;
  /** Share of datagrams lost on the path in the interval, 0..1. */
  loss: number;
  /** Queueing delay: one-way delay above its recent minimum, ms. */
  delayMs: number;
}

export interface EstimatorOptions {
  initialKbps?: number;
  minKbps?: number;
  maxKbps?: number;
  /** Queueing delay above which the path counts as overused, ms. */
  delayThresholdMs?: number;
  /** Loss above which the estimate backs off even without a queue, 0..1. */
  heavyLoss?: number;
  /** Loss above which the estimate stops probing upwards, 0..1. */
  holdLoss?: number;
  /** Upward probing, share of the estimate per second. */
  increasePerSec?: number;
}

export type EstimatorState = "increase" | "hold" | "decrease";

export class BandwidthEstimator {
  estimateKbps: number;
  state: EstimatorState = "increase";
  /** Smoothed receive rate, kbit/s. */
  receivedKbps = 0;
  /** Smoothed loss, 0..1. */
  loss = 0;
  delayMs = 0;
  samples = 0;
  private readonly o: Required<EstimatorOptions>;
  private prevDelay = 0;
  /** No probing until this time (after a back-off), ms. */
  private holdUntil = -Infinity;
  private elapsedMs = 0;

  constructor(opts: EstimatorOptions = {}) {
    this.o = {
      initialKbps: 1500, minKbps: 100, maxKbps: 6000, delayThresholdMs: 25, heavyLoss: 0.25, holdLoss: 0.08,
      increasePerSec: 0.2, ...opts,
    };
    this.estimateKbps = clamp(this.o.initialKbps, this.o.minKbps, this.o.maxKbps);
  }

  /** Feeds one interval of feedback; returns the new estimate, kbit/s. */
  update(s: ReceiveSample): number {
    if (!(s.intervalMs > 0)) return this.estimateKbps;
    const o = this.o;
    this.elapsedMs += s.intervalMs;
    const now = this.elapsedMs;
    const rx = (s.bytes * 8) / s.intervalMs; // kbit/s
    const a = this.samples === 0 ? 1 : 0.5;
    this.receivedKbps = this.receivedKbps * (1 - a) + rx * a;
    this.loss = this.loss * (1 - a) + clamp(s.loss, 0, 1) * a;
    const rising = s.delayMs > this.prevDelay + 5;
    this.prevDelay = s.delayMs;
    this.delayMs = s.delayMs;
    this.samples++;
    const overused = (s.delayMs > o.delayThresholdMs && (rising || s.delayMs > 2 * o.delayThresholdMs));
    let est = this.estimateKbps;
    // The first report: nothing is known beyond what arrived, so start a probing step above it.
    if (this.samples === 1) est = Math.min(est, rx * 1.1 + 100);
    if (overused) {
      // The queue grows: what arrived is what the path carries; go a little under it to drain.
      this.state = "decrease";
      est = Math.min(est, rx * 0.85);
      this.holdUntil = now + 1000;
    } else if (s.loss > o.heavyLoss) {
      this.state = "decrease";
      est = est * (1 - 0.5 * s.loss);
      this.holdUntil = now + 1000;
    } else if (s.loss > o.holdLoss || s.delayMs > o.delayThresholdMs / 2 || now < this.holdUntil) {
      this.state = "hold";
    } else {
      this.state = "increase";
      const grown = est * (1 + (o.increasePerSec * s.intervalMs) / 1000);
      // Probe only a step above what the path has shown it can carry.
      est = Math.max(est, Math.min(grown, this.receivedKbps * 1.5 + 150));
    }
    this.estimateKbps = clamp(est, o.minKbps, o.maxKbps);
    return this.estimateKbps;
  }
}

export function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** Minimum of a value over a sliding time window, in O(1) amortised (monotonic deque). */
export class WindowMin {
  private readonly t: number[] = [];
  private readonly v: number[] = [];
  constructor(private readonly windowMs: number) {}
  push(at: number, value: number): void {
    while (this.v.length && this.v[this.v.length - 1]! >= value) {
      this.v.pop();
      this.t.pop();
    }
    this.v.push(value);
    this.t.push(at);
    this.trim(at);
  }
  trim(now: number): void {
    while (this.t.length && now - this.t[0]! > this.windowMs) {
      this.t.shift();
      this.v.shift();
    }
  }
  get value(): number | undefined {
    return this.v[0];
  }
}
