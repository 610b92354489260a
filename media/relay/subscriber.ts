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
//
// Simulcast (layer bits in the header): each path forwards one layer of the publisher's video,
// the highest whose measured rate fits the path's estimate (src/quality/layers.ts). A switch
// happens only at a keyframe of the new layer (asked for at once), so the subscriber sees one
// continuous stream; frames of the other layers are not forwarded and not announced. An
// estimate that only grows from what arrives cannot show room for a bigger layer, so a path
// quiet for a while is probed: for a moment the node sends copies of what it forwards (flagged
// padding, dropped by the receiver) up to the next layer's rate; carried without a queue, the
// estimate takes what arrived and the path moves up; not, the next probe waits twice as long. A publisher sending only layer 0 is forwarded as
// before, bit for bit.
import { BandwidthEstimator } from "../../src/quality/estimator.ts";
import { chooseLayer, DEFAULT_LAYER_CHOICE, LayerRates, MAX_LAYERS } from "../../src/quality/layers.ts";
import type { ReceiveReportMessage } from "../../src/protocol/control.ts";
import { Flag, layerOf, Track } from "../../src/protocol/media.ts";

export interface PolicyHooks {
  /** Tell the subscriber these frames will not come (`layer` only for layers above 0). */
  skip(publisher: number, track: number, sequence: number, discardable: boolean, layer?: number): void;
  /**
   * Ask the publisher for a keyframe on `track` (the caller coalesces and rate-limits);
   * `layer` names the simulcast layer wanted (undefined: a publisher of one layer).
   */
  needKeyframe(publisher: number, track: number, layer?: number): void;
  /** Layer switches and probes, for the node's log (rare). */
  note?(what: "switch" | "probe", fields: Record<string, number | string | boolean>): void;
}

export interface PolicyOptions {
  /** Budget over the estimate the path is allowed, ×. */
  headroom: number;
  /** Burst the budget lets through, s of the estimate. */
  burstSec: number;
  /** Debt (bytes over budget, in s of the estimate) beyond which even dependent frames are dropped. */
  maxDebtSec: number;
  /**
   * Pick one simulcast layer per path (a terminal). Off for a member that stands for a whole
   * node (cascade): it gets every layer and the far node picks for its own terminals.
   */
  selectLayers: boolean;
  /** Quiet time on a path before it tries the next layer up, ms of reports. */
  probeAfterMs: number;
  /** Time a tried layer is held unless the queue grows, ms of reports. */
  probeHoldMs: number;
  /** Longest wait between tries after failed ones, ms of reports. */
  maxProbeBackoffMs: number;
}

export const DEFAULT_POLICY: PolicyOptions = {
  headroom: 1.5, burstSec: 0.5, maxDebtSec: 1.5, selectLayers: true, probeAfterMs: 2000, probeHoldMs: 1500, maxProbeBackoffMs: 8000,
};

const DECISIONS_KEPT = 128;

/** One publisher as this subscriber receives it. */
export class PathState {
  readonly estimator = new BandwidthEstimator({ initialKbps: 2500, minKbps: 100, maxKbps: 8000 });
  /** Reports seen: no budget is enforced before the first one. */
  reports = 0;
  tokens = 0;
  refillAt = 0;
  waitKeyframe = false;
  /** (layer, sequence) → forwarded? for the recent video frames (fragments and retransmissions follow it). */
  readonly decisions = new Map<number, boolean>();
  dropped = 0;
  forwardedBytes = 0;
  last?: ReceiveReportMessage;
  /** Rate of each of the publisher's layers, from everything it sends (forwarded or not). */
  readonly rates = new LayerRates();
  /** Layer forwarded now, and the layer the path should get (the switch waits for its keyframe). */
  layer = 0;
  target = 0;
  /** The publisher sends a layer above 0 (simulcast). */
  simulcast = false;
  switches = 0;
  /** Padding probes started. */
  probes = 0;
  /** Clock of the reports (sum of their intervals), ms: probing is timed by it. */
  clockMs = 0;
  /** Report time since the path last showed congestion, ms. */
  cleanMs = 0;
  /** No probe before this report time; the wait doubles after a failed probe. */
  probeAt = 0;
  probeBackoffMs = 0;
  /** Report time at which the current probe ends (0: none running). */
  probeUntil = 0;
  /** Report time of the last move up, and the estimate it was made at. */
  upAt = -Infinity;
  upKbps = 0;
  /**
   * Per layer: the estimate at which a move up to it failed (0: none). An estimate grown only
   * by what arrives must clearly pass it, or a padding probe must carry the layer, before the
   * path tries that layer again.
   */
  readonly upFailedKbps = [0, 0, 0, 0];
  /** A padding probe runs until this report time (0: none): copies of forwarded video, `padRatio` of its bytes. */
  padUntil = 0;
  padRatio = 0;
  /** A probe that carried this layer's rate (-1: none). */
  probeWon = -1;
  private padCredit = 0;
  /** Padding bytes sent (for tests and logs). */
  padBytes = 0;
  /** When the publisher's video was last seen, and the layer choice last made (relay clock, ms). */
  seenAt = 0;
  retargetAt = -Infinity;

