// A consultation call in the browser: the WebTransport session (TerminalSession, shared with
// the headless terminals), the local camera/microphone publishers, the peer's decoders, the
// playout clock, stills, stats and network adaptation.
import { Track } from "../../src/protocol/media.ts";
import { AudioPublisher, AudioReceiver } from "./audio.ts";
import { nowUs, PeerClock, Window } from "./clock.ts";
import { Emitter } from "./emitter.ts";
import { HuizhenError } from "./errors.ts";
import { onMoves, openSession, type FailoverConfig, type Member, type SessionLike } from "./session.ts";
import { Connector } from "./connect.ts";
import { WebSocketTransport } from "./fallback-transport.ts";
import { captureStill, parseStill, requestPayload, STILL_CHUNK_BYTES, StillAssembler, stillChunks, type StillImage } from "./still.ts";
import { bitrateFor, decodableVideoCodecs, VideoPublisher, VideoReceiver } from "./video.ts";
import { chooseEncoding } from "../../src/quality/encoding.ts";
import { planSimulcast } from "../../src/quality/layers.ts";
import { layerOf } from "../../src/protocol/media.ts";

export interface CallStats {
  at: number;
  rttMs?: number;
  send: {
    videoKbps: number; audioKbps: number; fps: number; width: number; height: number; codec: string;
    targetKbps: number; /** The node's target for this terminal's media (its estimate of the path), kbit/s. */ nodeTargetKbps?: number; framesEncoded: number; framesDropped: number; encodeMs: number; keyframes: number; audioPackets: number;
    /** The node's estimate of this terminal's uplink, kbit/s (it decides the simulcast layers). */
    uplinkKbps?: number;
    /** Each layer sent, lowest first (one entry without simulcast): size, frame rate, encoder bitrate in kbit/s. */
    layers: { layer: number; width: number; height: number; fps: number; bitrateKbps: number; /** What the encoder produced lately, kbit/s. */ usedKbps?: number }[];
  };
  recv: {
    videoKbps: number; audioKbps: number; fps: number; decodedFps: number; width: number; height: number;
    lossPct: number; latencyMs?: number; latencyP95Ms?: number; jitterBufferMs: number; audioBufferMs: number; transitP50Ms?: number; transitP95Ms?: number; audioTransitP50Ms?: number; audioTransitP95Ms?: number;
    framesDecoded: number; framesRendered: number; audioPacketsDecoded: number; keyframeRequests: number; decodeErrors: number; decodeQueue: number; framesSkipped: number;
    /** Simulcast layer of the peer's video last shown (0 also without simulcast), and how often the node switched it. */
    layer: number; layerSwitches: number;
    /** The node's estimate of the path from the peer to this terminal, kbit/s. */
    nodeEstimateKbps?: number;
  };
  clockOffsetMs: number;
  clockSynced: boolean;
  /** The transport's own counters (datagrams, objects, lost, late…). */
  transport?: Record<string, number>;
}

export type QualityLevel = "good" | "fair" | "poor" | "none";

export interface Quality {
  level: QualityLevel;
  /** One line a clinician can read, e.g. "video 720p, 48 ms behind, 0.3% loss". */
  summary: string;
  height: number;
  latencyMs?: number;
  lossPct: number;
  /** How the other side receives this terminal's media, from the node's reports: kbit/s and loss %. */
  theyReceiveKbps?: number;
  theyReceiveLossPct?: number;
}

export interface CallEvents extends Record<string, unknown> {
  joined: { self: Member; members: Member[] };
  "connection-success": { members: Member[] };
  "peer-joined": { member: Member };
  "peer-left": { member: Member; reason: string };
  quality: Quality;
  stats: CallStats;
  "still-requested": { id: number };
  "still-progress": { id: number; received: number; total: number };
  still: StillImage;
  "still-sent": { id: number; bytes: number; width: number; height: number; sha256: string };
  /** The other side turned its camera or microphone off or on. */
  "peer-media": { camera: boolean; mic: boolean };
  ended: { reason: string };
  error: HuizhenError;
  /** The media node was lost or drains: the call is moving to another node (media paused). */
  reconnecting: { from: string; reason: string };
  /** The call resumed on another node; `rejoinMs` from losing the old one to the new welcome. */
  moved: { from: string; to: string; reason: string; rejoinMs: number };
  /** Both terminals are in the group again after a move. */
  resumed: { members: Member[] };
}

