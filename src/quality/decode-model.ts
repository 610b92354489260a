// Which received video frames a decoder could use, without decoding: a keyframe always; a
// frame nothing depends on (discardable, a top temporal layer) when the chain it builds on is
// intact; any other frame only when no frame of the chain was missed since the last keyframe.
// The node says which missing frames it dropped on purpose and whether they were discardable
// (`skip`); any other missing frame is taken to break the chain — unless the frames carry their
// place in the chain (like VP8's TL0PICIDX, in the application's payload, which the node never
// reads): then a lost discardable frame is known to be harmless. Used by the SDK to ask for a
// keyframe before the decoder fails, and by tests and the bench to count freezes.

export type FrameVerdict = "decoded" | "undecodable";

export class DecodeModel {
  private broken = true;
  private expected?: number;
  /** Missing sequences known to be discardable (the node skipped them). */
  private readonly harmless = new Set<number>();
  decoded = 0;
  undecodable = 0;

  /** The node dropped `sequence`; `discardable` says whether anything depended on it. */
  skipped(sequence: number, discardable: boolean): void {
    if (discardable) this.harmless.add(sequence >>> 0);
    if (this.harmless.size > 1024) this.harmless.delete(this.harmless.values().next().value!);
  }

  private base?: number;

  /**
   * A whole frame, in sequence order. Returns whether it decodes. `chainIndex`, when the
   * sender provides it: for a frame others depend on, its number in the chain (+1 per such
   * frame, u16); for a discardable frame, the number of the chain frame it refers to.
   */
  frame(sequence: number, keyframe: boolean, discardable: boolean, chainIndex?: number): FrameVerdict {
    if (chainIndex !== undefined) return this.chained(sequence, keyframe, discardable, chainIndex);
    if (this.expected !== undefined) {
      // Frames between the expected one and this one never came.
      for (let s = this.expected; s !== sequence && ((sequence - s) >>> 0) < 0x8000; s = (s + 1) >>> 0) {
        if (!this.harmless.delete(s)) this.broken = true;
      }
    }
    this.expected = (sequence + 1) >>> 0;
    if (keyframe) this.broken = false;
    if (this.broken) {
      this.undecodable++;
      return "undecodable";
    }
    this.decoded++;
    void discardable; // a discardable frame decodes when its chain is intact, like any other
    return "decoded";
  }

  private chained(sequence: number, keyframe: boolean, discardable: boolean, index: number): FrameVerdict {
    this.expected = (sequence + 1) >>> 0;
    let ok: boolean;
    if (keyframe) {
      this.broken = false;
      this.base = index;
      ok = true;
    } else if (this.broken || this.base === undefined) {
      this.broken = true;
      ok = false;
    } else if (discardable) {
      // Refers to a chain frame we lack: it cannot decode, yet breaks nothing after it.
      ok = index === this.base;
    } else if (index === ((this.base + 1) & 0xffff)) {
      this.base = index;
      ok = true;
    } else {
      this.broken = true;
      ok = false;
    }
    if (!ok) {
      this.undecodable++;
      return "undecodable";
    }
    this.decoded++;
    return "decoded";
  }

  /** The decoder needs a keyframe to go on. */
  get needsKeyframe(): boolean {
    return this.broken;
  }
}

/**
 * Freezes as WebRTC counts them: a gap between rendered frames longer than
 * max(3 × the nominal frame interval, frame interval + 150 ms).
 */
export class FreezeMeter {
  private last?: number;
  private first?: number;
  freezes = 0;
  freezeMs = 0;
  maxFreezeMs = 0;
  rendered = 0;

  /** `startedAt`: when frames were first expected (the wait for the first one counts); omitted, counting starts at the first frame. */
  constructor(private readonly frameIntervalMs: number, startedAt?: number) {
    this.last = startedAt;
  }

  render(now: number): void {
    this.rendered++;
    this.first ??= now;
    if (this.last !== undefined) this.gap(now - this.last);
    this.last = now;
  }

  /** Closes the measurement at `now` (a freeze running at the end counts). */
  finish(now: number): void {
    if (this.last !== undefined) this.gap(now - this.last);
    else this.gap(Infinity);
    this.last = now;
  }

  private gap(ms: number): void {
    const threshold = Math.max(3 * this.frameIntervalMs, this.frameIntervalMs + 150);
    if (ms > threshold) {
      this.freezes++;
      this.freezeMs += ms;
      if (ms > this.maxFreezeMs) this.maxFreezeMs = ms;
    }
  }

  /** Share of `durationMs` spent frozen, %. */
  freezePct(durationMs: number): number {
    return durationMs > 0 ? Math.min(100, (100 * this.freezeMs) / durationMs) : 0;
  }
}