  get estimateKbps(): number {
    return this.estimator.estimateKbps;
  }

  /** How many padding copies to send with a forwarded video datagram of `bytes`. */
  padCopies(bytes: number): number {
    if (this.padUntil === 0 || this.clockMs >= this.padUntil) return 0;
    this.padCredit += bytes * this.padRatio;
    const n = Math.min(6, Math.floor(this.padCredit / bytes));
    this.padCredit -= n * bytes;
    this.padBytes += n * bytes;
    return n;
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
    const kbps = p.estimator.update({ intervalMs: r.intervalMs, bytes: r.bytes, loss: r.loss, delayMs: r.delayMs });
    p.clockMs += r.intervalMs;
    // Quiet time: reset by congestion or loss, paused while the estimator holds (a little queueing).
    const state = p.estimator.state;
    if (state === "decrease" || r.loss >= 0.02) p.cleanMs = 0;
    else if (state === "increase") p.cleanMs += r.intervalMs;
    if (p.simulcast && this.o.selectLayers) this.retarget(r.slot, p, p.seenAt);
    return kbps;
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
    const flags = d[1]!;
    const layer = layerOf(flags);
    const seq = frameKey(layer, d);
    p.rates.add(layer, d.length, now);
    p.seenAt = now;
    if (layer !== 0 && !p.simulcast) p.simulcast = true;
    const known = p.decisions.get(seq);
    if (known !== undefined) {
      if (known) p.forwardedBytes += d.length;
      return known ? "forward" : "drop";
    }
    const key = (flags & Flag.keyframe) !== 0;
    const discardable = (flags & Flag.discardable) !== 0;
    if (this.o.selectLayers && p.simulcast) {
      if (now - p.retargetAt >= 250) this.retarget(publisher, p, now);
      if (layer !== p.layer) {
        // Another layer: taken at its keyframe when it is the target, otherwise not this path's.
        if (!(key && layer === p.target)) {
          if (layer === p.target) this.hooks.needKeyframe(publisher, track, layer);
          return "drop";
        }
        // The hold of a move up counts from the switch itself.
        if (layer > p.layer) {
          p.upAt = p.clockMs;
          p.probeUntil = p.clockMs + this.o.probeHoldMs;
        }
        this.hooks.note?.("switch", { publisher, from: p.layer, to: layer, estimateKbps: Math.round(p.estimateKbps) });
        p.layer = layer;
        p.switches++;
      }
    }
    // Going down: the layer that no longer fits stops at once (its big keyframes would only fill
    // the queue further); the lower one starts at its keyframe, asked for already.
    const leaving = this.o.selectLayers && p.simulcast && p.target < p.layer && layer === p.layer;
    let forward: boolean;
    if (leaving) {
      forward = false;
    } else if (key) {
      p.waitKeyframe = false;
      forward = true;
    } else if (p.waitKeyframe) {
      forward = false;
      this.hooks.needKeyframe(publisher, track, p.simulcast ? p.target : undefined);
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
        this.hooks.needKeyframe(publisher, track, p.simulcast ? p.target : undefined);
      } else forward = true;
    }
    // A keyframe's debt is bounded: the frames after it must not pay for it all.
    if (forward) p.tokens = key ? Math.max(p.tokens - frameBytes, -((p.estimator.estimateKbps * 125) * this.o.maxDebtSec) / 2) : p.tokens - frameBytes;
    this.remember(p, seq, forward);
    if (forward) p.forwardedBytes += d.length;
    else {
      p.dropped++;
      this.hooks.skip(publisher, track, seq % 0x100000000, discardable, layer || undefined);
    }
    return forward ? "forward" : "drop";
  }

  /**
   * Padding copies to send along with a forwarded video datagram of `publisher` (a probe of the
   * path's capacity, see `retarget`); 0 almost always.
   */
  padding(publisher: number, bytes: number): number {
    const p = this.paths.get(publisher);
    return p ? p.padCopies(bytes) : 0;
  }

  /** The layer to ask `publisher` for a keyframe on, for this subscriber (undefined: one layer only). */
  keyframeLayer(publisher: number): number | undefined {
    const p = this.paths.get(publisher);
    return p?.simulcast && this.o.selectLayers ? p.target : undefined;
  }

  /**
   * Re-chooses the path's target layer from the estimate and the layers' rates; when it
   * differs from the layer forwarded, the publisher is asked for a keyframe of it.
   */
  private retarget(publisher: number, p: PathState, now: number): void {
    p.retargetAt = now;
    const rates: (number | undefined)[] = [];
    let above = -1;
    for (let l = 0; l < MAX_LAYERS; l++) {
      const live = p.rates.live(l, now);
      rates.push(live ? p.rates.kbps(l, now) : undefined);
      if (live && l > p.layer && above < 0) above = l;
    }
    const o = this.o;
    const est = p.estimator;
    const congested = est.state === "decrease" || (p.last?.loss ?? 0) > 0.05;
    let target: number;
    if (p.reports < 2) {
      // Nothing known about the path yet: stay on what it has, or the lowest layer there is.
      target = rates[p.layer] !== undefined ? p.layer : chooseLayer(0, rates, p.layer);
    } else if (p.probeUntil > 0 && p.clockMs < p.probeUntil && !congested && rates[p.target] !== undefined) {
      target = p.target; // a layer just taken is held until the path shows whether it carries it
    } else {
      if (p.probeUntil > 0 && p.target === p.layer && p.clockMs >= p.probeUntil) {
        p.probeUntil = 0;
        // The path carried the bigger layer without a queue: it is worth at least that much.
        if (!congested) est.estimateKbps = Math.max(est.estimateKbps, Math.min(rates[p.layer] ?? 0, est.receivedKbps) * 1.1);
      }
      if (p.padUntil > 0 && (congested || p.clockMs >= p.padUntil)) {
        // A padding probe ends. Carried without a queue: the path is worth what arrived. Not: wait longer next time.
        p.padUntil = 0;
        this.hooks.note?.("probe", { publisher, ok: !congested, receivedKbps: Math.round(est.receivedKbps), nextLayerKbps: above >= 0 ? Math.round(rates[above]!) : 0 });
        if (!congested) {
          est.estimateKbps = Math.max(est.estimateKbps, est.receivedKbps);
          p.probeBackoffMs = 0;
          p.probeAt = p.clockMs; // the next step may follow at once
          // It carried the next layer's rate: take that layer (held, and left if the queue grows).
          if (above >= 0 && est.receivedKbps >= rates[above]! / DEFAULT_LAYER_CHOICE.upShare) {
            p.probeWon = above;
            for (let l = 0; l <= above; l++) p.upFailedKbps[l] = 0;
          }
        } else {
          p.probeBackoffMs = Math.min(o.maxProbeBackoffMs, Math.max(o.probeAfterMs, p.probeBackoffMs * 2));
          p.probeAt = p.clockMs + p.probeBackoffMs;
        }
      }
      const won = p.probeWon;
      p.probeWon = -1;
      // Congested: no slack for the current layer, the queue must drain now.
      target = chooseLayer(est.estimateKbps, rates, p.layer, congested ? { keepShare: 0.9 } : {});
      const mayRise = p.clockMs >= p.probeAt && !congested;
      if (target > p.layer && !mayRise) target = p.layer;
      if (target > p.layer && p.upFailedKbps[target]! > 0 && est.estimateKbps < p.upFailedKbps[target]! * 1.25) target = p.layer;
      if (won > target && rates[won] !== undefined && !congested) target = won;
      // The estimate only grows a step above what arrives: a path quiet for a while is probed
      // with copies of what it gets (no decoder sees them) up to the next layer's rate.
      if (target <= p.layer && above >= 0 && mayRise && p.cleanMs >= o.probeAfterMs && p.padUntil === 0) {
        // At most 1.6 × the estimate at a time: a path far from the next layer climbs in a few
        // probes (each success lifts the estimate), and a failed one overfills it less.
        // Copies are of the current layer's video; the rest of what arrives is mostly audio.
        const need = (rates[above]! / DEFAULT_LAYER_CHOICE.upShare) * 1.1;
        const video = Math.max(50, rates[p.layer] ?? 0);
        const aim = Math.min(need, Math.max(est.estimateKbps, video) * 1.6);
        p.padRatio = Math.min(6, Math.max(0.25, (aim - video - 60) / video));
        p.padUntil = p.clockMs + o.probeHoldMs;
        p.probeAt = p.clockMs + o.probeHoldMs + o.probeAfterMs;
        p.probes++;
      }
      if (target > p.layer && p.target <= p.layer) {
        p.probeUntil = p.clockMs + o.probeHoldMs;
        p.upAt = p.clockMs;
        p.upKbps = est.estimateKbps;
      }
    }
    if (target < p.layer && p.target >= p.layer) {
      // Going down. Soon after going up, that was a failed try: the next one waits twice as long.
      const failed = p.clockMs - p.upAt < o.probeHoldMs + 3000;
      if (failed) p.upFailedKbps[p.layer] = Math.max(p.upFailedKbps[p.layer]!, p.upKbps);
      p.probeBackoffMs = failed ? Math.min(o.maxProbeBackoffMs, Math.max(o.probeAfterMs, p.probeBackoffMs * 2)) : o.probeAfterMs;
      p.probeAt = p.clockMs + p.probeBackoffMs;
      p.probeUntil = 0;
      p.cleanMs = 0;
    }
    p.target = target;
    if (target !== p.layer) this.hooks.needKeyframe(publisher, Track.video, target);
  }

  /**
   * A frame (or part of it) could not be delivered after all (queue deadline): treat it as
   * dropped here, so the rest of it is not sent and dependent frames wait for a keyframe.
   */
  dropped(publisher: number, d: Uint8Array): void {
    if ((d[1]! & Flag.padding) !== 0) return; // a probe's copy: the frame itself went
    const track = d[2]!;
    if (track !== Track.video) return;
    const p = this.path(publisher);
    const layer = layerOf(d[1]!);
    const seq = frameKey(layer, d);
    if (p.decisions.get(seq) === false) return;
    this.remember(p, seq, false);
    p.dropped++;
    const discardable = (d[1]! & Flag.discardable) !== 0;
    this.hooks.skip(publisher, track, seq % 0x100000000, discardable, layer || undefined);
    if (!discardable) {
      p.waitKeyframe = true;
      this.hooks.needKeyframe(publisher, track, p.simulcast ? p.target : undefined);
    }
  }

  /** The publisher left or rejoined: its sequences start again. */
  reset(publisher: number): void {
    this.paths.delete(publisher);
  }

  private remember(p: PathState, seq: number, forward: boolean): void {
    // (Keys are layer·2³² + sequence: each layer numbers its frames on its own.)
    p.decisions.set(seq, forward);
    if (p.decisions.size > DECISIONS_KEPT) p.decisions.delete(p.decisions.keys().next().value!);
  }
}

/** A video frame's key in a path's decisions: its layer and its sequence. */
function frameKey(layer: number, d: Uint8Array): number {
  return layer * 0x100000000 + (((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0);
}