export interface CallOptions {
  /** WebTransport URL of the media node (from GET /v1/join). */
  url: string;
  certHashes?: string[];
  token: string;
  /** The camera + microphone stream to publish (see openLocalMedia). */
  stream: MediaStream;
  /** Where the peer's video is drawn. */
  canvas: HTMLCanvasElement;
  /** An AudioContext created in a user gesture, so playback may start. */
  audioContext?: AudioContext;
  /** Force a video codec string (otherwise the first supported of VIDEO_CODECS). */
  codec?: string;
  /** Send keyframes on the reliable stream (default false: paced datagrams, recovered by keyframe requests). */
  reliableKeyframes?: boolean;
  /** Send still chunks on the reliable stream (default false: datagrams with retransmission on request). */
  reliableStills?: boolean;
  /** Step 1080p down to 720p when the encoder cannot keep up (default true). */
  cpuAdaptation?: boolean;
  /** Publish several quality layers when the uplink allows (default true; the node picks one per receiver). */
  simulcast?: boolean;
  sdk?: string;
  timeoutMs?: number;
  /** Consultation, node and edge for moving to another node when this one dies or drains (off without). */
  failover?: FailoverConfig;
  /** The node's TCP fallback URL (GET /v1/join `node.fallbackUrl`), for networks that block UDP. */
  fallbackUrl?: string;
  /** The connectivity ladder (client/sdk/connect.ts); by default QUIC, then `fallbackUrl` over WebSocket. */
  connector?: Connector;
}

const KEYFRAME_REQUEST_MIN_MS = 300;
const KEYFRAME_ANSWER_MIN_MS = 400;
/** Silence after which missing still chunks are asked for again, ms. */
const STILL_NACK_MS = 400;
/** Rate at which still chunks are sent, bit/s (the video keeps the rest of the group's budget). */
const STILL_BPS = 4_000_000;

export class HuizhenCall extends Emitter<CallEvents> {
  private video: VideoPublisher;
  private audio: AudioPublisher;
  private videoRx: VideoReceiver;
  private audioRx: AudioReceiver;
  private clock = new PeerClock();
  private videoTransit = new Window(1500);
  private audioTransit = new Window(1500);
  private latency = new Window(1000);
  private latencyAll: number[] = [];
  private videoDelayUs = 40_000;
  private audioDelayUs = 40_000;
  private peerSlot: number | undefined;
  private lastKeyRequestAt = 0;
  private lastKeyAnswerAt = new Map<number, number>();
  /** The node's estimate of our uplink, and since when it has allowed more layers than we send (ms). */
  private uplinkKbps: number | undefined;
  private moreLayersSince: number | undefined;
  private layersDroppedAt = -Infinity;
  /** The node reports which layer of the peer's simulcast we get (absent: the peer sends one). */
  private recvSimulcast = false;
  private recvEstimateKbps: number | undefined;
  private keyframeRequests = 0;
  private statsTimer: ReturnType<typeof setInterval> | undefined;
  private playoutTimer: ReturnType<typeof setInterval> | undefined;
  private clockTimer: ReturnType<typeof setTimeout> | undefined;
  private prev = { at: performance.now(), vTx: 0, aTx: 0, vRx: 0, aRx: 0, enc: 0, rendered: 0, decoded: 0, recv: 0, lost: 0 };
  private rttMs: number | undefined;
  private quality: Quality | undefined;
  private stillSeq = 1;
  private stills = new StillAssembler();
  private sentStills = new Map<number, Uint8Array[]>();
  private nackTimer: ReturnType<typeof setTimeout> | undefined;
  private nackRounds = 0;
  private unsubs: (() => void)[] = [];
  private lastStats: CallStats | undefined;
  private goodSeconds = 0;
  /** The node's bitrate target for our media, once it sent one (then it drives the encoder). */
  private nodeTargetKbps: number | undefined;
  /** The node's latest report on how the other side receives us. */
  private sendQuality: { kbps: number; loss: number } | undefined;
  private cpuStrain = 0;
  /** The peer said it turned its camera off (signal `media-state`). */
  private cameraPaused = false;
  private decodable: string[] = [];
  peerMicEnabled = true;
  peerCameraEnabled = true;
  private done = false;
  /** Moved to another node and the peer is not back yet: its return is a resume, not a new connection-success. */
  private afterMove = false;
  members: Member[];
  connected = false;
  /** Between losing a node and the welcome of the next one. */
  reconnecting = false;
  micEnabled = true;
  cameraEnabled = true;

