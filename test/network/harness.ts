// A consultation between two headless terminals (TerminalSession on Deno's WebTransport) through
// a real media node process, each terminal behind its own userspace impairment relay, with
// synthetic media: audio frames every 20 ms and video frames whose sizes follow an encoder
// model (keyframes ×5, two temporal layers: odd frames discardable) at the rung that
// `chooseEncoding` gives for the node's target — or a fixed 720p when adaptation is off.
// The adaptive sender behaves like a WebRTC one: it paces everything at the node's target,
// skips encoding while the pacer holds more than 60 ms (pushback), drops video that waited
// 250 ms for the pacer, goes up a rung only after 2.5 s, and asks QUIC for its "low-latency"
// congestion control. (The temporal layers are flags only: `layer` means simulcast now.)
// The receiver side runs the decode model (which frames a decoder could use) and counts
// freezes, audio, delivered resolution and capture-to-delivery latency (one process, one clock).
// Used by test/network/*.deno.test.ts and bench/network.ts. Runs under Deno.
import { ImpairmentRelay, type RelayProfile } from "../support/impairment-relay.ts";
import { NodeHarness } from "../media/support.ts";
import { TerminalSession, type ConnectOptions } from "../../src/terminal/session.ts";
import { Flag, Track } from "../../src/protocol/media.ts";
import { chooseEncoding, LADDER, type Encoding } from "../../src/quality/encoding.ts";
import { DecodeModel, FreezeMeter } from "../../src/quality/decode-model.ts";

export interface CallOptions {
  /** Follow the node's target and the RTT (true), or send a fixed 720p with loopback timing (false). */
  adaptive: boolean;
  durationMs: number;
  /** Profile changes during the call: at ms after start. */
  changes?: { atMs: number; profile: RelayProfile }[];
  seed?: number;
  /**
   * Bitrate the fixed (non-adaptive) sender uses (default 2500) and the adaptive one starts from
   * (default 300, WebRTC's start rate: at 600 kbit/s and 2.5× pacing the start alone buried a
   * 300 kbit/s uplink and the first reports with it), kbit/s.
   */
  startKbps?: number;
  /** Called every 250 ms with the sender's state (timeline for assertions). */
  onSample?: (s: Sample) => void;
  /** Per-frame events for diagnosis: what each sender sent and each receiver made of it. */
  trace?: (e: TraceEvent) => void;
}

export interface TraceEvent {
  /** ms since the sender (kind "sent") or the receiver (the others) started, one clock. */
  atMs: number;
  /** The publisher's slot. */
  from: number;
  kind: "sent" | "decoded" | "undecodable" | "skip" | "keyframe-request";
  sequence?: number;
  keyframe?: boolean;
  discardable?: boolean;
  bytes?: number;
  /** Capture to delivery, ms. */
  latencyMs?: number;
}

export interface Sample {
  atMs: number;
  targetKbps?: number;
  encoding: string;
  reorderMs: number;
  /** The node's latest report on how the other side receives A. */
  send?: { kbps: number; loss: number; delayMs: number; estimateKbps: number };
}

export interface DirectionResult {
  resolution: string;
  /** Decoded video frames per second over the call. */
  fps: number;
  freezePct: number;
  maxFreezeMs: number;
  freezes: number;
  audioDecodedPct: number;
  p95LatencyMs: number;
  p50LatencyMs: number;
  videoFramesSent: number;
  videoDecoded: number;
  keyframeRequests: number;
  skipped: number;
}

export interface CallResult {
  /** Media from A (behind the profile) to B. */
  ab: DirectionResult;
  ba: DirectionResult;
  timeline: Sample[];
  relayStats: ReturnType<ImpairmentRelay["stats"]>[];
  /** Both terminals' session counters at the end (A, B). */
  counters: TerminalSession["counters"][];
  /** A sent redundant audio at some point (it turns on when the node reports loss). */
  redundantSeen: boolean;
}

