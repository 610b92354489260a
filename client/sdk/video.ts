// Video: camera frames → WebCodecs VideoEncoder → media objects, and media objects →
// VideoDecoder → a canvas, paced by the shared playout clock. The payload carries a 1-byte
// kind; keyframes also carry the codec string and coded size, so a receiver can start (or
// restart after a codec change) from any keyframe without a separate announcement.
import { nowUs } from "./clock.ts";
import { pumpTrack } from "./track-pump.ts";

const KIND_DELTA = 0;
/** Frames waiting in the decoder beyond which the receiver skips ahead to a keyframe. */
const MAX_DECODE_BACKLOG = 4;
const KIND_KEY = 1;

/** Codec candidates in order of preference; the first the browser can encode at the size wins. */
export const VIDEO_CODECS = ["avc1.640028", "vp8", "vp09.00.31.08", "av01.0.08M.08"] as const;

/** Bitrate per resolution tier at 30 fps, bit/s. */
export function bitrateFor(height: number): number {
  if (height >= 1080) return 4_500_000;
  if (height >= 720) return 2_500_000;
  if (height >= 540) return 1_500_000;
  return 800_000;
}

export interface EncodedVideo {
  payload: Uint8Array;
  keyframe: boolean;
  /** Capture time, wall clock µs. */
  captureUs: number;
}

/** Codecs this browser can decode (announced to the peer, which encodes only those). */
export async function decodableVideoCodecs(): Promise<string[]> {
  const out: string[] = [];
  for (const codec of VIDEO_CODECS) {
    try {
      if ((await VideoDecoder.isConfigSupported({ codec, codedWidth: 1280, codedHeight: 720 })).supported) out.push(codec);
    } catch { /* not this one */ }
  }
  return out;
}

export async function pickVideoCodec(width: number, height: number, bitrate: number, prefer?: string, allowed?: readonly string[]): Promise<VideoEncoderConfig | undefined> {
  let list: string[] = prefer ? [prefer, ...VIDEO_CODECS.filter((c) => c !== prefer)] : [...VIDEO_CODECS];
  if (allowed) list = list.filter((c) => allowed.includes(c));
  for (const codec of list) {
    const config: VideoEncoderConfig = {
      codec, width, height, bitrate, framerate: 30, latencyMode: "realtime",
      hardwareAcceleration: "no-preference",
      ...(codec.startsWith("avc1") ? { avc: { format: "annexb" } } : {}),
    };
    try {
      const r = await VideoEncoder.isConfigSupported(config);
      if (r.supported) return config;
    } catch { /* invalid for this browser: try the next */ }
  }
  return undefined;
}

function keyPayload(codec: string, width: number, height: number, data: Uint8Array): Uint8Array {
  const name = new TextEncoder().encode(codec);
  const out = new Uint8Array(1 + 1 + name.length + 4 + data.length);
  const dv = new DataView(out.buffer);
  out[0] = KIND_KEY;
  out[1] = name.length;
  out.set(name, 2);
  dv.setUint16(2 + name.length, width);
  dv.setUint16(4 + name.length, height);
  out.set(data, 6 + name.length);
  return out;
}

export interface ParsedVideo {
  keyframe: boolean;
  codec?: string;
  width?: number;
  height?: number;
  data: Uint8Array;
}

export function parseVideoPayload(p: Uint8Array): ParsedVideo | undefined {
  if (p.length < 2) return undefined;
  if (p[0] === KIND_DELTA) return { keyframe: false, data: p.subarray(1) };
  if (p[0] !== KIND_KEY) return undefined;
  const n = p[1]!;
  if (p.length < 6 + n) return undefined;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    keyframe: true,
    codec: new TextDecoder().decode(p.subarray(2, 2 + n)),
    width: dv.getUint16(2 + n),
    height: dv.getUint16(4 + n),
    data: p.subarray(6 + n),
  };
}

export interface VideoPublisherEvents {
  onEncoded(v: EncodedVideo): void;
  onConfigured(c: { codec: string; width: number; height: number; bitrate: number }): void;
  onError(err: Error): void;
}