  private constructor(private readonly session: SessionLike, readonly opts: CallOptions, readonly audioContext: AudioContext) {
    super();
    this.members = session.members;
    const toLocal = (peerUs: number) => this.clock.toLocal(peerUs);
    this.video = new VideoPublisher({
      onEncoded: (v) => {
        if (!this.connected) return;
        const reliable = v.keyframe && (opts.reliableKeyframes ?? false);
        try {
          this.session.sendFrame(Track.video, v.payload, { keyframe: v.keyframe, timestamp: v.captureUs, reliable, ...(v.layer ? { layer: v.layer } : {}) });
        } catch { /* session closing */ }
      },
      onConfigured: () => this.updateQuality(),
      onError: (e) => this.fail("internal", e.message, false),
    }, { codec: opts.codec });
    this.audio = new AudioPublisher((a) => {
      if (!this.connected) return;
      try {
        this.session.sendFrame(Track.audio, a.payload, { timestamp: a.captureUs });
      } catch { /* session closing */ }
    }, (e) => this.fail("internal", e.message, false));
    this.videoRx = new VideoReceiver(opts.canvas, {
      needKeyframe: () => this.askKeyframe(),
      onRendered: (r) => {
        this.latency.push(r.latencyMs);
        if (this.latencyAll.length < 100_000) this.latencyAll.push(r.latencyMs);
      },
      onError: (e) => console.warn("huizhen:", e.message),
    }, (localUs) => localUs + this.videoDelayUs, toLocal, (t) => this.videoTransit.push(t));
    this.audioRx = new AudioReceiver(audioContext, (localUs) => localUs + this.audioDelayUs, toLocal, (e) => console.warn("huizhen:", e.message));
    this.wire();
  }

  /** This terminal in the group (its slot may change when the call moves to another node). */
  get self(): Member {
    return this.session.self;
  }

  /** Connects to the node with the token and starts publishing once both terminals are in. */
  static async join(opts: CallOptions): Promise<HuizhenCall> {
    const ctx = opts.audioContext ?? new AudioContext({ latencyHint: "interactive", sampleRate: 48000 });
    if (ctx.state === "suspended") void ctx.resume().catch(() => undefined);
    const session = await openSession({
      url: opts.url, certHashes: opts.certHashes, token: opts.token, sdk: opts.sdk ?? "huizhen-web/0.1", timeoutMs: opts.timeoutMs, failover: opts.failover,
      fallbackUrl: opts.fallbackUrl, connector: opts.connector ?? new Connector({ fallback: WebSocketTransport }),
    });
    const call = new HuizhenCall(session, opts, ctx);
    call.decodable = await decodableVideoCodecs();
    const v = opts.stream.getVideoTracks()[0];
    const a = opts.stream.getAudioTracks()[0];
    if (v) await call.video.start(v);
    if (a) await call.audio.start(a);
    queueMicrotask(() => {
      call.emit("joined", { self: call.self, members: call.members });
      if (session.isConnected) call.onConnected(session.members);
    });
    call.statsTimer = setInterval(() => call.tick(), 1000);
    call.playoutTimer = setInterval(() => call.updatePlayout(), 250);
    return call;
  }

  private wire(): void {
    const s = this.session;
    this.unsubs.push(
      s.on("connected", (members) => this.onConnected(members)),
      s.on("peer-joined", (member) => {
        this.members = [...this.members.filter((m) => m.slot !== member.slot), member];
        this.emit("peer-joined", { member });
      }),
      s.on("peer-left", ({ member, reason }) => {
        this.members = this.members.filter((m) => m.slot !== member.slot);
        if (member.slot === this.peerSlot) {
          this.connected = false;
          this.videoRx.reset();
          this.audioRx.reset();
        }
        // The node drains (or the edge moves the group): both terminals are about to move, so the
        // peer is not gone; our own session's close follows and starts the move.
        if (reason === "nodeDraining" && this.opts.failover) return;
        this.emit("peer-left", { member, reason });
      }),
      s.on("frame", ({ header, payload }) => this.onFrame(header, payload)),
      s.on("keyframe-request", ({ track, layer }) => {
        if (track !== Track.video) return;
        // Rate-limited per layer: a node switching a receiver to one layer must not wait for another's answer.
        const now = performance.now();
        const k = layer ?? -1;
        if (now - (this.lastKeyAnswerAt.get(k) ?? -Infinity) < KEYFRAME_ANSWER_MIN_MS) return;
        this.lastKeyAnswerAt.set(k, now);
        this.video.requestKeyframe(layer);
      }),
      s.on("peer-stats", ({ report }) => this.adapt(report)),
      s.on("quality", (q) => this.onQuality(q)),
      s.on("signal", (sig) => this.onSignal(sig)),
      s.on("rtt", (ms) => { this.rttMs = ms; }),
      s.on("ended", (reason) => this.finish(reason)),
      s.on("closed", (reason) => this.finish(reason || "normal")),
      ...onMoves(s, {
        moving: ({ from, reason }) => {
          this.reconnecting = true;
          this.connected = false;
          this.emit("reconnecting", { from, reason });
          this.updateQuality();
        },
        moved: (m) => this.onMoved(m),
      }),
    );
  }

