// Resolution and frame-rate steps for one encoder following a bitrate: below a floor of bits
// per pixel per frame the picture turns to mush, so fewer pixels (720p → 540p → 360p) and then
// fewer frames (20 → 15 → 10 fps) look better than more of them starved. Stepping up needs
// clear room and a quiet spell, so the encoder does not flap between two steps.

export interface VideoStep {
  height: number;
  fps: number;
}

export interface StepOptions {
  /** Bits per pixel per frame below which the step is too big for the bitrate. */
  minBpp: number;
  /** A higher step is taken only when it would get this many times `minBpp`. */
  upMargin: number;
  /** Time since the last change before a step up, ms. */
  upHoldMs: number;
  /** Time since the last change before a step down, ms (a first step is at once). */
  downHoldMs: number;
  /** Width / height. */
  aspect: number;
  /** The encoder counts as held back by its bitrate when it uses this share of it or more. */
  limitedShare: number;
  /** Under this share of `minBpp` a step is too big even for an encoder that leaves bits unused. */
  starvedShare: number;
  /**
   * No step down in an encoder's first moments, ms: a call's estimate starts from what the
   * first frames showed and takes a few seconds to grow to what the path carries.
   */
  startGraceMs: number;
  /** A step down is taken only once it has been called for this long without a break, ms (a dip of the estimate passes). */
  downAfterMs: number;
  /** An encoder with bits to spare steps up when the bigger step would still use at most this share (its output taken to grow as √ of the pixel rate). */
  easyShare: number;
}

export const DEFAULT_STEPS: StepOptions = {
  minBpp: 0.04, upMargin: 1.35, upHoldMs: 4000, downHoldMs: 1000, aspect: 16 / 9, limitedShare: 0.95, easyShare: 0.8, downAfterMs: 2000, starvedShare: 0.5, startGraceMs: 6000,
};

export interface StepInput {
  /** The encoder's bitrate target, kbit/s. */
  kbps: number;
  /** What the encoder actually produced lately at the current step, kbit/s (undefined: assume all of `kbps`). */
  usedKbps?: number;
  /** Time since the last change, ms. */
  sinceChangeMs: number;
}

/**
 * The steps for a camera, largest first: every standard height up to the camera's at its frame
 * rate down to 540p, then 360p at the camera's rate, 15 and 10 fps, then 180p at 10 fps.
 */
export function stepLadder(cameraHeight: number, cameraFps: number, maxHeight = Infinity): VideoStep[] {
  const top = Math.min(cameraHeight, maxHeight);
  const fps = Math.max(1, Math.round(cameraFps));
  const out: VideoStep[] = [];
  for (const h of [2160, 1440, 1080, 720, 540]) if (h <= top) out.push({ height: h, fps });
  if (top > 360 && !out.length) out.push({ height: top, fps });
  const small = Math.min(360, top);
  for (const f of [fps, Math.min(15, fps), Math.min(10, fps)]) {
    if (!out.some((s) => s.height === small && s.fps === f)) out.push({ height: small, fps: f });
  }
  const tiny = Math.min(180, small);
  if (!out.some((s) => s.height === tiny && s.fps === Math.min(10, fps))) out.push({ height: tiny, fps: Math.min(10, fps) });
  return out;
}

export function bitsPerPixel(kbps: number, step: VideoStep, aspect = DEFAULT_STEPS.aspect): number {
  const width = Math.round((step.height * aspect) / 2) * 2;
  return (kbps * 1000) / (width * step.height * step.fps);
}

/**
 * The next step (index into `ladder`, 0 = largest) for a bitrate. Down: as many steps as it
 * takes to reach the floor, once `downHoldMs` passed since the last change — but only while
 * the encoder uses its bitrate: one filming a still scene leaves bits unused, and fewer pixels
 * would buy it nothing. Up: one step, when it would have `upMargin` over the floor, or when the
 * encoder has bits to spare even for the bigger step's pixels; and `upHoldMs` passed.
 */