/** Pacer backlog above which the adaptive synthetic encoder skips a frame, ms. */
const PUSHBACK_MS = 60;
/** Time the target must allow a better rung before the adaptive encoder takes it, ms. */
const UPGRADE_AFTER_MS = 2500;
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Synthetic camera + encoder for one terminal. */
class SyntheticSender {
  encoding: Encoding;
  videoSent = 0;
  audioSent = 0;
  private frameNo = 0;
  /** Chain index (like VP8's TL0PICIDX): +1 per frame others depend on; carried in the payload. */
  private chain = 0;
  private keyframePending = true;
  private lastKeyframe = -Infinity;
  private timers: ReturnType<typeof setInterval>[] = [];
  private videoTimer?: ReturnType<typeof setTimeout>;
  private stopped = false;
  private rand: () => number;
  private readonly t0 = nowMs();

  constructor(private readonly s: TerminalSession, private readonly o: CallOptions, seed: number) {
    this.encoding = o.adaptive ? chooseEncoding(o.startKbps ?? 300, { maxHeight: 720 }) : { ...LADDER[1]!, bitrateKbps: o.startKbps ?? 2500 };
    let x = seed >>> 0 || 1;
    this.rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 4294967296);
    s.on("keyframe-request", ({ track }) => { if (track === Track.video) this.keyframePending = true; });
    this.applyPace();
  }

  start(): void {
    this.timers.push(setInterval(() => this.audio(), 20));
    if (this.o.adaptive) this.timers.push(setInterval(() => this.adapt(), 250));
    const tick = () => {
      if (this.stopped) return;
      this.video();
      this.videoTimer = setTimeout(tick, 1000 / this.encoding.fps);
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.videoTimer);
  }

  private applyPace(): void {
    if (!this.o.adaptive) return;
    // Pace at the node's target, the whole output (audio, keyframes, retransmissions) included:
    // bursts above the bottleneck's rate queue there, the RTT grows, and QUIC's window then holds
    // the media in its own buffer for hundreds of ms (measured: 0.5–1.4 s at 2.5× the encoder's
    // rate, the earlier factor; 1.1× the target still overshot). Before the first target: 1.5×
    // the encoder's rate.
    const t = this.s.targetKbps;
    const kbps = t !== undefined ? t : (this.encoding.bitrateKbps + 64) * 1.5;
    this.s.setPaceRate(Math.max(12_000, (kbps * 1000) / 8));
  }

  private upSince?: number;

  private adapt(): void {
    const target = this.s.targetKbps;
    if (target === undefined) return;
    let next = chooseEncoding(target, { maxHeight: 720 });
    const rank = (e: Encoding) => LADDER.findIndex((r) => r.name === e.name);
    // Down a rung at once, up only after the target has allowed it for a while (as WebRTC's
    // resolution adaptation): a probe above the path's rate then costs no keyframe at a bigger
    // resolution, which on a lossy bottleneck is what breaks the picture.
    if (rank(next) < rank(this.encoding)) {
      this.upSince ??= performance.now();
      if (performance.now() - this.upSince < UPGRADE_AFTER_MS) next = { ...this.encoding, bitrateKbps: next.bitrateKbps };
      else this.upSince = undefined;
    } else this.upSince = undefined;
    if (next.name !== this.encoding.name) this.keyframePending = true; // a new resolution starts with a keyframe
    this.encoding = next;
    this.applyPace();
  }

  private audio(): void {
    if (this.s.closed) return;
    const payload = new Uint8Array(80);
    payload[0] = 0xa0;
    this.s.sendFrame(Track.audio, payload);
    this.audioSent++;
  }

  pushedBack = 0;

  private video(): void {
    if (this.s.closed) return;
    const e = this.encoding;
    const now = performance.now();
    // Encoder pushback (as WebRTC's): while the pacer holds more than PUSHBACK_MS of media, the
    // frame is not encoded; sent, it would only arrive late.
    if (this.o.adaptive && (this.s.queuedBytes * 1000) / this.s.paceBytesPerSec > PUSHBACK_MS) {
      this.pushedBack++;
      return;
    }
    // Keyframes on request, at most every 300 ms (the encoder's own rate limit), and every 10 s.
    const key = (this.keyframePending && now - this.lastKeyframe > 300) || now - this.lastKeyframe > 10_000;
    if (key) {
      this.keyframePending = false;
      this.lastKeyframe = now;
      this.frameNo = 0;
    }
    const mean = (e.bitrateKbps * 1000) / 8 / e.fps;
    const discardable = !key && this.frameNo % 2 === 1;
    if (!discardable) this.chain = (this.chain + 1) & 0xffff;
    const scale = key ? 5 : discardable ? 0.7 : 1.15;
    const size = Math.max(60, Math.round(mean * scale * (0.85 + 0.3 * this.rand())));
    const payload = new Uint8Array(size);
    const dv = new DataView(payload.buffer);
    dv.setUint16(0, e.width);
    dv.setUint16(2, e.height);
    dv.setUint8(4, e.fps);
    dv.setUint16(5, this.chain);
    const sequence = this.s.sendFrame(Track.video, payload, { keyframe: key, discardable, reliable: false });
    this.o.trace?.({ atMs: nowMs() - this.t0, from: this.s.self.slot, kind: "sent", sequence, keyframe: key, discardable, bytes: size });
    this.frameNo++;
    this.videoSent++;
  }
}