  // A new node, a new group session: the peer's sequences start again and its slot may differ,
  // so the receivers start clean and ask for a keyframe once the peer is there.
  private onMoved(m: { from: string; to: string; reason: string; rejoinMs: number }): void {
    this.reconnecting = false;
    this.afterMove = true;
    this.peerSlot = undefined;
    this.videoRx.reset();
    this.audioRx.reset();
    this.members = this.session.members;
    this.emit("moved", { from: m.from, to: m.to, reason: m.reason, rejoinMs: m.rejoinMs });
    if (this.session.isConnected) this.onConnected(this.session.members);
  }

  private onConnected(members: Member[]): void {
    this.members = members;
    const peer = members.find((m) => m.slot !== this.self.slot);
    this.peerSlot = peer?.slot;
    const first = !this.connected && !this.afterMove;
    const resumed = this.afterMove;
    this.afterMove = false;
    this.connected = true;
    this.video.requestKeyframe();
    if (resumed) {
      // Back after a move: the decoder needs a fresh keyframe from the peer.
      this.lastKeyRequestAt = 0;
      this.askKeyframe();
      this.emit("resumed", { members });
    }
    this.announceMedia();
    this.announceCodecs();
    if (first) {
      this.emit("connection-success", { members });
      this.syncClock(0);
    }
  }

  private onFrame(header: { track: number; source: number; sequence: number; timestamp: number; flags?: number }, payload: Uint8Array): void {
    if (this.peerSlot === undefined) this.peerSlot = header.source;
    if (header.track === Track.video) this.videoRx.push(header.sequence, header.timestamp, payload, layerOf(header.flags ?? 0));
    else if (header.track === Track.audio) {
      this.audioTransit.push(nowUs() - this.clock.toLocal(header.timestamp));
      this.audioRx.push(header.sequence, header.timestamp, payload);
    } else if (header.track === Track.still) this.onStill(payload);
  }

  private askKeyframe(): void {
    const now = performance.now();
    if (now - this.lastKeyRequestAt < KEYFRAME_REQUEST_MIN_MS) return;
    this.lastKeyRequestAt = now;
    this.keyframeRequests++;
    try {
      this.session.requestKeyframe(Track.video, this.peerSlot);
    } catch { /* closing */ }
  }

  // Peer clock sync over signals: NTP-style probes, a few at the start then now and then.
  private syncClock(n: number): void {
    if (this.done || !this.session.sendSignal) return;
    try {
      this.session.sendSignal("clock", { t0: nowUs() });
    } catch { return; }
    this.clockTimer = setTimeout(() => this.syncClock(n + 1), n < 8 ? 500 : 10_000);
  }

  private onSignal(sig: { kind: string; body?: unknown; from?: number }): void {
    const body = (sig.body ?? {}) as Record<string, unknown>;
    if (sig.kind === "clock" && typeof body.t0 === "number") {
      this.session.sendSignal?.("clock-reply", { t0: body.t0, t1: nowUs() });
    } else if (sig.kind === "codecs" && Array.isArray(body.video)) {
      const video = body.video.filter((c): c is string => typeof c === "string").slice(0, 16);
      if (video.length) this.video.setAllowedCodecs(video);
    } else if (sig.kind === "media-state") {
      this.peerCameraEnabled = body.camera !== false;
      this.peerMicEnabled = body.mic !== false;
      this.cameraPaused = !this.peerCameraEnabled;
      this.emit("peer-media", { camera: this.peerCameraEnabled, mic: this.peerMicEnabled });
      this.updateQuality();
    } else if (sig.kind === "still-nack" && typeof body.id === "number" && Array.isArray(body.missing)) {
      const chunks = this.sentStills.get(body.id);
      const indices = body.missing.filter((n): n is number => Number.isInteger(n)).slice(0, 1024);
      if (chunks) void this.sendStillChunks(chunks, indices);
    } else if (sig.kind === "clock-reply" && typeof body.t0 === "number" && typeof body.t1 === "number") {
      this.clock.add(body.t0, body.t1, nowUs());
    }
  }

