// TerminalSession: a terminal's side of the wire protocol (docs/protocol.md) on top of
// `globalThis.WebTransport`. Runtime-neutral: the same code runs in Chromium (the browser SDK
// builds on it) and in Deno (headless terminals in tests and benches).
//
//   const s = await TerminalSession.connect({ url, certHashes, token });
//   s.on("connected", (members) => …);
//   s.on("frame", ({ header, payload }) => …);   // whole frames, in order per (source, track)
//   s.sendFrame(Track.video, bytes, { keyframe: true });
//   await s.leave();
//
// Sending: a frame becomes datagrams of the group's datagram size (paced, audio first, a
// bounded number of writes in flight), or one object on the session's single outgoing
// unidirectional stream when `reliable` (by default: frames that would need many datagrams).
// Receiving: datagram fragments are reassembled per publisher; frames from both paths go
// through a small per-(source, track) reorder buffer so they come out in sequence order. A gap
// standing for `nackDelayMs` is asked for with `nack` (the sender keeps its frames for about a
// second and re-sends them on the reliable stream); a gap still open after `reorderMs` is
// skipped and counted as lost.
import { CLOSE_MESSAGES, closeReasonOf, type CloseReason } from "../protocol/codes.ts";
import {
  decodeNodeMessage, encodeControl, MAX_CONTROL_BYTES, PROTOCOL_VERSION,
  type Member, type NodeMessage, type TerminalMessage, type WelcomeMessage,
} from "../protocol/control.ts";
import { FrameDecoder, frame as lengthFrame } from "../protocol/framing.ts";
import {
  encodeObject, Flag, fragmentFrame, HEADER_BYTES, parityFor, standsForDatagram, isKeyframe, layerOf, readHeader, Reassembler, seqNewer, streamKeyOf, withLayer,
  type MediaFrame, type MediaHeader,
} from "../protocol/media.ts";
import { pinnedCertificates } from "./pinning.ts";
import { ReceiveMeter } from "../quality/receive-meter.ts";
import { receiverTiming } from "../quality/timing.ts";
import type { QualityMessage } from "../protocol/control.ts";

export type { Member } from "../protocol/control.ts";

export interface ConnectOptions {
  /** The node's WebTransport URL (`group.node.url`). */
  url: string;
  /** Base64 SHA-256 hashes of the node's certificates (`serverCertificateHashes`). */
  certHashes?: string[];
  /** The consultation token; sent in the `join` message, never in the URL. */
  token: string;
  /** Free text naming the client software, for the node's logs. */
  sdk?: string;
  /** The `resume` secret of an earlier welcome: rejoin with the same token after a lost connection. */
  resume?: string;
  /** Time allowed from connecting to welcome, ms (default 10 s). */
  timeoutMs?: number;
  /** How long a gap in a track's sequence is waited for before it is skipped, ms (default: from the measured RTT). */
  reorderMs?: number;
  /** Frames needing more datagrams than this go on the reliable stream unless `reliable` says otherwise (default 24). */
  maxDatagramFragments?: number;
  /** Datagram pacing rate, bytes/s (default 6 MB/s ≈ 48 Mbit/s). */
  paceBytesPerSec?: number;
  /** Datagram writes allowed in flight (default 64). */
  maxInFlight?: number;
  /** How long sent frames are kept for retransmission on a `nack`, ms (default 1000). */
  retransmitMs?: number;
  /**
   * Video datagrams that waited longer than this for the pacer are dropped, with the rest of
   * their frame, instead of being sent late (default: never). After the target falls, a backlog
   * of re-sent keyframes otherwise took the pacer over a second to drain.
   */
  maxVideoQueueMs?: number;
  /** How long a gap may stand before the missing frames are asked for again, ms (default: from the measured jitter). */
  nackDelayMs?: number;
  /** Most a frame is held waiting for a retransmission, ms, when timing follows the RTT (default 300). */
  latencyBudgetMs?: number;
  /**
   * Most a gap is held open while a keyframe in it is partly received and being repaired, ms
   * (default 800). Nothing behind a missing keyframe decodes: giving up on it sooner only
   * trades the repair for a keyframe request, a bigger keyframe and a longer freeze.
   */
  keyframeWaitMs?: number;
  /** How often receive reports go to the node, ms (default 300; 0 turns them off). */
  reportIntervalMs?: number;
  /** Audio redundancy: "auto" (when the others report loss and the target is ≥ 400 kbit/s), "on" or "off" (default "auto"). */
  audioRedundancy?: "auto" | "on" | "off";
  /**
   * Parity for video frames of several datagrams (one XOR datagram per group of up to six
   * fragments): "auto" (keyframes always, other frames once a receiver reports loss, and none
   * while a receiver reports a standing queue: on a full bottleneck the extra bytes only add
   * loss), "on" or "off" (default "auto").
   */
  fec?: "auto" | "on" | "off";
  /** WebTransport constructor to use (default `globalThis.WebTransport`). */
  WebTransport?: typeof WebTransport;
  /**
   * QUIC congestion control hint (W3C `congestionControl`). "low-latency" (BBR in Deno/quinn)
   * does not shrink its window on random loss: with the default (Cubic), 3% loss plus a
   * bottleneck queue held media in QUIC's own send buffer for 0.5–1 s (bench:network).
   */
  congestionControl?: "default" | "throughput" | "low-latency";
  /**
   * The session's datagrams do not get through (the readiness check's "QUIC streams only"):
   * every datagram goes, unchanged, as an object on the reliable stream, and the node does
   * the same towards us (join `datagrams: false`). Pacing, fragmentation and the rest above
   * stay as they are.
   */
  streamsOnly?: boolean;
}

export interface SendOptions {
  keyframe?: boolean;
  /** Capture time, µs on the sender's clock (default: now). */
  timestamp?: number;
  /** Send on the reliable stream (default: only frames too big for `maxDatagramFragments`). */
  reliable?: boolean;
  /** Quality layer 0–3 (simulcast/SVC): each layer numbers its frames on its own. */
  layer?: number;
  /** Dropping this frame breaks no later frame. */
  discardable?: boolean;
}

export interface FrameEvent {
  header: MediaHeader;
  payload: Uint8Array;
}