export function nextStep(ladder: readonly VideoStep[], current: number, input: StepInput, opts: Partial<StepOptions> = {}): number {
  const o = { ...DEFAULT_STEPS, ...opts };
  const { kbps, usedKbps, sinceChangeMs } = input;
  const bpp = (i: number) => bitsPerPixel(kbps, ladder[i]!, o.aspect);
  const pixelRate = (i: number) => ladder[i]!.height * ladder[i]!.height * ladder[i]!.fps;
  const limited = usedKbps === undefined || usedKbps >= kbps * o.limitedShare;
  let i = Math.min(Math.max(0, current), ladder.length - 1);
  // Far under the floor, even a still scene is starved: down whatever the encoder used.
  if (bpp(i) < o.minBpp && (limited || bpp(i) < o.minBpp * o.starvedShare)) {
    if (sinceChangeMs < o.downHoldMs) return i;
    while (i < ladder.length - 1 && bpp(i) < o.minBpp) i++;
    return i;
  }
  if (i > 0 && sinceChangeMs >= o.upHoldMs) {
    if (bpp(i - 1) >= o.minBpp * o.upMargin) return i - 1;
    // An encoder's output grows about as the square root of the pixel rate on a still scene.
    if (!limited && usedKbps! * Math.sqrt(pixelRate(i - 1) / pixelRate(i)) <= kbps * o.easyShare) return i - 1;
  }
  return i;
}

/** `nextStep` with its state: the current step, when it last changed, since when a step down is called for. */
export class StepSelector {
  index = 0;
  private changedAt = -Infinity;
  private downSince: number | undefined;
  private startedAt: number | undefined;
  constructor(public ladder: VideoStep[], private readonly opts: Partial<StepOptions> = {}) {}

  get step(): VideoStep {
    return this.ladder[this.index]!;
  }

  /** Feeds the bitrate now (and what the encoder used of it); returns true when the step changed. */
  update(kbps: number, now: number, usedKbps?: number): boolean {
    this.startedAt ??= now;
    let next = nextStep(this.ladder, this.index, { kbps, usedKbps, sinceChangeMs: now - this.changedAt }, this.opts);
    if (next > this.index && now - this.startedAt < (this.opts.startGraceMs ?? DEFAULT_STEPS.startGraceMs)) next = this.index;
    if (next > this.index) {
      this.downSince ??= now;
      if (now - this.downSince < (this.opts.downAfterMs ?? DEFAULT_STEPS.downAfterMs)) next = this.index;
    } else this.downSince = undefined;
    if (next === this.index) return false;
    this.downSince = undefined;
    this.index = next;
    this.changedAt = now;
    return true;
  }

  /**
   * A new ladder (another camera or layer size): the same step if it has it, else the largest
   * no bigger. When the new ladder reaches higher (a layer's size cap lifted: the layer above it
   * went away and this one is now the top), the step the old cap imposed says nothing about the
   * bitrate: with `kbps` given, the largest step that bitrate carries is taken at once, instead
   * of climbing back one held step at a time (a call sent 360p for 8 s after a layer went).
   */
  setLadder(ladder: VideoStep[], kbps?: number): void {
    const cur = this.step;
    const grew = ladder[0] !== undefined && this.ladder[0] !== undefined && ladder[0].height > this.ladder[0].height;
    this.ladder = ladder;
    const same = ladder.findIndex((x) => x.height === cur.height && x.fps === cur.fps);
    const smaller = ladder.findIndex((x) => x.height <= cur.height);
    this.index = same >= 0 ? same : smaller >= 0 ? smaller : ladder.length - 1;
    if (grew && kbps !== undefined) {
      const minBpp = this.opts.minBpp ?? DEFAULT_STEPS.minBpp;
      const aspect = this.opts.aspect ?? DEFAULT_STEPS.aspect;
      const fits = ladder.findIndex((x) => bitsPerPixel(kbps, x, aspect) >= minBpp);
      if (fits >= 0 && fits < this.index) this.index = fits;
    }
  }
}