  // Playout delays: each track waits for the 95th percentile of its own capture→arrival
  // transit over 1.5 s (plus decode room), and audio is held back so it never leads the video
  // by more than 40 ms (lip-sync tolerance; audio lagging a little is far less noticeable).
  // Runs every 250 ms: a delay rises at once (avoid late frames) and falls over about a second
  // (avoid oscillation).
  private updatePlayout(): void {
    const smooth = (cur: number, target: number) => (target > cur ? target : cur + (target - cur) * 0.25);
    const v = this.videoTransit.quantile(0.95);
    if (v !== undefined) this.videoDelayUs = smooth(this.videoDelayUs, Math.min(400_000, v + 6_000));
    const a = this.audioTransit.quantile(0.95);
    if (a !== undefined) {
      const target = Math.min(500_000, Math.max(a + 10_000, this.videoDelayUs - 40_000));
      this.audioDelayUs = smooth(this.audioDelayUs, target);
    }
  }

  private tick(): void {
    const now = performance.now();
    const dt = (now - this.prev.at) / 1000 || 1;
    const vRx = this.videoRx.bytesReceived;
    const aRx = this.audioRx.bytesReceived;
    const received = this.videoRx.framesReceived + this.audioRx.packetsReceived;
    const lost = this.videoRx.framesLost + this.audioRx.packetsLost;
    const dRecv = received - this.prev.recv;
    const dLost = lost - this.prev.lost;
    const stats: CallStats = {
      at: Date.now(),
      rttMs: this.rttMs,
      send: {
        videoKbps: ((this.video.bytesEncoded - this.prev.vTx) * 8) / dt / 1000,
        audioKbps: ((this.audio.bytesEncoded - this.prev.aTx) * 8) / dt / 1000,
        fps: (this.video.framesEncoded - this.prev.enc) / dt,
        width: this.video.width, height: this.video.height, codec: this.video.codec,
        targetKbps: this.video.bitrate / 1000,
        nodeTargetKbps: this.nodeTargetKbps,
        framesEncoded: this.video.framesEncoded, framesDropped: this.video.framesDropped, encodeMs: this.video.encodeMs,
        keyframes: this.video.keyframesSent, audioPackets: this.audio.packetsEncoded,
        uplinkKbps: this.uplinkKbps,
        layers: this.video.layers.map((l) => ({ layer: l.layer, width: l.width, height: l.height, fps: l.fps, bitrateKbps: Math.round(l.bitrate / 1000), usedKbps: l.usedKbps === undefined ? undefined : Math.round(l.usedKbps) })),
      },
      recv: {
        videoKbps: ((vRx - this.prev.vRx) * 8) / dt / 1000,
        audioKbps: ((aRx - this.prev.aRx) * 8) / dt / 1000,
        fps: (this.videoRx.framesRendered - this.prev.rendered) / dt,
        decodedFps: (this.videoRx.framesDecoded - this.prev.decoded) / dt,
        width: this.videoRx.width, height: this.videoRx.height,
        lossPct: dRecv + dLost > 0 ? (100 * dLost) / (dRecv + dLost) : 0,
        latencyMs: this.latency.quantile(0.5),
        latencyP95Ms: this.latency.quantile(0.95),
        jitterBufferMs: this.videoDelayUs / 1000,
        audioBufferMs: this.audioDelayUs / 1000,
        transitP50Ms: (this.videoTransit.quantile(0.5) ?? NaN) / 1000,
        transitP95Ms: (this.videoTransit.quantile(0.95) ?? NaN) / 1000,
        audioTransitP50Ms: (this.audioTransit.quantile(0.5) ?? NaN) / 1000,
        audioTransitP95Ms: (this.audioTransit.quantile(0.95) ?? NaN) / 1000,
        framesDecoded: this.videoRx.framesDecoded, framesRendered: this.videoRx.framesRendered,
        audioPacketsDecoded: this.audioRx.packetsDecoded, keyframeRequests: this.keyframeRequests,
        decodeErrors: this.videoRx.decodeErrors,
        decodeQueue: this.videoRx.decodeQueueSize,
        framesSkipped: this.videoRx.framesSkipped,
        layer: this.videoRx.shownLayer, layerSwitches: this.videoRx.layerSwitches, nodeEstimateKbps: this.recvEstimateKbps,
      },
      clockOffsetMs: this.clock.offsetUs / 1000,
      clockSynced: this.clock.measured,
      transport: this.session.counters ? { ...this.session.counters } : undefined,
    };
    this.prev = {
      at: now, vTx: this.video.bytesEncoded, aTx: this.audio.bytesEncoded, vRx, aRx, enc: this.video.framesEncoded,
      rendered: this.videoRx.framesRendered, decoded: this.videoRx.framesDecoded, recv: received, lost,
    };
    this.lastStats = stats;
    this.emit("stats", stats);
    if (this.connected) {
      try {
        this.session.sendStats({
          lossPct: Math.round(stats.recv.lossPct * 100) / 100,
          loss: Math.round(stats.recv.lossPct * 10) / 1000,
          recvKbps: Math.round(stats.recv.videoKbps + stats.recv.audioKbps),
          latencyMs: Math.round(stats.recv.latencyMs ?? 0),
          fps: Math.round(stats.recv.fps),
        });
      } catch { /* closing */ }
    }
    this.adaptCpu(stats);
    this.updateQuality();
  }