export interface SessionEvents {
  /** Both members are present (connection success), with who is there. */
  connected: Member[];
  "peer-joined": Member;
  "peer-left": { member: Member; reason: string };
  /** A whole frame; `header.source` is the publisher's slot. */
  frame: FrameEvent;
  /** Someone asks this terminal for a keyframe on `track` (`layer`: that simulcast layer only; none: every layer). */
  "keyframe-request": { track: number; from?: number; layer?: number };
  "peer-stats": { from: number; report: Record<string, number | string> };
  signal: { kind: string; body?: unknown; from?: number };
  /** The node ended the consultation (reason, e.g. "consultationEnded"). */
  ended: CloseReason;
  /** The session is over (a CloseReason, or "normal"). Emitted once. */
  closed: CloseReason;
  /** Round trip to the node, ms, after each pong. */
  rtt: number;
  /** The node's view of one direction between this terminal and another member (docs/protocol.md §10). */
  quality: QualityMessage;
  /** The node chose not to forward these frames: they will not come. */
  skip: { source: number; track: number; sequences: number[]; discardable: boolean; layer?: number };
}

export interface SessionCounters {
  bytesSent: number;
  bytesReceived: number;
  framesSent: number;
  framesReceived: number;
  datagramsSent: number;
  datagramsReceived: number;
  objectsSent: number;
  objectsReceived: number;
  /** Frames skipped: never complete, or a gap waited out. */
  lost: number;
  /** Frames or fragments that arrived after their turn, dropped. */
  late: number;
  /** Datagrams dropped before sending (pacing queue full). */
  sendDropped: number;
  /** Frames asked for again (receiver) / sent again on request (sender). */
  nacked: number;
  retransmitted: number;
  /** Parity datagrams sent (see `fec`). */
  paritySent: number;
  /** Lost fragments rebuilt from parity, without a round trip. */
  repaired: number;
  malformed: number;
  rttMs: number;
}

/** Why connecting or the session failed: `reason` is a CloseReason such as "tokenInvalid". */
export class SessionError extends Error {
  override name = "SessionError";
  constructor(readonly reason: CloseReason | "connectFailed", message: string) {
    super(message);
  }
}

type Listener<T> = (v: T) => void;
type Writer = WritableStreamDefaultWriter<Uint8Array>;

interface TrackOrder {
  next?: number;
  held: Map<number, MediaFrame>;
  timer?: ReturnType<typeof setTimeout>;
  nackTimer?: ReturnType<typeof setTimeout>;
  /** Sequences already asked for: when, and how many times (a re-sent frame can be lost too). */
  nacked: Map<number, { at: number; n: number }>;
  /** Sequences the node announced it will not forward. */
  skipped: Set<number>;
  /** When the current gap opened (the first frame held behind it), ms. */
  gapAt?: number;
}

interface Sent {
  /** The frame as a whole reliable object, ready to send again. */
  object: Uint8Array;
  at: number;
  /** Datagram size it was cut to (0: sent as one reliable object). */
  cut: number;
  /** Until when its last re-sent copy is still being paced out, ms: a nack before then is answered already. */
  resendingUntil?: number;
}

/** Queueing delay a receiver reports above which the path counts as full (no parity then), ms. */
const STANDING_QUEUE_MS = 30;

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

export class TerminalSession {
  readonly sessionId: string;
  readonly consultationId: string;
  readonly groupId: string;
  readonly self: Member;
  members: Member[];
  isConnected = false;
  /** Datagram size the group uses (welcome, then `datagram-size` updates). */
  maxDatagramSize: number;
  /** Secret for `connect({ resume })` with the same token. */
  readonly resume?: string;
  readonly expiresAt?: number;
  readonly counters: SessionCounters = {
    bytesSent: 0, bytesReceived: 0, framesSent: 0, framesReceived: 0, datagramsSent: 0, datagramsReceived: 0,
    objectsSent: 0, objectsReceived: 0, lost: 0, late: 0, sendDropped: 0, nacked: 0, retransmitted: 0, paritySent: 0, repaired: 0, malformed: 0, rttMs: 0,
  };
  private readonly listeners = new Map<string, Set<Listener<never>>>();
  private readonly sequences = new Map<number, number>();
  private readonly reassemblers = new Map<number, Reassembler>();
  /** Order state per (layer, source, track): `streamKeyOf`. */
  private readonly orders = new Map<number, TrackOrder>();
  /** (source, track) → the simulcast layer being played; another layer takes over at its keyframe. */
  private readonly activeLayer = new Map<number, number>();
  /** Recently sent frames per track (and layer: track | layer << 8), for retransmission on `nack`. */
  private readonly history = new Map<number, Map<number, Sent>>();
  private readonly datagramWriter: Writer;
  private objectWriter?: Writer;
  private objectWriterOpening?: Promise<Writer | undefined>;
  private readonly audioQueue: Uint8Array[] = [];
  private readonly videoQueue: Uint8Array[] = [];
  /** When each queued video datagram was queued (for `maxVideoQueueMs`). */
  private readonly queuedAt = new WeakMap<Uint8Array, number>();
  private readonly maxVideoQueueMs: number;
  /** Datagrams travel as objects on the stream (ConnectOptions.streamsOnly). */
  private readonly streamsOnly: boolean;
  private inFlight = 0;
  private paceTokens: number;
  private paceAt = performance.now();
  private paceTimer?: ReturnType<typeof setTimeout>;
  private pingTimer?: ReturnType<typeof setInterval>;
  private pingN = 0;
  private lastHeard = Date.now();
  private closedReason?: CloseReason;
  private readonly pingIntervalMs: number;
  /** Current reorder window and nack delay, ms (follow the RTT unless fixed by the options). */
  reorderMs: number;
  nackDelayMs: number;
  /** How long a re-sent frame is waited for before it is asked for again, ms. */
  nackRetryMs: number;
  /** Latest node reports: how each other member receives us (send) and how we receive it (receive). */
  readonly quality = { send: new Map<number, QualityMessage>(), receive: new Map<number, QualityMessage>() };
  /** Bitrate the node asks this terminal's encoders to aim at, kbit/s (undefined until known). */
  targetKbps?: number;
  private readonly meters = new Map<number, ReceiveMeter>();
  private reportTimer?: ReturnType<typeof setInterval>;
  private readonly fixedTiming: { reorderMs?: number; nackDelayMs?: number; budgetMs: number };
  private readonly redundancyMode: "auto" | "on" | "off";
  private readonly fecMode: "auto" | "on" | "off";
  private readonly reportIntervalMs: number;
  private lastAudio: Uint8Array[] = [];
  private readonly maxFragments: number;
  private paceRate: number;
  private readonly maxInFlight: number;
  private readonly retransmitMs: number;
  private readonly keyframeWaitMs: number;
  private readonly onWriteDone = () => {
    this.inFlight--;
    if (this.audioQueue.length || this.videoQueue.length) this.drain();
  };

