// Video: camera frames → WebCodecs VideoEncoder → media objects, and media objects →
// VideoDecoder → a canvas, paced by the shared playout clock. The payload carries a 1-byte
// kind; keyframes also carry the codec string and coded size, so a receiver can start (or
// restart after a codec change) from any keyframe without a separate announcement.
import { nowUs } from "./clock.ts";
import { pumpTrack } from "./track-pump.ts";
import { StepSelector, stepLadder } from "../../src/quality/video-steps.ts";

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
  /** Simulcast layer (0 = lowest, or the only one). */
  layer: number;
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

export async function pickVideoCodec(width: number, height: number, bitrate: number, prefer?: string, allowed?: readonly string[], framerate = 30): Promise<VideoEncoderConfig | undefined> {
  let list: string[] = prefer ? [prefer, ...VIDEO_CODECS.filter((c) => c !== prefer)] : [...VIDEO_CODECS];
  if (allowed) list = list.filter((c) => allowed.includes(c));
  for (const codec of list) {
    const config: VideoEncoderConfig = {
      codec, width, height, bitrate, framerate, latencyMode: "realtime",
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
  onConfigured(c: { layer: number; codec: string; width: number; height: number; bitrate: number; fps: number }): void;
  onError(err: Error): void;
}

/** What one layer is asked for: at most this height, at this bitrate (kbit/s). */
export interface LayerTarget {
  height: number;
  bitrateKbps: number;
}

/**
 * One WebCodecs encoder of the camera: the only stream, or one simulcast layer. Follows its
 * bitrate with resolution and frame-rate steps (src/quality/video-steps.ts); a step change
 * reconfigures the encoder, which starts again with a keyframe. Fewer frames per second are
 * had by leaving camera frames out, fewer pixels by the encoder's own scaling.
 */
class LayerEncoder {
  private encoder?: VideoEncoder;
  private config?: VideoEncoderConfig;
  private captureTimes = new Map<number, number>();
  private encodeStarted = new Map<number, number>();
  private readonly steps = new StepSelector([{ height: 720, fps: 30 }]);
  private ladderKey = "";
  private lastEncodedUs = -Infinity;
  private usage = { at: 0, bytes: 0 };
  /** kbit/s the encoder produced lately at its current step (undefined right after a change). */
  usedKbps: number | undefined;
  private framesSinceConfigure = 0;
  private configuring?: Promise<void>;
  forceKey = true;
  private lastKeyAt = 0;
  encodeMs = 0;
  framesEncoded = 0;
  framesDropped = 0;
  keyframesSent = 0;
  bytesEncoded = 0;
  width = 0;
  height = 0;
  fps = 0;
  codec = "";
  bitrate = 0;
  closed = false;

  constructor(
    public layer: number,
    public target: LayerTarget,
    private readonly owner: { events: VideoPublisherEvents; opts: { codec?: string; keyframeIntervalMs?: number }; allowedCodecs?: string[]; lastCodec: string },
  ) {}

  /** The bitrate or size cap changed: a new step may follow at the next frame. */
  setTarget(t: LayerTarget): void {
    this.target = t;
    this.applyBitrate();
  }

  async encode(frame: VideoFrame, captureUs: number, cameraFps: number): Promise<void> {
    if (this.closed) return;
    const camW = frame.displayWidth & ~1;
    const camH = frame.displayHeight & ~1;
    const key = `${camH}:${cameraFps}:${this.target.height}`;
    if (key !== this.ladderKey) {
      this.ladderKey = key;
      this.steps.setLadder(stepLadder(camH, cameraFps, this.target.height), this.target.bitrateKbps);
    }
    // What the encoder used of its bitrate over the last 1.5 s at this step: a still scene
    // leaves most of it unused, and then the picture needs no fewer pixels.
    const nowMs = performance.now();
    if (this.usage.at === 0) this.usage.at = nowMs;
    else if (nowMs - this.usage.at >= 1500) {
      this.usedKbps = (this.usage.bytes * 8) / (nowMs - this.usage.at);
      this.usage = { at: nowMs, bytes: 0 };
    }
    // A new encoder starts at its largest step and moves once it knows what the scene needs.
    if (this.usedKbps !== undefined) this.steps.update(this.target.bitrateKbps, nowMs, this.usedKbps);
    const step = this.steps.step;
    // Leave camera frames out down to the step's rate (a little slack for capture jitter).
    if (step.fps < cameraFps && captureUs - this.lastEncodedUs < (1e6 / step.fps) * 0.85) return;
    const height = Math.min(camH, step.height) & ~1;
    const width = Math.min(camW, Math.round((height * camW) / camH / 2) * 2);
    if (!this.encoder || this.encoder.state === "closed" || this.width !== width || this.height !== height || this.fps !== step.fps || !this.codec) {
      this.configuring ??= this.configure(width, height, step.fps).finally(() => { this.configuring = undefined; });
      await this.configuring;
      if (this.closed) return;
    }
    const enc = this.encoder!;
    // One frame in the encoder at most: a queue would only add latency.
    if (enc.state !== "configured" || enc.encodeQueueSize > 0) {
      this.framesDropped++;
      return;
    }
    const interval = this.owner.opts.keyframeIntervalMs ?? 10_000;
    const keyFrame = this.forceKey || captureUs / 1000 - this.lastKeyAt > interval;
    if (keyFrame) {
      this.forceKey = false;
      this.lastKeyAt = captureUs / 1000;
    }
    this.lastEncodedUs = captureUs;
    this.captureTimes.set(frame.timestamp, captureUs);
    this.encodeStarted.set(frame.timestamp, performance.now());
    enc.encode(frame, { keyFrame });
  }

  /** Encoder bitrate at `height`: the layer's target, never above what the size needs. */
  private bitrateAt(height: number): number {
    return Math.min(bitrateFor(height), this.target.bitrateKbps * 1000);
  }

  private applyBitrate(): void {
    if (!this.encoder || !this.config || this.encoder.state !== "configured") return;
    const target = Math.max(100_000, this.bitrateAt(this.height));
    if (Math.abs(target - (this.config.bitrate ?? 0)) > Math.max(50_000, target * 0.08)) {
      this.config = { ...this.config, bitrate: target };
      this.bitrate = target;
      this.encoder.configure(this.config);
    }
  }

  private async configure(width: number, height: number, fps: number): Promise<void> {
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
    const bitrate = Math.max(100_000, this.bitrateAt(height));
    const o = this.owner;
    const config = await pickVideoCodec(width, height, bitrate, o.opts.codec ?? (this.codec || o.lastCodec || undefined), o.allowedCodecs, fps);
    if (!config) throw new Error(`No video codec can encode ${width}×${height} in this browser.`);
    if (this.closed) return;
    this.encoder = new VideoEncoder({
      output: (chunk) => this.onChunk(chunk),
      error: (e) => o.events.onError(new Error(`video encoder: ${e.message}`)),
    });
    this.encoder.configure(config);
    this.config = config;
    this.width = width;
    this.height = height;
    this.fps = fps;
    this.codec = o.lastCodec = config.codec;
    this.bitrate = bitrate;
    this.forceKey = true;
    this.usage = { at: 0, bytes: 0 };
    this.usedKbps = undefined;
    this.framesSinceConfigure = 0;
    o.events.onConfigured({ layer: this.layer, codec: config.codec, width, height, bitrate, fps });
  }

  /** Forces a reconfigure at the next frame (codec no longer allowed). */
  invalidate(): void {
    this.codec = "";
  }

  private onChunk(chunk: EncodedVideoChunk): void {
    if (this.closed) return;
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
    // The keyframe that starts a new configuration says nothing about the scene; later ones (asked
    // for by receivers that lost frames) are part of what this step costs.
    if (this.framesSinceConfigure++ > 0) this.usage.bytes += payload.length;
    this.owner.events.onEncoded({ payload, keyframe, captureUs, layer: this.layer });
  }

  close(): void {
    this.closed = true;
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }
}

/**
 * Reads frames from the camera track and encodes each into one stream, or into several
 * simulcast layers (lowest first, each its own encoder; `setLayers`). Drops a frame rather
 * than queueing when an encoder falls behind, so latency never builds up.
 */
export class VideoPublisher {
  private reader?: ReadableStreamDefaultReader<VideoFrame>;
  private stopped = false;
  private cameraFps = 30;
  private readonly shared: { events: VideoPublisherEvents; opts: { codec?: string; keyframeIntervalMs?: number }; allowedCodecs?: string[]; lastCodec: string };
  /** The encoders, index = layer. */
  layers: LayerEncoder[];
  /** Counters of layers that went away, so the totals never go back. */
  private gone = { bytes: 0, keyframes: 0, dropped: 0 };
  enabled = true;

  constructor(private readonly events: VideoPublisherEvents, private readonly opts: { codec?: string; keyframeIntervalMs?: number } = {}) {
    this.shared = { events, opts, lastCodec: "" };
    this.layers = [new LayerEncoder(0, { height: 4320, bitrateKbps: bitrateFor(720) / 1000 }, this.shared)];
  }

  /** Starts (or switches to) a camera track. */
  async start(track: MediaStreamTrack): Promise<void> {
    await this.stopReading();
    if (typeof MediaStreamTrackProcessor === "undefined") throw new Error("This browser lacks MediaStreamTrackProcessor.");
    this.cameraFps = track.getSettings().frameRate ?? 30;
    const processor = new MediaStreamTrackProcessor<VideoFrame>({ track, maxBufferSize: 2 });
    const reader = processor.readable.getReader();
    this.reader = reader;
    this.requestKeyframe();
    void this.pump(reader);
  }

  /** A keyframe on one layer (or all) at its next frame. */
  requestKeyframe(layer?: number): void {
    for (const l of this.layers) if (layer === undefined || l.layer === layer) l.forceKey = true;
  }

  /** The peer can decode only these: switch codec at the next frame if the current one is not among them. */
  setAllowedCodecs(codecs: string[]): void {
    this.shared.allowedCodecs = codecs;
    for (const l of this.layers) if (l.codec && !codecs.includes(l.codec)) l.invalidate();
    if (!codecs.includes(this.shared.lastCodec)) this.shared.lastCodec = "";
  }

  /**
   * The layers to send, lowest first (src/quality/layers.ts `planSimulcast`). One entry: a
   * single stream (layer 0). A layer whose size cap changes restarts at a keyframe; when a
   * layer goes away the others send a keyframe, so a node can move its subscribers at once.
   */
  setLayers(targets: LayerTarget[]): void {
    if (!targets.length) return;
    const removed = this.layers.length > targets.length;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      const l = this.layers[i];
      if (l) l.setTarget(t);
      else this.layers.push(new LayerEncoder(i, t, this.shared));
    }
    for (const l of this.layers.splice(targets.length)) {
      l.close();
      this.gone.bytes += l.bytesEncoded;
      this.gone.keyframes += l.keyframesSent;
      this.gone.dropped += l.framesDropped;
    }
    if (removed) this.requestKeyframe();
  }

  /** Caps the encoder bitrate of a single stream (network adaptation); applies at the next frame. */
  setMaxBitrate(bps: number): void {
    this.setLayers([{ height: 4320, bitrateKbps: bps / 1000 }]);
  }

  private get top(): LayerEncoder {
    return this.layers[this.layers.length - 1]!;
  }

  get width(): number { return this.top.width; }
  get height(): number { return this.top.height; }
  get codec(): string { return this.top.codec; }
  /** The top layer's encoder bitrate, bit/s. */
  get bitrate(): number { return this.top.bitrate; }
  get fps(): number { return this.top.fps; }
  /** Frames the top layer encoded (its frame rate is what the best-served peer sees). */
  get framesEncoded(): number { return this.top.framesEncoded; }
  get framesDropped(): number { return this.layers.reduce((s, l) => s + l.framesDropped, this.gone.dropped); }
  get keyframesSent(): number { return this.layers.reduce((s, l) => s + l.keyframesSent, this.gone.keyframes); }
  /** Bytes of every layer: what goes up the uplink. */
  get bytesEncoded(): number { return this.layers.reduce((s, l) => s + l.bytesEncoded, this.gone.bytes); }
  /** Encode time per camera frame over all layers, ms (CPU adaptation). */
  get encodeMs(): number { return this.layers.reduce((s, l) => s + l.encodeMs, 0); }

  private pump(reader: ReadableStreamDefaultReader<VideoFrame>): Promise<void> {
    return pumpTrack(reader, () => !this.stopped && this.reader === reader, (frame) => this.encode(frame, nowUs()), (err) => this.events.onError(err));
  }

  private async encode(frame: VideoFrame, captureUs: number): Promise<void> {
    if (!this.enabled) return;
    // Every layer encodes the same camera frame; the frame is closed after the last of them.
    for (const l of [...this.layers]) await l.encode(frame, captureUs, this.cameraFps);
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
    for (const l of this.layers) l.close();
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
  /** Simulcast layer being decoded, the layer of the frame last drawn, and how many times the node switched. */
  layer = 0;
  shownLayer = 0;
  layerSwitches = 0;
  private pendingLayer = new Map<number, number>();

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

  /** One reassembled media object of the video track, of simulcast layer `layer`. */
  push(sequence: number, captureUs: number, payload: Uint8Array, layer = 0): void {
    this.framesReceived++;
    this.bytesReceived += payload.length;
    const p = parseVideoPayload(payload);
    if (!p) return;
    if (layer !== this.layer) {
      // The node moved us to another layer: its own sequence space, entered at a keyframe
      // (the decoder is reconfigured below when the size differs). Its keyframe may have been
      // lost on the way: ask again rather than wait silently for the next one.
      if (!p.keyframe) {
        this.events.needKeyframe();
        return;
      }
      this.layer = layer;
      this.layerSwitches++;
      this.lastSeq = undefined;
    }
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
    this.pendingLayer.set(captureUs, this.layer);
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
    const layer = this.pendingLayer.get(frame.timestamp) ?? this.layer;
    this.pendingLayer.delete(frame.timestamp);
    if (this.pendingLayer.size > 64) this.pendingLayer.clear();
    const delayMs = (this.playoutAt(localCapture) - nowUs()) / 1000;
    if (delayMs <= 1) this.draw(frame, localCapture, layer);
    else setTimeout(() => this.draw(frame, localCapture, layer), delayMs);
  }

  private draw(frame: VideoFrame, localCapture: number, layer: number): void {
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
      this.shownLayer = layer;
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