  /**
   * CPU adaptation: when the encoder cannot keep up with the camera for a few seconds (slow or
   * busy machine, or a costly codec the peer forced), the camera is asked for the next smaller
   * size (1080p → 720p → 540p → 360p); each step roughly halves the work.
   */
  private adaptCpu(stats: CallStats): void {
    const track = this.opts.stream.getVideoTracks()[0];
    if (!track || !this.video.enabled || stats.send.height <= 360 || this.opts.cpuAdaptation === false) {
      this.cpuStrain = 0;
      return;
    }
    const cameraFps = track.getSettings().frameRate ?? 30;
    // Full HD gives way at moderate strain; 720p and below only when the video is barely moving.
    const hd = stats.send.height >= 1080;
    const strained = hd
      ? this.video.encodeMs > 1000 / cameraFps || stats.send.fps < cameraFps * 0.6
      : this.video.encodeMs > 2000 / cameraFps && stats.send.fps < cameraFps * 0.4;
    this.cpuStrain = strained ? this.cpuStrain + 1 : 0;
    if (this.cpuStrain >= (hd ? 3 : 5)) {
      this.cpuStrain = 0;
      const next = stats.send.height > 720 ? 720 : stats.send.height > 540 ? 540 : 360;
      void track.applyConstraints(videoConstraints(track.getSettings().deviceId, next)).catch(() => undefined);
      this.emit("error", new HuizhenError("cpuLimited", `This computer cannot encode ${stats.send.height}p fast enough; sending ${next}p instead.`));
    }
  }

  /**
   * The node's estimate of the path to the other terminal drives the encoder's bitrate: the
   * share of the target the ladder gives video (src/quality/encoding.ts), never above what the
   * current resolution needs. The target follows queueing delay and loss at the receiver.
   */
  private onQuality(q: { direction: "send" | "receive"; targetKbps?: number; kbps: number; loss: number; uplinkKbps?: number; layer?: number }): void {
    if (q.direction !== "send") {
      this.recvSimulcast = q.layer !== undefined;
      this.recvEstimateKbps = (q as { estimateKbps?: number }).estimateKbps;
      return;
    }
    this.sendQuality = { kbps: q.kbps, loss: q.loss };
    if (q.uplinkKbps !== undefined) this.uplinkKbps = q.uplinkKbps;
    if (q.targetKbps === undefined) return;
    this.nodeTargetKbps = q.targetKbps;
    this.planLayers(q.targetKbps);
  }

  /**
   * Simulcast: as many layers as the node's estimate of our uplink allows (src/quality/layers.ts),
   * the low one sized for the thinnest receiver (the node's target), the top one for the uplink.
   * A layer is added only after the uplink allowed it for 3 s, and removed at once. One layer:
   * its bitrate follows the target as before. Each encoder steps its resolution and frame rate
   * to its bitrate (video.ts).
   */
  private planLayers(targetKbps: number): void {
    const track = this.opts.stream.getVideoTracks()[0];
    const cameraHeight = track?.getSettings().height ?? (this.video.height || 720);
    const count = this.video.layers.length;
    const s = this.lastStats?.send;
    const u = {
      uplinkKbps: this.opts.simulcast === false ? undefined : this.uplinkKbps,
      sendKbps: s ? s.videoKbps + s.audioKbps : undefined,
      layers: count,
      targetKbps,
    };
    let plan = planSimulcast(cameraHeight, u);
    const now = performance.now();
    if (plan.length > count) {
      // A layer is added once the uplink allowed it for 3 s, and not within 10 s of one going.
      this.moreLayersSince ??= now;
      if (now - this.moreLayersSince < 3000 || now - this.layersDroppedAt < 10_000) plan = planSimulcast(cameraHeight, u, { maxLayers: count });
    } else this.moreLayersSince = undefined;
    if (plan.length < count) this.layersDroppedAt = now;
    if (plan.length === 1) {
      const e = chooseEncoding(targetKbps);
      this.video.setMaxBitrate(Math.max(150_000, e.bitrateKbps * 1000));
    } else this.video.setLayers(plan);
  }

