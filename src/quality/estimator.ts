// Bandwidth estimation from receiver feedback, runtime-neutral (node, terminal and browser use
// the same code). A simplified GCC: queueing delay growing means the path is full (back off
// to what actually arrived); loss alone backs off only when it is heavy, because Wi-Fi and
// the test profiles lose packets at random without any queue; otherwise probe upwards.
// Like GCC it remembers the rate at which the path last filled up ("link capacity"): near it,
// probing slows down, because overshooting a bottleneck costs far more than it finds (a full
// queue inflates the RTT, and QUIC's congestion window, already cut by random loss, then holds
// the media in the sender's own buffer for hundreds of ms).

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
  /** Upward probing near the rate at which the path last filled up, share per second. */
  nearCapacityIncreasePerSec?: number;
  /** After heavy loss, a queue this long is the repair's burst, not a smaller path, ms. */
  repairMs?: number;
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
  /** What arrived when the path last showed a growing queue, kbit/s (smoothed; undefined until then). */
  linkKbps?: number;
  private readonly o: Required<EstimatorOptions>;
  private prevDelay = 0;
  /** No probing until this time (after a back-off), ms. */
  private holdUntil = -Infinity;
  /** Since when the path has shown neither queue nor loss worth a hold, ms. */
  private cleanSince = 0;
  /** The path has shown a queue or heavy loss at least once (ends start-up). */
  private congested = false;
  /** The estimate before heavy loss cut it (loss is no proof of a smaller path): regained fast. */
  private beforeLossKbps?: number;
  /** Until this time, a queue follows heavy loss (its repair), ms. */
  private repairUntil = -Infinity;
  private elapsedMs = 0;

  constructor(opts: EstimatorOptions = {}) {
    this.o = {
      initialKbps: 1500, minKbps: 100, maxKbps: 6000, delayThresholdMs: 25, heavyLoss: 0.25, holdLoss: 0.08,
      increasePerSec: 0.2, nearCapacityIncreasePerSec: 0.1, repairMs: 1500, ...opts,
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
    if (overused || s.loss > o.holdLoss || s.delayMs > o.delayThresholdMs / 2) this.cleanSince = now;
    // Heavy loss first: while the path loses a quarter of what is sent, its delay is the
    // retransmissions' and the repair keyframe's, not a measure of its size; and just after it,
    // the burst that repairs the loss queues for a moment. Read as a smaller path, that queue
    // erased the pre-loss estimate and left it at its floor for many seconds (browser test:
    // 7.9 fps five seconds after 2 s of 35% loss).
    const repairing = now < this.repairUntil;
    if (s.loss > o.heavyLoss) {
      this.state = "decrease";
      this.beforeLossKbps = Math.max(this.beforeLossKbps ?? 0, est);
      this.congested = true;
      est = est * (1 - 0.5 * s.loss);
      this.holdUntil = now + 1000;
      this.repairUntil = now + o.repairMs;
    } else if (overused && repairing) {
      this.state = "hold";
    } else if (overused) {
      // The queue grows: what arrived is what the path carries; go a little under it to drain.
      this.state = "decrease";
      // What the path carries: one short interval can come in nearly empty behind a burst's
      // queue, so it counts no lower than the smoothed rate (itself half that interval).
      const carried = Math.max(rx, this.receivedKbps);
      est = Math.min(est, carried * 0.85);
      this.holdUntil = now + 1000;
      this.linkKbps = this.linkKbps === undefined ? carried : 0.6 * this.linkKbps + 0.4 * carried;
      this.beforeLossKbps = undefined;
      this.congested = true;
    } else if (s.loss > o.holdLoss || s.delayMs > o.delayThresholdMs / 2 || now < this.holdUntil) {
      this.state = "hold";
    } else {
      this.state = "increase";
      const link = this.linkKbps;
      // Well past the remembered capacity without a queue: the path has grown, forget it.
      if (link !== undefined && est > 1.1 * link) this.linkKbps = undefined;
      const near = link !== undefined && est >= 0.85 * link && est <= 1.1 * link;
      const grown = est * (1 + ((near ? o.nearCapacityIncreasePerSec : o.increasePerSec) * s.intervalMs) / 1000);
      // Probe only a step above what the path has shown it can carry: a sender fills ~70% of
      // the estimate with video, so an estimate is never checked by what arrives, and a loose
      // bound let it climb 50% past a bottleneck unseen (the queue hid in QUIC's buffer). A
      // path that stays clean for seconds earns more room, up to 1.5× what arrived.
      const cleanSec = (now - this.cleanSince) / 1000;
      const loose = this.receivedKbps * 1.5 + 150;
      // Start-up (the first 5 s, until the path first shows congestion): probe freely, as a start
      // from a low rate needs; a sender there is far from any bottleneck it could hide.
      const startUp = !this.congested && now < 5000;
      const room = !startUp ? Math.min(loose, (this.receivedKbps * 1.25 + 100) * (1 + 0.1 * Math.max(0, cleanSec - 1))) : loose;
      est = Math.max(est, Math.min(grown, room));
      const before = this.beforeLossKbps;
      if (before !== undefined) {
        // After a burst of heavy loss the path has shown no queue: back to where it was, doubling
        // each second (a sender cut to 100 kbit/s cannot show more than it sends).
        est = Math.max(est, Math.min(before, this.estimateKbps * (1 + s.intervalMs / 1000)));
        if (est >= before) this.beforeLossKbps = undefined;
      }
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