/**
 * Reads frames from the camera track, encodes them and hands out payloads. Drops a frame
 * rather than queueing when the encoder falls behind, so latency never builds up.
 */
export class VideoPublisher {
  private encoder?: VideoEncoder;
  private config?: VideoEncoderConfig;
  private reader?: ReadableStreamDefaultReader<VideoFrame>;
  private captureTimes = new Map<number, number>();
  private encodeStarted = new Map<number, number>();
  /** Smoothed time the encoder takes per frame, ms (CPU adaptation). */
  encodeMs = 0;
  private forceKey = true;
  private lastKeyAt = 0;
  private stopped = false;
  private maxBitrate = Infinity;
  private allowedCodecs: string[] | undefined;
  enabled = true;
  framesEncoded = 0;
  framesDropped = 0;
  keyframesSent = 0;
  bytesEncoded = 0;
  width = 0;
  height = 0;
  codec = "";
  bitrate = 0;

  constructor(private readonly events: VideoPublisherEvents, private readonly opts: { codec?: string; keyframeIntervalMs?: number } = {}) {}

  /** Starts (or switches to) a camera track. */
  async start(track: MediaStreamTrack): Promise<void> {
    await this.stopReading();
    if (typeof MediaStreamTrackProcessor === "undefined") throw new Error("This browser lacks MediaStreamTrackProcessor.");
    const processor = new MediaStreamTrackProcessor<VideoFrame>({ track, maxBufferSize: 2 });
    const reader = processor.readable.getReader();
    this.reader = reader;
    this.forceKey = true;
    void this.pump(reader);
  }

  requestKeyframe(): void {
    this.forceKey = true;
  }

  /** The peer can decode only these: switch codec at the next frame if the current one is not among them. */
  setAllowedCodecs(codecs: string[]): void {
    this.allowedCodecs = codecs;
    if (this.codec && !codecs.includes(this.codec)) {
      this.codec = "";
      this.width = 0; // forces a reconfigure at the next frame
    }
  }

  /** Caps the encoder bitrate (network adaptation); applies at the next frame. */
  setMaxBitrate(bps: number): void {
    this.maxBitrate = bps;
    if (this.encoder && this.config) {
      const target = Math.min(bitrateFor(this.config.height), this.maxBitrate);
      if (Math.abs(target - (this.config.bitrate ?? 0)) > 50_000) {
        this.config = { ...this.config, bitrate: target };
        this.bitrate = target;
        this.encoder.configure(this.config);
      }
    }
  }

  private pump(reader: ReadableStreamDefaultReader<VideoFrame>): Promise<void> {
    return pumpTrack(reader, () => !this.stopped && this.reader === reader, (frame) => this.encode(frame, nowUs()), (err) => this.events.onError(err));
  }

  private async encode(frame: VideoFrame, captureUs: number): Promise<void> {
    if (!this.enabled) return;
    const width = frame.displayWidth & ~1;
    const height = frame.displayHeight & ~1;
    if (!this.encoder || this.encoder.state === "closed" || this.width !== width || this.height !== height) {
      await this.configure(width, height);
    }
    const enc = this.encoder!;
    // One frame in the encoder at most: a queue would only add latency.
    if (enc.encodeQueueSize > 0) {
      this.framesDropped++;
      return;
    }
    const interval = this.opts.keyframeIntervalMs ?? 10_000;
    const keyFrame = this.forceKey || captureUs / 1000 - this.lastKeyAt > interval;
    if (keyFrame) {
      this.forceKey = false;
      this.lastKeyAt = captureUs / 1000;
    }
    this.captureTimes.set(frame.timestamp, captureUs);
    this.encodeStarted.set(frame.timestamp, performance.now());
    enc.encode(frame, { keyFrame });
  }