  private constructor(
    private readonly wt: WebTransport,
    private readonly control: Writer,
    private readonly controlReader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly decoder: FrameDecoder,
    welcome: WelcomeMessage,
    opts: ConnectOptions,
  ) {
    this.sessionId = welcome.sessionId;
    this.consultationId = welcome.consultationId;
    this.groupId = welcome.groupId;
    this.self = welcome.self;
    this.members = welcome.members;
    this.maxDatagramSize = welcome.maxDatagramSize;
    this.pingIntervalMs = welcome.pingIntervalMs;
    this.resume = welcome.resume;
    this.expiresAt = welcome.expiresAt;
    this.fixedTiming = { reorderMs: opts.reorderMs, nackDelayMs: opts.nackDelayMs, budgetMs: opts.latencyBudgetMs ?? 300 };
    const timing = receiverTiming({ rttMs: 0, budgetMs: this.fixedTiming.budgetMs });
    this.reorderMs = opts.reorderMs ?? timing.reorderMs;
    this.nackDelayMs = opts.nackDelayMs ?? timing.nackDelayMs;
    this.nackRetryMs = timing.nackRetryMs;
    this.redundancyMode = opts.audioRedundancy ?? "auto";
    this.fecMode = opts.fec ?? "auto";
    this.reportIntervalMs = opts.reportIntervalMs ?? 300;
    this.maxFragments = opts.maxDatagramFragments ?? 24;
    this.paceRate = opts.paceBytesPerSec ?? 6_000_000;
    this.maxInFlight = opts.maxInFlight ?? 64;
    this.retransmitMs = opts.retransmitMs ?? 1000;
    this.keyframeWaitMs = opts.keyframeWaitMs ?? 800;
    this.maxVideoQueueMs = opts.maxVideoQueueMs ?? Infinity;
    this.streamsOnly = opts.streamsOnly ?? false;
    this.paceTokens = this.burstBytes;
    const dg = wt.datagrams as WebTransportDatagramDuplexStream & { createWritable?: () => WritableStream<Uint8Array> };
    this.datagramWriter = (dg.createWritable ? dg.createWritable() : (dg.writable as WritableStream<Uint8Array>)).getWriter();
    this.datagramWriter.closed.catch(() => {});
  }

