// The forwarding decision per subscriber, apart from the relay core so that node-to-node
// cascading can reuse it. For each (publisher → this subscriber) path it keeps a bandwidth
// estimate fed by the subscriber's receive reports, and decides per *frame* (never per
// fragment: the first fragment seen decides, the rest follow) whether to forward:
// - audio always (it is small and what a consultation cannot lose);
// - a discardable video frame (nothing depends on it) only when the path's budget has room;
// - after a dropped frame others depend on, nothing until a keyframe (a keyframe is asked for);
// - a keyframe always.
// Frames dropped on purpose are announced to the subscriber (`skip`) so it neither waits for
// them nor asks for them again. Reads only the media header, never the payload.
import { BandwidthEstimator } from "../../src/quality/estimator.ts";
import type { ReceiveReportMessage } from "../../src/protocol/control.ts";
import { Flag, Track } from "../../src/protocol/media.ts";

export interface PolicyHooks {
  /** Tell the subscriber these frames will not come. */
  skip(publisher: number, track: number, sequence: number, discardable: boolean): void;
  /** Ask the publisher for a keyframe on `track` (the caller coalesces and rate-limits). */
  needKeyframe(publisher: number, track: number): void;
}

export interface PolicyOptions {
  /** Budget over the estimate the path is allowed, ×. */
  headroom: number;
  /** Burst the budget lets through, s of the estimate. */
  burstSec: number;
  /** Debt (bytes over budget, in s of the estimate) beyond which even dependent frames are dropped. */
  maxDebtSec: number;
}

export const DEFAULT_POLICY: PolicyOptions = { headroom: 1.5, burstSec: 0.5, maxDebtSec: 1.5 };

const DECISIONS_KEPT = 128;

/** One publisher as this subscriber receives it. */
export class PathState {
  readonly estimator = new BandwidthEstimator({ initialKbps: 2500, minKbps: 100, maxKbps: 8000 });
  /** Reports seen: no budget is enforced before the first one. */
  reports = 0;
  tokens = 0;
  refillAt = 0;
  waitKeyframe = false;
  /** sequence → forwarded? for the recent video frames (fragments and retransmissions follow it). */
  readonly decisions = new Map<number, boolean>();
  dropped = 0;
  forwardedBytes = 0;
  last?: ReceiveReportMessage;

  get estimateKbps(): number {
    return this.estimator.estimateKbps;
  }
}

export type Verdict = "forward" | "drop";

export class SubscriberPolicy {
  readonly paths = new Map<number, PathState>();
  private readonly o: PolicyOptions;

  constructor(private readonly hooks: PolicyHooks, opts: Partial<PolicyOptions> = {}) {
    this.o = { ...DEFAULT_POLICY, ...opts };
  }

  path(publisher: number): PathState {
    let p = this.paths.get(publisher);
    if (!p) this.paths.set(publisher, (p = new PathState()));
    return p;
  }

  /** The subscriber's feedback about `publisher`; returns the path's new estimate, kbit/s. */
  onReport(r: ReceiveReportMessage): number {
    const p = this.path(r.slot);
    p.last = r;
    p.reports++;
    return p.estimator.update({ intervalMs: r.intervalMs, bytes: r.bytes, loss: r.loss, delayMs: r.delayMs });
  }

  /**
   * Decides for one media object (a datagram fragment or a whole reliable object) from
   * `publisher`, header in `d`. `frameBytes` is the whole frame's size or a close guess.
   */
  decide(publisher: number, d: Uint8Array, frameBytes: number, now: number): Verdict {
    const track = d[2]!;
    const p = this.path(publisher);
    if (track !== Track.video) {
      p.forwardedBytes += d.length;
      return "forward";
    }
    const seq = ((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0;
    const known = p.decisions.get(seq);
    if (known !== undefined) {
      if (known) p.forwardedBytes += d.length;
      return known ? "forward" : "drop";
    }
    const flags = d[1]!;
    const key = (flags & Flag.keyframe) !== 0;
    const discardable = (flags & Flag.discardable) !== 0;
    let forward: boolean;
    if (key) {
      p.waitKeyframe = false;
      forward = true;
    } else if (p.waitKeyframe) {
      forward = false;
      this.hooks.needKeyframe(publisher, track);
    } else if (p.reports === 0) {
      forward = true;
    } else {
      const rate = (p.estimator.estimateKbps * 1000 / 8) * this.o.headroom; // bytes/s
      const cap = rate * this.o.burstSec;
      if (p.refillAt === 0) { p.tokens = cap; p.refillAt = now; }
      p.tokens = Math.min(cap, p.tokens + ((now - p.refillAt) * rate) / 1000);
      p.refillAt = now;
      if (discardable) forward = p.tokens >= frameBytes;
      else if (p.tokens - frameBytes < -rate * this.o.maxDebtSec) {
        // Hopelessly over budget: stop the dependent chain here and restart it at a keyframe.
        forward = false;
        p.waitKeyframe = true;
        this.hooks.needKeyframe(publisher, track);
      } else forward = true;
    }
    // A keyframe's debt is bounded: the frames after it must not pay for it all.
    if (forward) p.tokens = key ? Math.max(p.tokens - frameBytes, -((p.estimator.estimateKbps * 125) * this.o.maxDebtSec) / 2) : p.tokens - frameBytes;
    this.remember(p, seq, forward);
    if (forward) p.forwardedBytes += d.length;
    else {
      p.dropped++;
      this.hooks.skip(publisher, track, seq, discardable);
    }
    return forward ? "forward" : "drop";
  }

  /**
   * A frame (or part of it) could not be delivered after all (queue deadline): treat it as
   * dropped here, so the rest of it is not sent and dependent frames wait for a keyframe.
   */
  dropped(publisher: number, d: Uint8Array): void {
    const track = d[2]!;
    if (track !== Track.video) return;
    const p = this.path(publisher);
    const seq = ((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0;
    if (p.decisions.get(seq) === false) return;
    this.remember(p, seq, false);
    p.dropped++;
    const discardable = (d[1]! & Flag.discardable) !== 0;
    this.hooks.skip(publisher, track, seq, discardable);
    if (!discardable) {
      p.waitKeyframe = true;
      this.hooks.needKeyframe(publisher, track);
    }
  }

  /** The publisher left or rejoined: its sequences start again. */
  reset(publisher: number): void {
    this.paths.delete(publisher);
  }

  private remember(p: PathState, seq: number, forward: boolean): void {
    p.decisions.set(seq, forward);
    if (p.decisions.size > DECISIONS_KEPT) p.decisions.delete(p.decisions.keys().next().value!);
  }
}
