// Audio: microphone → AudioEncoder (Opus) → one media object per packet (datagram), and
// packets → AudioDecoder → Web Audio, scheduled on the same playout clock as the video so
// lips and voice stay together. Payload: 1 byte channel count, then the Opus packet.
import { nowUs } from "./clock.ts";
import { pumpTrack } from "./track-pump.ts";

export interface EncodedAudio {
  payload: Uint8Array;
  captureUs: number;
}

export class AudioPublisher {
  private encoder?: AudioEncoder;
  private reader?: ReadableStreamDefaultReader<AudioData>;
  private channels = 1;
  private sampleRate = 48000;
  private stopped = false;
  enabled = true;
  packetsEncoded = 0;
  bytesEncoded = 0;

  constructor(private readonly onEncoded: (a: EncodedAudio) => void, private readonly onError: (e: Error) => void, private readonly bitrate = 64_000) {}

  async start(track: MediaStreamTrack): Promise<void> {
    await this.stopReading();
    if (typeof MediaStreamTrackProcessor === "undefined") throw new Error("This browser lacks MediaStreamTrackProcessor.");
    const reader = new MediaStreamTrackProcessor<AudioData>({ track }).readable.getReader();
    this.reader = reader;
    void this.pump(reader);
  }

  private pump(reader: ReadableStreamDefaultReader<AudioData>): Promise<void> {
    return pumpTrack(reader, () => !this.stopped && this.reader === reader, (data) => {
      if (this.enabled) this.encode(data);
    }, (err) => this.onError(err));
  }

  private encode(data: AudioData): void {
    if (!this.encoder || this.encoder.state === "closed" || data.numberOfChannels !== this.channels || data.sampleRate !== this.sampleRate) {
      if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
      this.channels = data.numberOfChannels;
      this.sampleRate = data.sampleRate;
      this.encoder = new AudioEncoder({
        output: (chunk) => this.onChunk(chunk),
        error: (e) => this.onError(new Error(`audio encoder: ${e.message}`)),
      });
      this.encoder.configure({ codec: "opus", sampleRate: this.sampleRate, numberOfChannels: this.channels, bitrate: this.bitrate });
    }
    this.encoder.encode(data);
  }

  private onChunk(chunk: EncodedAudioChunk): void {
    const payload = new Uint8Array(1 + chunk.byteLength);
    payload[0] = this.channels;
    chunk.copyTo(payload.subarray(1));
    this.packetsEncoded++;
    this.bytesEncoded += payload.length;
    // The encoder emits a packet as soon as its last samples arrive, so its first sample was
    // captured one packet duration ago. (Mapping the encoder's own timestamps drifts.)
    this.onEncoded({ payload, captureUs: nowUs() - (chunk.duration ?? 20_000) });
  }

  private async stopReading(): Promise<void> {
    const r = this.reader;
    this.reader = undefined;
    if (r) {
      try { await r.cancel(); } catch { /* done */ }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopReading();
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }
}

/**
 * Decodes Opus packets and plays them through an AudioContext. Each packet is placed at its
 * playout time; consecutive packets are kept back to back unless the schedule drifted more
 * than a few ms from the playout clock (then it jumps, which is heard as a tiny gap).
 */
export class AudioReceiver {
  private decoder?: AudioDecoder;
  private channels = 0;
  private nextTime = 0;
  private lastSeq: number | undefined;
  private captureOf = new Map<number, number>();
  private gain: GainNode;
  packetsReceived = 0;
  packetsDecoded = 0;
  packetsLost = 0;
  packetsLate = 0;
  bytesReceived = 0;

  constructor(
    readonly context: AudioContext,
    private readonly playoutAt: (captureLocalUs: number) => number,
    private readonly toLocal: (peerUs: number) => number,
    private readonly onError: (e: Error) => void,
  ) {
    this.gain = context.createGain();
    this.gain.connect(context.destination);
  }

  setVolume(v: number): void {
    this.gain.gain.value = v;
  }

  push(sequence: number, captureUs: number, payload: Uint8Array): void {
    this.packetsReceived++;
    this.bytesReceived += payload.length;
    if (payload.length < 2) return;
    if (this.lastSeq !== undefined) {
      const gap = (sequence - this.lastSeq - 1) >>> 0;
      if (gap > 0 && gap < 0x80000000) this.packetsLost += gap;
    }
    this.lastSeq = sequence;
    const channels = payload[0]!;
    if (!this.decoder || this.decoder.state === "closed" || channels !== this.channels) {
      if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
      this.channels = channels;
      this.decoder = new AudioDecoder({
        output: (d) => this.play(d),
        error: (e) => this.onError(new Error(`audio decoder: ${e.message}`)),
      });
      this.decoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: channels });
    }
    this.captureOf.set(captureUs, this.toLocal(captureUs));
    if (this.captureOf.size > 256) this.captureOf.clear();
    try {
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: captureUs, data: payload.subarray(1) }));
    } catch (err) {
      this.onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private play(data: AudioData): void {
    this.packetsDecoded++;
    try {
      const local = this.captureOf.get(data.timestamp) ?? this.toLocal(data.timestamp);
      this.captureOf.delete(data.timestamp);
      const ctx = this.context;
      if (ctx.state !== "running") return;
      const buffer = ctx.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
      for (let c = 0; c < data.numberOfChannels; c++) {
        data.copyTo(buffer.getChannelData(c), { planeIndex: c, format: "f32-planar" });
      }
      const due = ctx.currentTime + (this.playoutAt(local) - nowUs()) / 1e6;
      const earliest = ctx.currentTime + 0.005;
      let at = this.nextTime;
      if (Math.abs(at - due) > 0.03 || at < earliest) {
        if (due < earliest) this.packetsLate++;
        at = Math.max(due, earliest);
      }
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(this.gain);
      src.start(at);
      this.nextTime = at + buffer.duration;
    } finally {
      data.close();
    }
  }

  reset(): void {
    this.lastSeq = undefined;
  }

  close(): void {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
  }
}