  /** Connects, sends `join` and resolves after `welcome`; rejects with a SessionError carrying `.reason`. */
  static async connect(opts: ConnectOptions): Promise<TerminalSession> {
    const WT = opts.WebTransport ?? globalThis.WebTransport;
    if (!WT) throw new SessionError("connectFailed", "this runtime has no WebTransport");
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const init: WebTransportOptions = pinnedCertificates(opts.certHashes);
    if (opts.congestionControl) init.congestionControl = opts.congestionControl;
    let wt: WebTransport;
    try {
      wt = new WT(opts.url, init);
    } catch (err) {
      throw new SessionError("connectFailed", `cannot open a session to the media node (${(err as Error)?.message ?? err})`);
    }
    const closedInfo = wt.closed.then(
      (info) => info,
      (err) => ({ closeCode: (err as { closeCode?: number })?.closeCode, reason: "" }) as WebTransportCloseInfo,
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new SessionError("timeout", `no welcome from the media node within ${timeoutMs} ms`)), timeoutMs);
    });
    const closedEarly = closedInfo.then((info): never => {
      const reason = closeReasonOf(info?.closeCode ?? -1) ?? "connectFailed";
      throw new SessionError(reason, reason === "connectFailed" ? "the media node closed the session" : CLOSE_MESSAGES[reason as CloseReason]);
    });
    closedEarly.catch(() => {});
    try {
      return await Promise.race([TerminalSession.handshake(wt, opts, closedEarly), timeout]);
    } catch (err) {
      try { wt.close(); } catch { /* already closed */ }
      if (err instanceof SessionError) throw err;
      throw new SessionError("connectFailed", `cannot reach the media node (${(err as Error)?.message ?? err})`);
    } finally {
      clearTimeout(timer);
    }
  }

  private static async handshake(wt: WebTransport, opts: ConnectOptions, closedEarly: Promise<never>): Promise<TerminalSession> {
    await Promise.race([wt.ready, closedEarly]);
    const bidi = await wt.createBidirectionalStream();
    const control = bidi.writable.getWriter() as Writer;
    control.closed.catch(() => {});
    const maxDatagramSize = wt.datagrams.maxDatagramSize;
    const join: TerminalMessage = {
      t: "join", v: PROTOCOL_VERSION, token: opts.token,
      ...(opts.sdk ? { sdk: opts.sdk } : {}),
      ...(opts.resume ? { resume: opts.resume } : {}),
      ...(maxDatagramSize ? { maxDatagramSize } : {}),
      ...(opts.streamsOnly ? { datagrams: false } : {}),
    };
    await control.write(lengthFrame(encodeControl(join)));
    const reader = bidi.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const decoder = new FrameDecoder(MAX_CONTROL_BYTES);
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), closedEarly]);
      if (done) throw new SessionError("connectFailed", "the media node closed the control stream");
      const frames = decoder.push(value);
      for (let i = 0; i < frames.length; i++) {
        const msg = decodeNodeMessage(frames[i]!);
        if (msg.t === "error") throw new SessionError(msg.code, msg.message);
        if (msg.t !== "welcome") throw new SessionError("protocolError", `expected welcome, got ${msg.t}`);
        const s = new TerminalSession(wt, control, reader, decoder, msg, opts);
        s.start(frames.slice(i + 1));
        return s;
      }
    }
  }

  // --- events -------------------------------------------------------------------------

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof SessionEvents>(event: K, fn: (v: SessionEvents[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => { set!.delete(fn as Listener<never>); };
  }

  private emit<K extends keyof SessionEvents>(event: K, v: SessionEvents[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        (fn as Listener<SessionEvents[K]>)(v);
      } catch (err) {
        console.error(`huizhen: a "${event}" listener threw`, err);
      }
    }
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  // --- sending ------------------------------------------------------------------------

  /** Sends one encoded frame; returns its sequence number on the track. */
  sendFrame(track: number, payload: Uint8Array, opts: SendOptions = {}): number {
    if (this.closedReason) throw new SessionError(this.closedReason, "the session is closed");
    if (!Number.isInteger(track) || track < 0 || track > 255) throw new RangeError("track must be 0..255");
    const layer = opts.layer ?? 0;
    if (!Number.isInteger(layer) || layer < 0 || layer > 3) throw new RangeError("layer must be 0..3");
    // Each simulcast layer has its own sequence space (and history for nacks).
    const stream = track | (layer << 8);
    const sequence = this.sequences.get(stream) ?? 0;
    this.sequences.set(stream, (sequence + 1) >>> 0);
    let flags = 0;
    if (opts.keyframe) flags |= Flag.keyframe;
    if (opts.discardable) flags |= Flag.discardable;
    if (opts.layer) flags = withLayer(flags, opts.layer);
    // With parity, fragments are cut two bytes short: a parity datagram is that much longer.
    const parity = track !== 0 && this.parityOn(opts.keyframe);
    const size = this.sendDatagramSize - (parity ? 2 : 0);
    const room = size - HEADER_BYTES;
    const reliable = opts.reliable ?? Math.ceil(payload.length / room) > this.maxFragments;
    const header = { flags: reliable ? flags | Flag.reliable : flags, track, source: 0, sequence, timestamp: opts.timestamp ?? nowUs() };
    this.counters.framesSent++;
    // Every frame is kept briefly as a whole object: a receiver missing it asks with `nack`.
    const object = encodeObject({ ...header, flags: header.flags | Flag.reliable }, payload);
    this.remember(stream, sequence, object, reliable ? 0 : size);
    if (reliable) {
      this.sendObject(object);
    } else {
      const queue = track === 0 ? this.audioQueue : this.videoQueue;
      const datagrams = fragmentFrame(header, payload, size);
      if (track === 0) {
        // Redundancy: the previous audio frame goes again just ahead of this one, so a lost
        // copy is made good 20 ms later, in order, without a round trip.
        if (this.audioRedundant) for (const d of this.lastAudio) queue.push(d);
        this.lastAudio = datagrams;
      }
      if (parity) {
        const extra = parityFor(datagrams);
        this.counters.paritySent += extra.length;
        datagrams.push(...extra);
      }
      for (const d of datagrams) queue.push(d);
      if (track !== 0 && this.maxVideoQueueMs !== Infinity) for (const d of datagrams) this.queuedAt.set(d, performance.now());
      // A queue several seconds deep is useless for live media: drop its oldest.
      const cap = 4096;
      if (queue.length > cap) this.counters.sendDropped += queue.splice(0, queue.length - cap).length;
      this.drain();
    }
    return sequence;
  }

  /** Datagram pacing rate, bytes/s: a sender following `targetKbps` paces a little above it instead of bursting. */
  setPaceRate(bytesPerSec: number): void {
    if (!(bytesPerSec > 0)) throw new RangeError("pace rate must be positive");
    this.paceRate = bytesPerSec;
  }

  get paceBytesPerSec(): number {
    return this.paceRate;
  }

  /** Bytes of datagrams waiting for the pacer: an encoder skips frames while this is more than it can afford. */
  get queuedBytes(): number {
    let n = 0;
    for (const d of this.audioQueue) n += d.length;
    for (const d of this.videoQueue) n += d.length;
    return n;
  }

  /** Whether audio goes out twice (see `audioRedundancy`). */
  get audioRedundant(): boolean {
    if (this.redundancyMode !== "auto") return this.redundancyMode === "on";
    // On a thin path the second copy would cost more than the loss it repairs.
    if (this.targetKbps !== undefined && this.targetKbps < 400) return false;
    for (const q of this.quality.send.values()) if (q.loss > 0.01) return true;
    return false;
  }

  /**
   * Whether a video frame of several datagrams carries parity (see `fec`). Keyframes do from
   * the start (nothing decodes without them, a lost one costs a round of keyframe requests, and
   * they are a small share of the bitrate); other frames once a receiver reports loss. Unlike
   * audio redundancy, also on thin paths: random loss hits them as hard.
   */
  parityOn(keyframe = false): boolean {
    if (this.fecMode !== "auto") return this.fecMode === "on";
    // On the session's streams nothing is lost: parity would be dead weight.
    if (this.streamsOnly) return false;
    let loss = false;
    for (const q of this.quality.send.values()) {
      if (q.delayMs > STANDING_QUEUE_MS) return false;
      if (q.loss > 0.01) loss = true;
    }
    return loss || keyframe;
  }

  /** Asks the publisher in `slot` (default: everyone else) for a keyframe on `track`. */
  requestKeyframe(track: number, slot?: number): void {
    this.sendControl(slot === undefined ? { t: "keyframe-request", track } : { t: "keyframe-request", track, slot });
  }

  /** Sends a quality report; the node passes it to the other members as `peer-stats`. */
  sendStats(report: Record<string, number | string>): void {
    this.sendControl({ t: "stats", report });
  }

  /** An application message to the other members (or one slot), relayed as is. */
  sendSignal(kind: string, body?: unknown, to?: number): void {
    this.sendControl({ t: "signal", kind, ...(body === undefined ? {} : { body }), ...(to === undefined ? {} : { to }) });
  }

  /** Says bye and closes the session. */
  async leave(): Promise<void> {
    if (this.closedReason) return;
    const bye = this.sendControl({ t: "bye" });
    await Promise.race([bye, new Promise((r) => setTimeout(r, 200))]);
    await new Promise((r) => setTimeout(r, 30));
    this.finish("normal");
  }

  private sendControl(msg: TerminalMessage): Promise<void> {
    if (this.closedReason) return Promise.resolve();
    return this.control.write(lengthFrame(encodeControl(msg))).catch(() => {});
  }

  private remember(track: number, sequence: number, object: Uint8Array, cut: number): void {
    let h = this.history.get(track);
    if (!h) this.history.set(track, (h = new Map()));
    h.set(sequence, { object, at: performance.now(), cut });
    const cutoff = performance.now() - this.retransmitMs;
    for (const [seq, sent] of h) {
      if (sent.at >= cutoff && h.size <= 512) break;
      h.delete(seq);
    }
  }

  /**
   * Re-sends frames a receiver missed. A frame that fits in a few datagrams goes again as
   * datagrams flagged `retransmission`, ahead of new video: a reliable stream would queue it
   * behind QUIC's congestion window and it would come after the receiver stopped waiting.
   */
  private retransmit(track: number, sequences: number[], layer = 0, parts?: number[][]): void {
    const h = this.history.get(track | (layer << 8));
    if (!h) return;
    const urgent: Uint8Array[] = [];
    const now = performance.now();
    for (let k = 0; k < sequences.length; k++) {
      const seq = sequences[k]!;
      const sent = h.get(seq);
      if (!sent) continue;
      // Asked again before the copy re-sent last time has even left the pacer (a keyframe of
      // ten datagrams takes ~150 ms at 500 kbit/s, the receiver re-asks after ~20 ms on a short
      // path): a second copy would only queue behind the first and push new video past its deadline.
      if (sent.resendingUntil !== undefined && now < sent.resendingUntil) continue;
      const resendBytes = parts?.[k]?.length ? Math.min(sent.object.length, parts[k]!.length * this.sendDatagramSize) : sent.object.length;
      sent.resendingUntil = now + ((resendBytes + this.queuedBytes) * 1000) / this.paceRate + 20;
      this.counters.retransmitted++;
      const header = readHeader(sent.object);
      const payload = sent.object.subarray(HEADER_BYTES);
      const room = this.sendDatagramSize - HEADER_BYTES;
      if (Math.ceil(payload.length / room) > this.maxFragments) {
        this.sendObject(sent.object);
        continue;
      }
      const flags = (header.flags & ~Flag.reliable) | Flag.retransmission;
      // Only the fragments the receiver lacks, cut as the first time; when the path's datagram
      // size has shrunk below that cut since, all of it, cut anew.
      const cut = sent.cut && sent.cut <= this.sendDatagramSize ? sent.cut : this.sendDatagramSize;
      const fragments = fragmentFrame({ ...header, flags }, payload, cut);
      const want = parts?.[k];
      const same = want?.length && want.every((i) => i < fragments.length) && cut === sent.cut;
      for (let i = 0; i < fragments.length; i++) if (!same || want.includes(i)) urgent.push(fragments[i]!);
    }
    if (!urgent.length) return;
    const queue = track === 0 ? this.audioQueue : this.videoQueue;
    if (track !== 0 && this.maxVideoQueueMs !== Infinity) for (const d of urgent) this.queuedAt.set(d, performance.now());
    queue.unshift(...urgent);
    this.drain();
  }

  /**
   * Size to fragment to: the group's, or less when this session's own transport lowered its path
   * MTU (QUIC does after heavy loss); a bigger datagram would be refused without a word.
   */
  private get sendDatagramSize(): number {
    const live = (this.wt.datagrams as { maxDatagramSize?: number }).maxDatagramSize;
    return live && live > HEADER_BYTES + 64 && live < this.maxDatagramSize ? live : this.maxDatagramSize;
  }

  private get burstBytes(): number {
    // Bursts scale with the rate, so a sender paced for a thin uplink does not overflow its queue.
    return Math.max(4 * this.maxDatagramSize, Math.min(Math.max(32 * this.maxDatagramSize, 48_000), this.paceRate * 0.03));
  }

  /** Sends queued datagrams within the pacing budget and the in-flight bound; audio goes first. */
  private drain(): void {
    if (this.closedReason) return;
    const now = performance.now();
    this.paceTokens = Math.min(this.burstBytes, this.paceTokens + ((now - this.paceAt) * this.paceRate) / 1000);
    this.paceAt = now;
    while (this.inFlight < this.maxInFlight) {
      const q = this.audioQueue.length ? this.audioQueue : this.videoQueue;
      const d = q[0];
      if (!d) break;
      if (q === this.videoQueue && now - (this.queuedAt.get(d) ?? now) > this.maxVideoQueueMs) {
        // Too late to be of use: drop it and the rest of its frame still queued.
        q.shift();
        this.counters.sendDropped++;
        while (q[0] && (q[0][1]! & ~Flag.parity) === (d[1]! & ~Flag.parity) && q[0][2] === d[2] && q[0][4] === d[4] && q[0][5] === d[5] && q[0][6] === d[6] && q[0][7] === d[7]) {
          q.shift();
          this.counters.sendDropped++;
        }
        continue;
      }
      if (this.paceTokens < d.length) {
        if (!this.paceTimer) {
          const wait = Math.max(1, Math.ceil(((d.length - this.paceTokens) * 1000) / this.paceRate));
          this.paceTimer = setTimeout(() => { this.paceTimer = undefined; this.drain(); }, wait);
        }
        return;
      }
      q.shift();
      this.paceTokens -= d.length;
      this.inFlight++;
      this.counters.datagramsSent++;
      this.counters.bytesSent += d.length;
      if (this.streamsOnly) {
        // On the stream, in the order paced: the in-flight bound still spaces the writes.
        this.writeOnStream(lengthFrame(d)).then(this.onWriteDone, this.onWriteDone);
      } else this.datagramWriter.write(d).then(this.onWriteDone, this.onWriteDone);
    }
  }

  private sendObject(obj: Uint8Array): void {
    const f = lengthFrame(obj);
    this.counters.objectsSent++;
    this.counters.bytesSent += f.length;
    void this.writeOnStream(f);
  }

  /** Writes a framed object on the one outgoing reliable stream, opening it on first use. */
  private writeOnStream(f: Uint8Array): Promise<void> {
    if (this.objectWriter) return this.objectWriter.write(f).catch(() => {});
    // One long-lived stream for every reliable object: Deno stalls after ~100 streams. It is
    // bidirectional (only our half is used) because Chromium's unidirectional streams never
    // reach a Deno 2.9 server.
    this.objectWriterOpening ??= this.wt.createBidirectionalStream().then((bs) => {
      const w = (bs.writable as WritableStream<Uint8Array>).getWriter();
      w.closed.catch(() => {});
      this.objectWriter = w;
      return w;
    }, () => undefined);
    return this.objectWriterOpening.then((w) => w?.write(f).catch(() => {}));
  }

  // --- receiving ----------------------------------------------------------------------

  private start(pending: Uint8Array[]): void {
    this.wt.closed.then(
      (info) => this.finish(closeReasonOf(info?.closeCode ?? 0) ?? "normal"),
      (err) => this.finish(closeReasonOf((err as { closeCode?: number })?.closeCode ?? -1) ?? "internal"),
    );
    // Messages that came with the welcome are handled after connect() resolves, so listeners
    // attached right after `await connect()` see them.
    setTimeout(() => {
      for (const f of pending) this.onControlBytes(f);
      void this.readControl().catch(() => {});
    }, 0);
    void this.readDatagrams().catch(() => {});
    void this.acceptObjectStreams().catch(() => {});
    this.pingTimer = setInterval(() => this.ping(), this.pingIntervalMs);
    this.ping();
    if (this.reportIntervalMs > 0) this.reportTimer = setInterval(() => this.sendReports(), this.reportIntervalMs);
  }

  /** Receive reports, one per publisher heard from, for the node's estimates. */
  private sendReports(): void {
    const now = performance.timeOrigin + performance.now();
    for (const [slot, meter] of this.meters) {
      if (slot === 0 || !this.members.some((m) => m.slot === slot)) continue;
      const r = meter.report(now);
      this.sendControl({
        t: "receive-report", slot, intervalMs: Math.min(60_000, Math.round(r.intervalMs)), bytes: r.bytes,
        loss: Math.round(r.loss * 10_000) / 10_000, delayMs: r.delayMs, jitterMs: r.jitterMs, rttMs: this.counters.rttMs,
      });
    }
  }

  /** Re-derives the reorder window and nack delay from the measured RTT and jitter. */
  private retime(): void {
    let jitter = 0;
    let peerRtt = 0;
    for (const q of this.quality.receive.values()) peerRtt = Math.max(peerRtt, q.rttMs ?? 0);
    for (const m of this.meters.values()) jitter = Math.max(jitter, m.jitterMs);
    const t = receiverTiming({ rttMs: this.counters.rttMs, peerRttMs: peerRtt, jitterMs: jitter, budgetMs: this.fixedTiming.budgetMs });
    this.reorderMs = this.fixedTiming.reorderMs ?? t.reorderMs;
    this.nackDelayMs = this.fixedTiming.nackDelayMs ?? t.nackDelayMs;
    this.nackRetryMs = t.nackRetryMs;
  }

  /** Sends a ping now (a `rtt` event follows if the node answers): failover's liveness check. */
  keepAlive(): void {
    this.sendControl({ t: "ping", n: this.pingN++, ts: performance.now() });
  }

  private ping(): void {
    if (Date.now() - this.lastHeard > this.pingIntervalMs * 5) {
      this.finish("timeout");
      return;
    }
    this.sendControl({ t: "ping", n: this.pingN++, ts: performance.now() });
  }

  private async readControl(): Promise<void> {
    for (;;) {
      const { value, done } = await this.controlReader.read();
      if (done || this.closedReason) return;
      let frames: Uint8Array[];
      try {
        frames = this.decoder.push(value);
      } catch {
        return this.finish("protocolError");
      }
      for (const f of frames) this.onControlBytes(f);
    }
  }

  private onControlBytes(bytes: Uint8Array): void {
    if (this.closedReason) return;
    let msg: NodeMessage;
    try {
      msg = decodeNodeMessage(bytes);
    } catch {
      this.counters.malformed++;
      return;
    }
    this.lastHeard = Date.now();
    switch (msg.t) {
      case "pong":
        if (msg.ts !== undefined) {
          this.counters.rttMs = Math.round((performance.now() - msg.ts) * 100) / 100;
          this.retime();
          this.emit("rtt", this.counters.rttMs);
        }
        return;
      case "connected":
        this.members = msg.members;
        this.isConnected = true;
        this.emit("connected", msg.members);
        return;
      case "peer-joined":
        this.members = [...this.members.filter((m) => m.slot !== msg.member.slot), msg.member];
        this.resetSource(msg.member.slot); // a rejoining publisher starts its sequences again
        this.emit("peer-joined", msg.member);
        return;
      case "peer-left":
        this.members = this.members.filter((m) => m.slot !== msg.member.slot);
        this.isConnected = false;
        this.resetSource(msg.member.slot);
        this.emit("peer-left", { member: msg.member, reason: msg.reason });
        return;
      case "keyframe-request":
        this.emit("keyframe-request", { track: msg.track, from: msg.slot, ...(msg.layer === undefined ? {} : { layer: msg.layer }) });
        return;
      case "nack":
        this.retransmit(msg.track, msg.sequences, msg.layer ?? 0, msg.parts);
        return;
      case "peer-stats":
        this.emit("peer-stats", { from: msg.from, report: msg.report });
        return;
      case "signal":
        this.emit("signal", { kind: msg.kind, body: msg.body, from: msg.from });
        return;
      case "datagram-size":
        this.maxDatagramSize = msg.maxDatagramSize;
        return;
      case "quality":
        if (msg.direction === "send") {
          this.quality.send.set(msg.slot, msg);
          let target: number | undefined;
          for (const q of this.quality.send.values()) if (q.targetKbps !== undefined) target = Math.min(target ?? Infinity, q.targetKbps);
          this.targetKbps = target;
        } else {
          this.quality.receive.set(msg.slot, msg);
          this.retime();
        }
        this.emit("quality", msg);
        return;
      case "skip":
        this.onSkip(msg.slot, msg.track, msg.sequences, msg.layer ?? 0);
        this.emit("skip", { source: msg.slot, track: msg.track, sequences: msg.sequences, discardable: msg.discardable, ...(msg.layer ? { layer: msg.layer } : {}) });
        return;
      case "ended":
        this.emit("ended", msg.reason);
        this.finish(msg.reason);
        return;
      case "error":
        this.finish(msg.code);
        return;
      case "welcome":
        this.counters.malformed++;
        return;
    }
  }

  private async readDatagrams(): Promise<void> {
    const reader = this.wt.datagrams.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closedReason) return;
      this.onMediaDatagram(value);
    }
  }

  /** One media datagram (or, streams-only, an object standing for one). */
  private onMediaDatagram(value: Uint8Array): void {
    this.counters.datagramsReceived++;
    this.counters.bytesReceived += value.length;
    const source = value.length > 3 ? value[3]! : 0;
    if (value.length >= HEADER_BYTES) {
      let meter = this.meters.get(source);
      if (!meter) this.meters.set(source, (meter = new ReceiveMeter(performance.timeOrigin + performance.now())));
      const dv = new DataView(value.buffer, value.byteOffset, HEADER_BYTES);
      meter.onDatagram(value[2]! | (layerOf(value[1]!) << 8), dv.getUint32(4), dv.getUint16(10) || 1, value.length, dv.getFloat64(12), performance.timeOrigin + performance.now(), dv.getUint16(8), (value[1]! & (Flag.retransmission | Flag.padding | Flag.parity)) !== 0);
      if ((value[1]! & Flag.padding) !== 0) return; // the node probing the path: counted, not media
    }
    let r = this.reassemblers.get(source);
    if (!r) this.reassemblers.set(source, (r = new Reassembler({ timeoutMs: 1000 })));
    let f: MediaFrame | undefined;
    const repaired = r.repaired;
    try {
      f = r.push(value);
    } catch {
      this.counters.malformed++;
      return;
    }
    this.counters.repaired += r.repaired - repaired;
    if (f) this.order(f);
  }

  private async acceptObjectStreams(): Promise<void> {
    const reader = this.wt.incomingUnidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closedReason) return;
      void this.readObjects(value as ReadableStream<Uint8Array>).catch(() => {});
    }
  }

  private async readObjects(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.getReader();
    const decoder = new FrameDecoder(16 * 1024 * 1024);
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closedReason) return;
      this.counters.bytesReceived += value.length;
      for (const obj of decoder.push(value)) {
        // Streams-only: the node sends what would have been datagrams as objects without the flag.
        if (standsForDatagram(obj)) {
          this.counters.bytesReceived -= obj.length; // counted with the stream's bytes already
          this.onMediaDatagram(obj);
          continue;
        }
        this.counters.objectsReceived++;
        try {
          const header = readHeader(obj);
          this.order({ header, payload: obj.subarray(HEADER_BYTES) });
        } catch {
          this.counters.malformed++;
        }
      }
    }
  }

  /** Puts frames of one (source, track, layer) back in sequence order across both paths. */
  private order(f: MediaFrame): void {
    const key = streamKeyOf(f.header);
    let o = this.orders.get(key);
    if (!o) this.orders.set(key, (o = { held: new Map(), nacked: new Map(), skipped: new Set() }));
    const seq = f.header.sequence;
    const active = this.activeLayer.get(key & 0xffff);
    if (active !== undefined && key >> 16 !== active) {
      // Another simulcast layer: the node switched this stream. It starts at its keyframe; its
      // frames before that wait (the keyframe may come on the other path) but are never played.
      if (!isKeyframe(f.header)) {
        if (o.next === undefined || seqNewer(seq, o.next)) o.held.set(seq, f);
        if (o.held.size > 64) o.held.delete(o.held.keys().next().value!);
        // Its keyframe may have been lost: nothing of this layer can play without one, so ask
        // (the node asks the publisher for the layer it switches us to), again while it is missing.
        o.timer ??= setTimeout(() => {
          o.timer = undefined;
          if (this.activeLayer.get(key & 0xffff) !== key >> 16) this.requestKeyframe(f.header.track, f.header.source);
        }, this.reorderMs);
        return;
      }
      this.switchLayer(key, o, seq);
    }
    if (o.next === undefined) {
      // A fresh publisher starts at 0 (its first frames missing are asked for like any gap: a
      // lost first keyframe otherwise cost a keyframe round, 0.5–1 s of black at the start);
      // otherwise wait a moment for earlier frames on the other path.
      if (seq === 0) o.next = 0;
      else {
        o.held.set(seq, f);
        o.timer ??= setTimeout(() => this.skipGap(key), this.reorderMs);
        return;
      }
    }
    if (seq === o.next) {
      this.deliver(f);
      o.next = (seq + 1) >>> 0;
      this.flushHeld(key, o);
    } else if (o.skipped.has(seq)) {
      o.skipped.delete(seq); // announced as not forwarded, then sent anyway (a race): drop it
      this.counters.late++;
    } else if (seqNewer(seq, o.next)) {
      if (!o.held.size) o.gapAt = performance.now();
      if (!o.held.has(seq)) o.held.set(seq, f);
      if (o.held.size > 512) this.skipGap(key);
      else {
        o.timer ??= setTimeout(() => this.skipGap(key), this.reorderMs);
        o.nackTimer ??= setTimeout(() => this.nack(key), this.nackDelayMs);
      }
    } else {
      this.counters.late++;
    }
  }

  /**
   * Asks the publisher for the frames a gap still misses. A frame asked for and still missing
   * a retry interval later (the re-sent copy was lost too) is asked for again, up to 3 times.
   */
  private nack(key: number): void {
    const o = this.orders.get(key);
    if (!o || o.next === undefined) return;
    o.nackTimer = undefined;
    let newest: number | undefined;
    for (const s of o.held.keys()) if (newest === undefined || seqNewer(s, newest)) newest = s;
    if (newest === undefined) return;
    const now = performance.now();
    const r = this.reassemblers.get((key >> 8) & 0xff);
    const missing: number[] = [];
    let waiting = false;
    for (let s = o.next; s !== newest && missing.length < 64; s = (s + 1) >>> 0) {
      if (o.held.has(s) || o.skipped.has(s)) continue;
      const asked = o.nacked.get(s);
      if (!asked) missing.push(s);
      else if (asked.n < 3) {
        // Fragments of the re-sent copy still arriving: it is on its way (a big frame takes
        // longer to pace out than a round trip), so asking again would only send it twice.
        const heard = r?.lastFragmentAt(key, s);
        const arriving = heard !== undefined && Date.now() - heard < this.nackRetryMs;
        if (now - asked.at >= this.nackRetryMs && !arriving) missing.push(s);
        else waiting = true;
      }
    }
    for (const s of missing) {
      const asked = o.nacked.get(s);
      o.nacked.set(s, { at: now, n: (asked?.n ?? 0) + 1 });
    }
    if (missing.length) {
      this.counters.nacked += missing.length;
      const layer = key >> 16;
      // Of a frame partly here, only the fragments it lacks.
      const parts = missing.map((s) => r?.missingFragments(key, s) ?? []);
      const partial = parts.some((p) => p.length > 0);
      this.sendControl({ t: "nack", track: key & 0xff, sequences: missing, slot: (key >> 8) & 0xff, ...(layer ? { layer } : {}), ...(partial ? { parts } : {}) });
    }
    if (missing.length || waiting) o.nackTimer = setTimeout(() => this.nack(key), this.nackRetryMs);
  }

  /** Frames the node will not forward: the order goes on past them without waiting. */
  private onSkip(source: number, track: number, sequences: number[], layer = 0): void {
    this.meters.get(source)?.onSkip(track | (layer << 8), sequences);
    const key = (layer << 16) | (source << 8) | track;
    let o = this.orders.get(key);
    if (!o) this.orders.set(key, (o = { held: new Map(), nacked: new Map(), skipped: new Set() }));
    for (const s of sequences) {
      if (o.next === undefined || seqNewer(s, o.next) || s === o.next) o.skipped.add(s);
    }
    if (o.skipped.size > 1024) o.skipped.delete(o.skipped.values().next().value!);
    if (o.next !== undefined) this.flushHeld(key, o);
  }

  private flushHeld(key: number, o: TrackOrder): void {
    for (;;) {
      const f = o.held.get(o.next!);
      if (f) {
        o.held.delete(o.next!);
        this.deliver(f);
      } else if (!o.skipped.delete(o.next!)) break;
      o.next = (o.next! + 1) >>> 0;
    }
    if (o.held.size === 0) {
      clearTimeout(o.timer);
      clearTimeout(o.nackTimer);
      o.timer = o.nackTimer = undefined;
      o.nacked.clear();
      o.gapAt = undefined;
    } else o.gapAt = performance.now();
  }

  /** The gap was waited out: go on from the oldest frame held. */
  private skipGap(key: number): void {
    const o = this.orders.get(key);
    if (!o) return;
    if (o.timer) clearTimeout(o.timer);
    o.timer = undefined;
    let oldest: number | undefined;
    for (const s of o.held.keys()) if (oldest === undefined || seqNewer(oldest, s)) oldest = s;
    if (oldest === undefined) return;
    const waited = performance.now() - (o.gapAt ?? 0);
    if (o.next !== undefined && waited < this.keyframeWaitMs && !isKeyframe(o.held.get(oldest)!.header) && this.keyframeInGap(key, o.next, oldest)) {
      o.timer = setTimeout(() => this.skipGap(key), Math.min(this.reorderMs, this.keyframeWaitMs - waited));
      return;
    }
    if (o.next !== undefined) this.counters.lost += (oldest - o.next) >>> 0;
    o.next = oldest;
    this.flushHeld(key, o);
    if (o.held.size) o.timer = setTimeout(() => this.skipGap(key), this.reorderMs);
  }

  /** A keyframe between `from` and `to` (excluded) is partly received: its repair is under way. */
  private keyframeInGap(key: number, from: number, to: number): boolean {
    const r = this.reassemblers.get((key >> 8) & 0xff);
    if (!r) return false;
    for (let s = from, n = 0; s !== to && n < 64; s = (s + 1) >>> 0, n++) if (r.partialKeyframe(key, s)) return true;
    return false;
  }

  private deliver(f: MediaFrame): void {
    const stream = (f.header.source << 8) | f.header.track;
    if (!this.activeLayer.has(stream)) this.activeLayer.set(stream, layerOf(f.header.flags));
    this.counters.framesReceived++;
    this.emit("frame", f);
  }

  /**
   * The stream (source, track) goes on in the layer of `key` from its keyframe `seq`: the other
   * layers' order state is dropped (their frames are older than the switch and would not decode).
   */
  private switchLayer(key: number, o: TrackOrder, seq: number): void {
    this.activeLayer.set(key & 0xffff, key >> 16);
    for (const [k, other] of this.orders) {
      if (k === key || (k & 0xffff) !== (key & 0xffff)) continue;
      clearTimeout(other.timer);
      clearTimeout(other.nackTimer);
      this.orders.delete(k);
    }
    for (const s of [...o.held.keys()]) if (seqNewer(seq, s)) o.held.delete(s);
    clearTimeout(o.timer);
    clearTimeout(o.nackTimer);
    o.timer = o.nackTimer = undefined;
    o.nacked.clear();
    o.next = seq;
  }

  private resetSource(slot: number): void {
    this.reassemblers.delete(slot);
    this.meters.delete(slot);
    for (const k of [...this.activeLayer.keys()]) if (k >> 8 === slot) this.activeLayer.delete(k);
    for (const [key, o] of this.orders) {
      if (((key >> 8) & 0xff) !== slot) continue;
      clearTimeout(o.timer);
      clearTimeout(o.nackTimer);
      this.orders.delete(key);
    }
  }

  /** Ends the session once: stops timers, closes the transport, emits `closed`. */
  private finish(reason: CloseReason): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.isConnected = false;
    clearInterval(this.pingTimer);
    clearInterval(this.reportTimer);
    clearTimeout(this.paceTimer);
    for (const o of this.orders.values()) {
      clearTimeout(o.timer);
      clearTimeout(o.nackTimer);
    }
    this.history.clear();
    this.audioQueue.length = 0;
    this.videoQueue.length = 0;
    try { this.wt.close({ closeCode: 0, reason: "" }); } catch { /* already closed */ }
    this.emit("closed", reason);
  }
}