  private async configure(width: number, height: number): Promise<void> {
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
    const bitrate = Math.min(bitrateFor(height), this.maxBitrate);
    const config = await pickVideoCodec(width, height, bitrate, this.opts.codec ?? (this.codec || undefined), this.allowedCodecs);
    if (!config) throw new Error(`No video codec can encode ${width}×${height} in this browser.`);
    this.encoder = new VideoEncoder({
      output: (chunk) => this.onChunk(chunk),
      error: (e) => this.events.onError(new Error(`video encoder: ${e.message}`)),
    });
    this.encoder.configure(config);
    this.config = config;
    this.width = width;
    this.height = height;
    this.codec = config.codec;
    this.bitrate = bitrate;
    this.forceKey = true;
    this.events.onConfigured({ codec: config.codec, width, height, bitrate });
  }

  private onChunk(chunk: EncodedVideoChunk): void {
    const started = this.encodeStarted.get(chunk.timestamp);
    this.encodeStarted.delete(chunk.timestamp);
    if (this.encodeStarted.size > 64) this.encodeStarted.clear();
    if (started !== undefined) this.encodeMs = this.encodeMs * 0.9 + (performance.now() - started) * 0.1;
    const captureUs = this.captureTimes.get(chunk.timestamp) ?? nowUs();
    this.captureTimes.delete(chunk.timestamp);
    if (this.captureTimes.size > 64) this.captureTimes.clear();
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    const keyframe = chunk.type === "key";
    let payload: Uint8Array;
    if (keyframe) {
      payload = keyPayload(this.codec, this.width, this.height, data);
      this.keyframesSent++;
    } else {
      payload = new Uint8Array(1 + data.length);
      payload[0] = KIND_DELTA;
      payload.set(data, 1);
    }
    this.framesEncoded++;
    this.bytesEncoded += payload.length;
    this.events.onEncoded({ payload, keyframe, captureUs });
  }

  private async stopReading(): Promise<void> {
    const r = this.reader;
    this.reader = undefined;
    if (r) {
      try { await r.cancel(); } catch { /* already done */ }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopReading();
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }
}

export interface VideoReceiverEvents {
  /** The decoder cannot go on without a keyframe (loss, decode error, start). */
  needKeyframe(): void;
  /** A frame was drawn; latency is capture → render on the local clock, ms. */
  onRendered(info: { latencyMs: number; width: number; height: number }): void;
  onError(err: Error): void;
}

/**
 * Decodes the peer's video and draws each frame at its playout time (capture time on the
 * local clock + the jitter-buffer delay), dropping frames that a newer one already overtook.
 */
export class VideoReceiver {
  private decoder?: VideoDecoder;
  private codec = "";
  private codedWidth = 0;
  private codedHeight = 0;
  private waitingForKey = true;
  private lastSeq: number | undefined;
  private pendingCapture = new Map<number, number>();
  private lastDrawnCaptureUs = 0;
  private ctx: CanvasRenderingContext2D | null;
  framesReceived = 0;
  framesDecoded = 0;
  framesRendered = 0;
  framesLost = 0;
  /** Frames skipped because the decoder fell behind. */
  framesSkipped = 0;
  decodeErrors = 0;
  bytesReceived = 0;
  width = 0;
  height = 0;

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly events: VideoReceiverEvents,
    /** Local wall-clock µs at which a frame captured at `captureUs` (local clock) plays. */
    private readonly playoutAt: (captureLocalUs: number) => number,
    private readonly toLocal: (peerUs: number) => number,
    private readonly onTransit: (transitUs: number) => void,
  ) {
    this.ctx = canvas.getContext("2d", { alpha: false, desynchronized: true });
  }