  /** Without node targets (an older node), the receiver's loss drives our encoder bitrate. */
  private adapt(report: Record<string, number | string>): void {
    if (this.nodeTargetKbps !== undefined) return;
    const loss = Number(report.lossPct);
    if (!Number.isFinite(loss) || !this.video.height) return;
    const ceiling = bitrateFor(this.video.height);
    const current = this.video.bitrate || ceiling;
    if (loss > 3) {
      this.goodSeconds = 0;
      this.video.setMaxBitrate(Math.max(300_000, current * 0.75));
    } else if (loss < 0.5 && ++this.goodSeconds >= 3 && current < ceiling) {
      this.video.setMaxBitrate(Math.min(ceiling, current * 1.1));
    }
  }

  private updateQuality(): void {
    const s = this.lastStats;
    const height = s?.recv.height ?? 0;
    const latency = s?.recv.latencyMs;
    const loss = s?.recv.lossPct ?? 0;
    const fps = s?.recv.fps ?? 0;
    const everVideo = this.videoRx.framesRendered > 0;
    let level: QualityLevel;
    if (!this.connected || !everVideo) level = "none";
    else if (fps < 1 || loss > 5 || (latency ?? 0) > 400 || fps < 10) level = "poor";
    else if (loss > 1 || (latency ?? 0) > 150 || height < 720) level = "fair";
    else level = "good";
    const lossText = `${loss < 0.05 ? "0" : loss.toFixed(1)}% loss`;
    let summary: string;
    if (level === "none") summary = "waiting for video";
    else if (fps < 1) summary = this.cameraPaused ? "the other side paused its camera" : `video frozen, recovering (${lossText})`;
    else {
      // The simulcast layer received goes last, so the familiar "video 720p, 48 ms behind, 0% loss" reads the same.
      const layer = this.recvSimulcast ? `layer ${this.videoRx.shownLayer} of their simulcast` : "";
      summary = [`video ${height}p`, latency !== undefined ? `${Math.round(latency)} ms behind` : "", lossText, layer].filter(Boolean).join(", ");
    }
    // What the other side gets from us (the node's report), so each end sees both directions.
    const sq = this.sendQuality;
    const theyKbps = sq ? Math.round(sq.kbps / 50) * 50 : undefined;
    const theyLoss = sq ? Math.round(sq.loss * 1000) / 10 : undefined;
    if (sq && level !== "none") summary += `; they receive you at ${theyKbps} kbit/s, ${theyLoss}% loss`;
    const q: Quality = { level, summary, height, latencyMs: latency, lossPct: loss, theyReceiveKbps: theyKbps, theyReceiveLossPct: theyLoss };
    const prev = this.quality;
    this.quality = q;
    if (!prev || prev.level !== q.level || prev.height !== q.height || prev.summary !== q.summary) this.emit("quality", q);
  }

  // ── stills ──

  /** Asks the other terminal for a full-resolution still of its camera. */
  requestStill(): number {
    const id = this.stillSeq++;
    this.session.sendFrame(Track.still, requestPayload(id), { reliable: this.opts.reliableStills ?? false, timestamp: nowUs() });
    return id;
  }

  private onStill(payload: Uint8Array): void {
    const m = parseStill(payload);
    if (!m) return;
    if (m.kind === "request") {
      this.emit("still-requested", { id: m.id });
      void this.sendStill(m.id);
      return;
    }
    const r = this.stills.push(m);
    if (!r) return;
    this.emit("still-progress", { id: r.id, received: r.received, total: r.total });
    clearTimeout(this.nackTimer);
    if (r.image) {
      this.nackRounds = 0;
      this.emit("still", r.image);
    } else {
      this.nackTimer = setTimeout(() => this.nackStill(r.id), STILL_NACK_MS);
    }
  }

  /** No chunk for a while and the still is incomplete: ask for the missing chunks again. */
  private nackStill(id: number): void {
    const missing = this.stills.missing(id);
    if (!missing || !missing.indices.length || ++this.nackRounds > 20) return;
    this.session.sendSignal?.("still-nack", { id, missing: missing.indices });
    this.nackTimer = setTimeout(() => this.nackStill(id), STILL_NACK_MS * 3);
  }

