// Simulcast quality layers, runtime-neutral: how many layers a sender publishes for its uplink
// (and at which bitrates), the rate of each layer as a node measures it, and which layer a
// subscriber's path takes. Layer 0 is the lowest; each layer is a complete stream of its own
// (own sequence space and keyframes), so a node switches between them only at keyframes.

/** Most layers the media header can name (2 bits). */
export const MAX_LAYERS = 4;

export interface LayerPlan {
  /** Encoded height, px (width follows the camera's aspect). */
  height: number;
  /** Encoder target, kbit/s. */
  bitrateKbps: number;
}

export interface SimulcastOptions {
  /** Least uplink for a second layer, and below which it goes even when what is sent fits, kbit/s. */
  twoMinKbps: number;
  twoOffKbps: number;
  /** Least uplink for a third (1080p) layer, and below which it goes, kbit/s (camera ≥ 1080p only). */
  threeMinKbps: number;
  threeOffKbps: number;
  /** A layer goes when the uplink estimate falls under this share of what is sent (the uplink is full). */
  fullShare: number;
  /** The low layer's height and bitrate (kbit/s). */
  lowHeight: number;
  lowKbps: number;
  /** The middle layer's bitrate when there are three, kbit/s. */
  midKbps: number;
  /** Share of the uplink given to video (audio, retransmissions and keyframes need the rest). */
  videoShare: number;
  audioKbps: number;
  /** Most a layer of each height is given, kbit/s. */
  maxKbps: (height: number) => number;
  /** Most layers to plan (e.g. the count sent now, while a new one waits out its delay). */
  maxLayers: number;
}

export const DEFAULT_SIMULCAST: SimulcastOptions = {
  twoMinKbps: 700,
  twoOffKbps: 500,
  threeMinKbps: 3000,
  threeOffKbps: 2200,
  fullShare: 0.9,
  lowHeight: 360,
  lowKbps: 300,
  midKbps: 1200,
  videoShare: 0.75,
  audioKbps: 60,
  maxKbps: (h) => (h >= 1080 ? 4500 : h >= 720 ? 2500 : h >= 540 ? 1500 : 800),
  maxLayers: 3,
};

export interface UplinkState {
  /** The node's estimate of this sender's uplink, kbit/s (undefined: not known yet). */
  uplinkKbps: number | undefined;
  /** What this sender sends now (all media), kbit/s, measured. */
  sendKbps: number | undefined;
  /** Layers sent now. */
  layers: number;
  /** The node's target for the thinnest receiver path, kbit/s: caps the low layer, which that receiver gets. */
  targetKbps?: number;
}

/**
 * The layers to publish, lowest first. The node's uplink estimate grows only a step above
 * what arrives (an encoder filming a still scene sends far less than its target), so a layer
 * is added when the uplink could carry what is sent now plus the new layer, and above a floor
 * (no 720p layer on a 300 kbit/s uplink); it goes when the estimate falls under what is sent
 * (the uplink is full) or under a lower floor — two thresholds, so the count does not flap.
 */
export function planSimulcast(cameraHeight: number, u: UplinkState, opts: Partial<SimulcastOptions> = {}): LayerPlan[] {
  const o = { ...DEFAULT_SIMULCAST, ...opts };
  const video = (kbps: number) => Math.max(50, (kbps - o.audioKbps) * o.videoShare);
  const { uplinkKbps: up, sendKbps: sent, layers, targetKbps } = u;
  const single = (): LayerPlan[] => {
    const kbps = targetKbps ?? up;
    return [{ height: cameraHeight, bitrateKbps: Math.round(Math.min(o.maxKbps(cameraHeight), kbps === undefined ? o.maxKbps(cameraHeight) : video(kbps))) }];
  };
  if (up === undefined || sent === undefined || cameraHeight < 540) return single();
  const full = up < sent * o.fullShare;
  const low = Math.round(Math.min(o.lowKbps, targetKbps === undefined ? o.lowKbps : Math.max(100, video(targetKbps))));
  let count = 1;
  if (layers >= 2 ? up >= o.twoOffKbps : up >= Math.max(o.twoMinKbps, sent + low)) count = 2;
  if (count === 2 && cameraHeight >= 1080) {
    if (layers >= 3 ? up >= o.threeOffKbps : up >= Math.max(o.threeMinKbps, sent + o.midKbps)) count = 3;
  }
  // A full uplink sheds the top layer (one at a time: the next estimate tells whether that was enough).
  if (full && layers >= 2) count = Math.min(count, layers - 1);
  count = Math.min(count, Math.max(1, o.maxLayers));
  if (count === 1) return single();
  const heights = count === 3 ? [o.lowHeight, 720, cameraHeight] : [o.lowHeight, Math.min(720, cameraHeight)];
  // The top layer gets what one stream would (the low layer was checked to fit beside what is
  // sent); a middle one a share of it.
  const plan: LayerPlan[] = [{ height: heights[0]!, bitrateKbps: low }];
  const topKbps = video(up);
  if (count === 3) plan.push({ height: heights[1]!, bitrateKbps: Math.round(Math.min(o.midKbps, Math.max(300, topKbps / 3))) });
  const top = heights[heights.length - 1]!;
  plan.push({ height: top, bitrateKbps: Math.round(Math.max(300, Math.min(o.maxKbps(top), topKbps))) });
  return plan;
}