  /** One reassembled media object of the video track. */
  push(sequence: number, captureUs: number, payload: Uint8Array): void {
    this.framesReceived++;
    this.bytesReceived += payload.length;
    const p = parseVideoPayload(payload);
    if (!p) return;
    if (this.lastSeq !== undefined) {
      const gap = (sequence - this.lastSeq - 1) >>> 0;
      if (gap > 0 && gap < 0x80000000) {
        this.framesLost += gap;
        // A missing delta breaks the chain until the next keyframe.
        if (!p.keyframe) this.waitingForKey = true;
      }
    }
    this.lastSeq = sequence;
    if (p.keyframe) {
      if (p.codec !== this.codec || p.width !== this.codedWidth || p.height !== this.codedHeight || !this.decoder || this.decoder.state === "closed") {
        this.configure(p.codec!, p.width!, p.height!);
      }
      this.waitingForKey = false;
    } else if (this.waitingForKey || !this.decoder) {
      this.events.needKeyframe();
      return;
    } else if (this.decoder.decodeQueueSize > MAX_DECODE_BACKLOG) {
      // The decoder fell behind (busy CPU): rather than play ever later, skip to a keyframe.
      this.framesSkipped++;
      this.waitingForKey = true;
      this.events.needKeyframe();
      return;
    }
    const localCapture = this.toLocal(captureUs);
    this.onTransit(nowUs() - localCapture);
    this.pendingCapture.set(captureUs, localCapture);
    try {
      this.decoder!.decode(new EncodedVideoChunk({ type: p.keyframe ? "key" : "delta", timestamp: captureUs, data: p.data }));
    } catch (err) {
      this.decodeFailed(err);
    }
  }

  private configure(codec: string, width: number, height: number): void {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = new VideoDecoder({
      output: (frame) => this.onFrame(frame),
      error: (e) => this.decodeFailed(e),
    });
    this.decoder.configure({ codec, codedWidth: width, codedHeight: height, optimizeForLatency: true, hardwareAcceleration: "no-preference" });
    this.codec = codec;
    this.codedWidth = width;
    this.codedHeight = height;
  }

  private decodeFailed(err: unknown): void {
    this.decodeErrors++;
    this.waitingForKey = true;
    // A closed decoder is rebuilt at the next keyframe.
    this.codec = "";
    this.events.needKeyframe();
    if (this.decodeErrors <= 3) this.events.onError(new Error(`video decode: ${err instanceof Error ? err.message : String(err)}`));
  }

  private onFrame(frame: VideoFrame): void {
    this.framesDecoded++;
    const localCapture = this.pendingCapture.get(frame.timestamp) ?? this.toLocal(frame.timestamp);
    this.pendingCapture.delete(frame.timestamp);
    if (this.pendingCapture.size > 64) this.pendingCapture.clear();
    const delayMs = (this.playoutAt(localCapture) - nowUs()) / 1000;
    if (delayMs <= 1) this.draw(frame, localCapture);
    else setTimeout(() => this.draw(frame, localCapture), delayMs);
  }

  private draw(frame: VideoFrame, localCapture: number): void {
    try {
      if (localCapture < this.lastDrawnCaptureUs) return; // overtaken by a newer frame
      this.lastDrawnCaptureUs = localCapture;
      const w = frame.displayWidth;
      const h = frame.displayHeight;
      // Draw at most at the size the canvas is shown (device pixels): scaling a 1080p frame
      // into a smaller backing store costs less than compositing the full one.
      const shown = this.canvas.clientWidth * (globalThis.devicePixelRatio || 1);
      const scale = shown > 0 && shown < w ? shown / w : 1;
      const cw = Math.round(w * scale);
      const ch = Math.round(h * scale);
      if (this.canvas.width !== cw || this.canvas.height !== ch) {
        this.canvas.width = cw;
        this.canvas.height = ch;
      }
      this.ctx?.drawImage(frame, 0, 0, cw, ch);
      this.width = w;
      this.height = h;
      this.framesRendered++;
      this.events.onRendered({ latencyMs: (nowUs() - localCapture) / 1000, width: w, height: h });
    } finally {
      frame.close();
    }
  }

  get decodeQueueSize(): number {
    return this.decoder && this.decoder.state === "configured" ? this.decoder.decodeQueueSize : 0;
  }

  /** The publisher left (or rejoined): its sequence starts again and a keyframe is needed. */
  reset(): void {
    this.lastSeq = undefined;
    this.waitingForKey = true;
  }

  close(): void {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
  }
}
