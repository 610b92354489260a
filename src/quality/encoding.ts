// What to encode for a target bitrate: resolution, frame rate and bitrate from a fixed ladder,
// so every sender (browser SDK, synthetic test sources) reacts to an estimate the same way.

export interface Encoding {
  name: string;
  width: number;
  height: number;
  fps: number;
  /** Encoder target, kbit/s. */
  bitrateKbps: number;
}

/** Lowest bitrate each rung needs to look right, kbit/s (VP8/H.264 ballpark, 30 fps). */
export const LADDER: readonly Omit<Encoding, "bitrateKbps">[] = [
  { name: "1080p", width: 1920, height: 1080, fps: 30 },
  { name: "720p", width: 1280, height: 720, fps: 30 },
  { name: "540p", width: 960, height: 540, fps: 30 },
  { name: "360p", width: 640, height: 360, fps: 30 },
  { name: "360p15", width: 640, height: 360, fps: 15 },
  { name: "180p", width: 320, height: 180, fps: 15 },
];
const MIN_KBPS = [2500, 1200, 700, 350, 200, 0];

export interface EncodingLimits {
  /** The camera's resolution: never encode above it. */
  maxHeight?: number;
  maxFps?: number;
  /** Share of the estimate given to video (audio, its redundancy, retransmissions and keyframes need the rest; default 0.7). */
  videoShare?: number;
  /** Audio bitrate reserved out of the estimate, kbit/s (default 60: Opus at 32 kbit/s plus packet overhead). */
  audioKbps?: number;
}

/** The rung for an estimate of the path, kbit/s. */
export function chooseEncoding(estimateKbps: number, limits: EncodingLimits = {}): Encoding {
  const share = limits.videoShare ?? 0.7;
  const video = Math.max(50, (estimateKbps - (limits.audioKbps ?? 60)) * share);
  for (let i = 0; i < LADDER.length; i++) {
    const rung = LADDER[i]!;
    if (limits.maxHeight !== undefined && rung.height > limits.maxHeight) continue;
    if (video >= MIN_KBPS[i]! || i === LADDER.length - 1) {
      const fps = Math.min(rung.fps, limits.maxFps ?? rung.fps);
      return { ...rung, fps, bitrateKbps: Math.round(video) };
    }
  }
  const last = LADDER[LADDER.length - 1]!;
  return { ...last, bitrateKbps: Math.round(video) };
}