/** What one terminal measures of the other's media. */
class ReceiverProbe {
  readonly model = new DecodeModel();
  readonly started = nowMs();
  readonly freeze = new FreezeMeter(1000 / 30, this.started);
  readonly latencies: number[] = [];
  readonly heights = new Map<number, number>();
  private audioSeqs = new Set<number>();
  private lastKeyReq = -Infinity;
  keyframeRequests = 0;
  skipped = 0;

  constructor(private readonly s: TerminalSession, private readonly from: number, trace?: (e: TraceEvent) => void) {
    s.on("skip", (k) => {
      if (k.source !== from || k.track !== Track.video) return;
      for (const q of k.sequences) this.model.skipped(q, k.discardable);
      for (const q of k.sequences) trace?.({ atMs: nowMs() - this.started, from, kind: "skip", sequence: q, discardable: k.discardable });
      this.skipped += k.sequences.length;
    });
    s.on("frame", ({ header, payload }) => {
      if (header.source !== from) return;
      if (header.track === Track.audio) {
        this.audioSeqs.add(header.sequence);
        return;
      }
      if (header.track !== Track.video) return;
      const chain = payload.length >= 7 ? new DataView(payload.buffer, payload.byteOffset).getUint16(5) : undefined;
      const verdict = this.model.frame(header.sequence, (header.flags & Flag.keyframe) !== 0, (header.flags & Flag.discardable) !== 0, chain);
      const now = nowMs();
      trace?.({
        atMs: now - this.started, from, kind: verdict, sequence: header.sequence, keyframe: (header.flags & Flag.keyframe) !== 0,
        discardable: (header.flags & Flag.discardable) !== 0, bytes: payload.length, latencyMs: now - header.timestamp / 1000,
      });
      if (verdict === "decoded") {
        this.freeze.render(now);
        this.latencies.push(now - header.timestamp / 1000);
        const h = payload.length >= 4 ? new DataView(payload.buffer, payload.byteOffset).getUint16(2) : 0;
        this.heights.set(h, (this.heights.get(h) ?? 0) + 1);
      } else if (now - this.lastKeyReq > 300) {
        // What a decoder does when it cannot go on: ask for a keyframe (rate-limited).
        this.lastKeyReq = now;
        this.keyframeRequests++;
        trace?.({ atMs: now - this.started, from, kind: "keyframe-request" });
        s.requestKeyframe(Track.video, from);
      }
    });
  }

  result(sender: SyntheticSender): DirectionResult {
    const end = nowMs();
    this.freeze.finish(end);
    const dur = end - this.started;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    // No frame at all: the latency is the whole call (never a number that looks good).
    const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : dur);
    let best = 0, bestN = -1;
    for (const [h, n] of this.heights) if (n > bestN) { best = h; bestN = n; }
    return {
      resolution: best ? `${best}p` : "none",
      fps: Math.round((this.model.decoded / (dur / 1000)) * 10) / 10,
      freezePct: Math.round(this.freeze.freezePct(dur) * 10) / 10,
      maxFreezeMs: Math.round(Math.min(dur, this.freeze.maxFreezeMs)),
      freezes: this.freeze.freezes,
      audioDecodedPct: Math.round((1000 * this.audioSeqs.size) / Math.max(1, sender.audioSent)) / 10,
      p95LatencyMs: Math.round(pct(0.95)),
      p50LatencyMs: Math.round(pct(0.5)),
      videoFramesSent: sender.videoSent,
      videoDecoded: this.model.decoded,
      keyframeRequests: this.keyframeRequests,
      skipped: this.skipped,
    };
  }
}