/**
 * The rate of each layer of one publisher as seen at the node, from the bytes of every
 * datagram or object of it (forwarded or not): a sliding window of `windowMs` in
 * `bucketMs` buckets, so a keyframe's burst is averaged with the frames around it.
 */
export class LayerRates {
  private readonly buckets: Float64Array;
  private readonly lastSeen = new Float64Array(MAX_LAYERS).fill(-Infinity);
  private readonly firstSeen = new Float64Array(MAX_LAYERS);
  private bucketStart = -Infinity;
  private readonly n: number;

  constructor(private readonly windowMs = 2000, private readonly bucketMs = 250) {
    this.n = Math.max(2, Math.round(windowMs / bucketMs));
    this.buckets = new Float64Array(this.n * MAX_LAYERS);
  }

  add(layer: number, bytes: number, now: number): void {
    this.roll(now);
    this.buckets[layer * this.n + this.index(now)]! += bytes;
    // Back after a pause longer than the window: its rate counts from now.
    if (now - this.lastSeen[layer]! > this.windowMs) this.firstSeen[layer] = now;
    this.lastSeen[layer] = now;
  }

  /** The layer was seen within the last second. */
  live(layer: number, now: number): boolean {
    return now - this.lastSeen[layer]! <= 1000;
  }

  /** Layers seen within the last second, as a bit mask. */
  liveMask(now: number): number {
    let m = 0;
    for (let l = 0; l < MAX_LAYERS; l++) if (this.live(l, now)) m |= 1 << l;
    return m;
  }

  /** kbit/s over the window (or since the layer appeared, when that is shorter). */
  kbps(layer: number, now: number): number {
    this.roll(now);
    let bytes = 0;
    for (let i = 0; i < this.n; i++) bytes += this.buckets[layer * this.n + i]!;
    const covered = (this.n - 1) * this.bucketMs + (now - Math.floor(now / this.bucketMs) * this.bucketMs);
    const span = Math.max(this.bucketMs, Math.min(covered, now - this.firstSeen[layer]!));
    return (bytes * 8) / span;
  }

  private index(now: number): number {
    return Math.floor(now / this.bucketMs) % this.n;
  }

  /** Empties the buckets the clock has moved past since the last call. */
  private roll(now: number): void {
    const cur = Math.floor(now / this.bucketMs);
    const prev = this.bucketStart;
    if (cur === prev) return;
    const steps = prev === -Infinity ? this.n : Math.min(this.n, cur - prev);
    for (let s = 1; s <= steps; s++) {
      const i = (((cur - steps + s) % this.n) + this.n) % this.n;
      for (let l = 0; l < MAX_LAYERS; l++) this.buckets[l * this.n + i] = 0;
    }
    this.bucketStart = cur;
  }
}

export interface LayerChoiceOptions {
  /** A higher layer is taken when its rate is at most this share of the estimate. */
  upShare: number;
  /** The current layer is kept while its rate is at most this share of the estimate. */
  keepShare: number;
}

// Kept a little over the estimate: a layer's measured rate includes the keyframe that started it,
// and real congestion drops the estimate well below what arrives anyway.
export const DEFAULT_LAYER_CHOICE: LayerChoiceOptions = { upShare: 0.8, keepShare: 1.2 };

/**
 * The layer a path should get: the highest live layer whose rate fits the path's estimate
 * (a layer above the current one must fit with room to spare, so the choice does not flap),
 * else the lowest live layer. `rates[l]` is undefined for a layer that is not being sent.
 */
export function chooseLayer(
  estimateKbps: number,
  rates: readonly (number | undefined)[],
  current: number,
  opts: Partial<LayerChoiceOptions> = {},
): number {
  const o = { ...DEFAULT_LAYER_CHOICE, ...opts };
  let lowest = -1;
  let best = -1;
  for (let l = 0; l < rates.length; l++) {
    const r = rates[l];
    if (r === undefined) continue;
    if (lowest < 0) lowest = l;
    const share = l > current ? o.upShare : o.keepShare;
    if (r <= estimateKbps * share) best = l;
  }
  if (best >= 0) return best;
  return lowest >= 0 ? lowest : current;
}