  private async sendStill(id: number): Promise<void> {
    const track = this.opts.stream.getVideoTracks()[0];
    if (!track) return;
    try {
      const still = await captureStill(track, () => this.grabFrame());
      const chunks = await stillChunks(id, still);
      const sha256 = await digestHex(still.blob);
      this.sentStills.set(id, chunks);
      for (const k of this.sentStills.keys()) if (this.sentStills.size > 3) this.sentStills.delete(k);
      await this.sendStillChunks(chunks, chunks.map((_, i) => i));
      this.emit("still-sent", { id, bytes: still.bytes, width: still.width, height: still.height, sha256 });
    } catch (err) {
      this.emit("error", new HuizhenError("internal", `Could not take the still: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  /** Sends chunks at a bounded rate so the live video keeps its share of the group's budget. */
  private async sendStillChunks(chunks: Uint8Array[], indices: number[]): Promise<void> {
    const gapMs = (STILL_CHUNK_BYTES * 8) / STILL_BPS * 1000;
    for (const i of indices) {
      const c = chunks[i];
      if (!c || this.done) continue;
      this.session.sendFrame(Track.still, c, { reliable: this.opts.reliableStills ?? false, timestamp: nowUs() });
      await new Promise((r) => setTimeout(r, gapMs));
    }
  }

  /** The next camera frame at its full size (for stills when ImageCapture is unavailable). */
  private grabFrame(): Promise<VideoFrame> {
    const track = this.opts.stream.getVideoTracks()[0];
    if (!track || typeof MediaStreamTrackProcessor === "undefined") return Promise.reject(new Error("no camera frame"));
    const reader = new MediaStreamTrackProcessor<VideoFrame>({ track: track.clone() }).readable.getReader();
    return reader.read().then((r) => {
      void reader.cancel();
      if (!r.value) throw new Error("no camera frame");
      return r.value;
    });
  }

  // ── controls ──

  setMicrophoneEnabled(on: boolean): void {
    this.micEnabled = on;
    this.audio.enabled = on;
    for (const t of this.opts.stream.getAudioTracks()) t.enabled = on;
    this.announceMedia();
  }

  private announceMedia(): void {
    try {
      this.session.sendSignal?.("media-state", { camera: this.cameraEnabled, mic: this.micEnabled });
    } catch { /* closing */ }
  }

  /** Tells the peer which video codecs we can decode; it encodes only those. */
  private announceCodecs(): void {
    try {
      this.session.sendSignal?.("codecs", { video: this.decodable });
    } catch { /* closing */ }
  }

  setCameraEnabled(on: boolean): void {
    this.cameraEnabled = on;
    this.video.enabled = on;
    for (const t of this.opts.stream.getVideoTracks()) t.enabled = on;
    if (on) this.video.requestKeyframe();
    this.announceMedia();
  }

  /** Replaces the camera (another deviceId) without leaving the call. */
  async switchCamera(deviceId: string, height = this.video.height || 720): Promise<void> {
    const fresh = await navigator.mediaDevices.getUserMedia({ video: videoConstraints(deviceId, height) });
    const next = fresh.getVideoTracks()[0]!;
    for (const t of this.opts.stream.getVideoTracks()) {
      this.opts.stream.removeTrack(t);
      t.stop();
    }
    this.opts.stream.addTrack(next);
    next.enabled = this.cameraEnabled;
    await this.video.start(next);
  }

  setVolume(v: number): void {
    this.audioRx.setVolume(v);
  }

  /** Video frames decoded so far (a live count; stats() is once a second). */
  get framesDecoded(): number {
    return this.videoRx.framesDecoded;
  }

  stats(): CallStats | undefined {
    return this.lastStats;
  }

  /** Every capture→render latency sample so far, ms (benchmarks). */
  latencySamples(): number[] {
    return this.latencyAll.slice();
  }

  resetLatencySamples(): void {
    this.latencyAll = [];
  }

  async leave(): Promise<void> {
    if (this.done) return;
    try {
      await this.session.leave();
    } catch { /* already gone */ }
    this.finish("normal");
  }

  private fail(reason: string, message: string, fatal: boolean): void {
    this.emit("error", new HuizhenError(reason, message));
    if (fatal) this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.done) return;
    this.done = true;
    this.connected = false;
    clearInterval(this.statsTimer);
    clearInterval(this.playoutTimer);
    clearTimeout(this.clockTimer);
    clearTimeout(this.nackTimer);
    for (const u of this.unsubs) u();
    void this.video.stop();
    void this.audio.stop();
    this.videoRx.close();
    this.audioRx.close();
    this.emit("ended", { reason });
  }
}

/** SHA-256 of a blob, hex (lets a receiver prove a still arrived bit for bit). */
export async function digestHex(blob: Blob): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function videoConstraints(deviceId: string | undefined, height: number): MediaTrackConstraints {
  const h = height >= 1080 ? 1080 : height >= 720 ? 720 : height >= 540 ? 540 : 360;
  return {
    ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
    width: { ideal: Math.round((h * 16) / 9) },
    height: { ideal: h },
    frameRate: { ideal: 30, max: 30 },
  };
}