export class NetworkLab {
  private constructor(readonly h: NodeHarness) {}

  static async start(): Promise<NetworkLab> {
    return new NetworkLab(await NodeHarness.start({ MEDIA_PING_INTERVAL_MS: "1000" }));
  }

  async stop(): Promise<void> {
    await this.h.stop();
  }

  /** One call of `durationMs` with both terminals behind `profile`. */
  async call(profile: RelayProfile, o: CallOptions): Promise<CallResult> {
    const seed = o.seed ?? 7;
    const relays = [
      await ImpairmentRelay.start({ target: { port: this.h.node.port }, profile, seed }),
      await ImpairmentRelay.start({ target: { port: this.h.node.port }, profile, seed: seed + 101 }),
    ];
    const g = await this.h.group();
    const connectOpts = (relay: ImpairmentRelay): Partial<ConnectOptions> => ({
      url: `https://127.0.0.1:${relay.port}/v1/session`,
      timeoutMs: 15_000,
      // Adaptive: a frame re-sent later than the receiver waits (its latency budget) is wasted
      // bytes on the bottleneck, so the sender keeps them for 400 ms instead of a second; and
      // video that waited 250 ms for the pacer is dropped there rather than sent late.
      ...(o.adaptive ? { congestionControl: "low-latency" as const, retransmitMs: 400, maxVideoQueueMs: 250 } : { reorderMs: 150, nackDelayMs: 25, audioRedundancy: "off" as const, fec: "off" as const }),
    });
    let a: TerminalSession | undefined, b: TerminalSession | undefined;
    const senders: SyntheticSender[] = [];
    const changeTimers: ReturnType<typeof setTimeout>[] = [];
    try {
      a = await this.h.connect(await this.h.token(g, 0), connectOpts(relays[0]!));
      b = await this.h.connect(await this.h.token(g, 1), connectOpts(relays[1]!));
      const timeline: Sample[] = [];
      const sa = new SyntheticSender(a, o, seed);
      const sb = new SyntheticSender(b, o, seed + 1);
      senders.push(sa, sb);
      const atB = new ReceiverProbe(b, a.self.slot, o.trace);
      const atA = new ReceiverProbe(a, b.self.slot, o.trace);
      const t0 = performance.now();
      sa.start();
      sb.start();
      for (const c of o.changes ?? []) {
        changeTimers.push(setTimeout(() => { for (const r of relays) r.setProfile(c.profile); }, c.atMs));
      }
      let redundantSeen = false;
      const sampler = setInterval(() => {
        redundantSeen ||= a!.audioRedundant;
        const s: Sample = { atMs: Math.round(performance.now() - t0), targetKbps: a!.targetKbps, encoding: sa.encoding.name, reorderMs: b!.reorderMs };
        const q = a!.quality.send.get(b!.self.slot);
        if (q) s.send = { kbps: q.kbps, loss: q.loss, delayMs: q.delayMs, estimateKbps: q.estimateKbps };
        timeline.push(s);
        o.onSample?.(s);
      }, 250);
      await sleep(o.durationMs);
      clearInterval(sampler);
      sa.stop();
      sb.stop();
      const res: CallResult = { ab: atB.result(sa), ba: atA.result(sb), timeline, relayStats: relays.map((r) => r.stats()), counters: [{ ...a.counters }, { ...b.counters }], redundantSeen };
      return res;
    } finally {
      for (const t of changeTimers) clearTimeout(t);
      for (const s of senders) s.stop();
      await a?.leave().catch(() => {});
      await b?.leave().catch(() => {});
      for (const r of relays) await r.close();
    }
  }
}
