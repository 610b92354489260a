// One terminal's session on the node: speaks the wire protocol (docs/protocol.md) over a
// neutral `TransportSession` and plugs into the relay core as a `RelayPeer`. Every stream
// and session promise is caught here: with Deno a disconnect can surface as a rejection.
import { CLOSE_MESSAGES, CloseCode, type CloseReason } from "../src/protocol/codes.ts";
import {
  decodeTerminalMessage, encodeControl, MAX_CONTROL_BYTES, PROTOCOL_VERSION, ProtocolError,
  type JoinMessage, type NodeMessage,
} from "../src/protocol/control.ts";
import { FrameDecoder, FramingError } from "../src/protocol/framing.ts";
import { Flag, standsForDatagram, Track } from "../src/protocol/media.ts";
import { TokenError } from "../src/token/verify.ts";
import type { ConsultationClaims } from "../src/token/claims.ts";
import { MIN_DATAGRAM_SIZE, type Membership, type Relay, type RelayPeer } from "./relay/relay.ts";
import type { TransportSession, TransportStreamPair } from "./transport/quic.ts";
import { DeliveryQueue, type QueueOptions } from "./relay/delivery-queue.ts";

export interface SessionOptions {
  /** Time a terminal has to open the control stream and send `join`, ms. */
  joinTimeoutMs: number;
  /** Streams a terminal may open (the control stream included); more closes it with limitExceeded. */
  maxStreams: number;
  /** Datagrams queued to one subscriber before more are dropped. */
  maxQueuedDatagrams: number;
  /** Reliable bytes queued to one subscriber before more objects are dropped. */
  maxQueuedObjectBytes: number;
  /** URL path sessions must use. */
  path: string;
  /** Datagram writes handed to the transport at once; the rest wait in the delivery queue. */
  maxDatagramsInFlight: number;
  /** Deadlines of the delivery queue (late media is dropped, not sent). */
  queue: Partial<QueueOptions>;
}

export const DEFAULT_SESSION_OPTIONS: SessionOptions = {
  joinTimeoutMs: 10_000,
  maxStreams: 4,
  maxQueuedDatagrams: 1024,
  maxQueuedObjectBytes: 16 * 1024 * 1024,
  path: "/v1/session",
  maxDatagramsInFlight: 64,
  queue: {},
};

export interface SessionDeps {
  relay: Relay;
  /** Verifies a consultation token (signature, iss, aud, time); throws TokenError. */
  verifyToken(token: string): Promise<ConsultationClaims>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  options?: Partial<SessionOptions>;
}

type Writer = WritableStreamDefaultWriter<Uint8Array>;

function framed(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** Most bytes waiting on a streams-only session's media stream before its video is refused. */
const STREAMS_ONLY_BACKLOG_BYTES = 256 * 1024;

export class NodeSession implements RelayPeer {
  maxDatagramSize: number;
  membership?: Membership;
  private readonly opts: SessionOptions;
  private control?: Writer;
  private lastControlWrite: Promise<unknown> = Promise.resolve();
  private readonly datagramWriter: Writer;
  private inFlight = 0;
  private readonly queue: DeliveryQueue;
  private readonly datagramDone = () => {
    this.inFlight--;
    if (this.queue.size) this.pump();
  };
  private mediaOut?: Writer;
  private mediaOutOpening?: Promise<void>;
  private mediaQueue: Uint8Array[] = [];
  private queuedObjectBytes = 0;
  private streams = 0;
  private closing = false;
  /** The terminal joined with `datagrams: false`: datagrams go both ways as objects on the streams. */
  private streamsOnly = false;
  private readonly readers: ReadableStreamDefaultReader<unknown>[] = [];

  constructor(private readonly t: TransportSession, private readonly deps: SessionDeps) {
    this.opts = { ...DEFAULT_SESSION_OPTIONS, ...deps.options };
    this.maxDatagramSize = t.maxDatagramSize;
    this.datagramWriter = t.datagrams.writable.getWriter();
    this.datagramWriter.closed.catch(() => {});
    this.queue = new DeliveryQueue((d) => this.membership?.policy.dropped(d[3]!, d), {
      maxItems: this.opts.maxQueuedDatagrams, ...this.opts.queue,
    });
  }

  /** Runs the session until it ends; never rejects. */
  async run(): Promise<void> {
    const { relay } = this.deps;
    this.t.closed.then(() => this.onTransportClosed(), () => this.onTransportClosed());
    let path = "";
    try { path = new URL(this.t.url).pathname; } catch { /* malformed */ }
    if (path !== this.opts.path) return this.refuseBeforeJoin("protocolError", "unknown session path");
    void this.readDatagrams().catch(() => {});
    void this.acceptUniStreams().catch(() => {});

    const bidi = this.t.incomingBidirectionalStreams.getReader();
    this.readers.push(bidi);
    const timer = setTimeout(() => this.refuseBeforeJoin("tokenMissing", "no join within the time allowed"), this.opts.joinTimeoutMs);
    let first;
    try {
      first = await bidi.read();
    } catch {
      clearTimeout(timer);
      return this.onTransportClosed();
    }
    if (first.done || this.closing) {
      clearTimeout(timer);
      return;
    }
    this.streams++;
    void this.watchExtraBidi(bidi).catch(() => {});
    const control = first.value;
    this.control = control.writable.getWriter();
    this.control.closed.catch(() => {});
    const reader = control.readable.getReader();
    this.readers.push(reader);
    const decoder = new FrameDecoder(MAX_CONTROL_BYTES);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.closing) break;
        for (const bytes of decoder.push(value)) {
          const msg = decodeTerminalMessage(bytes);
          if (!this.membership) {
            clearTimeout(timer);
            if (msg.t !== "join") return this.refuseBeforeJoin("tokenMissing", "the first message must be join");
            await this.join(msg);
            if (!this.membership) return;
          } else {
            relay.onControl(this.membership, msg);
          }
          if (this.closing) return;
        }
      }
    } catch (err) {
      clearTimeout(timer);
      if (err instanceof ProtocolError || err instanceof FramingError) {
        this.deps.log("protocol error on control stream", { error: err.name });
        if (this.membership) relay.refuse(this.membership, "protocolError");
        else this.refuseBeforeJoin("protocolError", err.message);
        return;
      }
      // The stream broke: the transport is going away.
    }
    clearTimeout(timer);
    this.onTransportClosed();
  }

  private async join(msg: JoinMessage): Promise<void> {
    if (msg.v !== PROTOCOL_VERSION) return this.refuseBeforeJoin("protocolError", `protocol version ${msg.v} is not supported`);
    let claims: ConsultationClaims;
    try {
      claims = await this.deps.verifyToken(msg.token);
    } catch (err) {
      const reason: CloseReason = err instanceof TokenError ? err.reason : "internal";
      this.deps.log("join refused", { reason });
      return this.refuseBeforeJoin(reason, CLOSE_MESSAGES[reason]);
    }
    if (this.closing) return;
    if (msg.maxDatagramSize !== undefined) this.maxDatagramSize = Math.min(this.maxDatagramSize, msg.maxDatagramSize);
    // Datagrams do not get through this terminal's network: its media rides the streams.
    this.streamsOnly = msg.datagrams === false;
    if (this.maxDatagramSize < MIN_DATAGRAM_SIZE) return this.refuseBeforeJoin("protocolError", "datagram size too small for media");
    const res = this.deps.relay.admit({ claims, resume: msg.resume, sdk: msg.sdk, peer: this });
    if (!res.ok) {
      this.deps.log("join refused", { reason: res.reason, groupId: claims.gid });
      return this.refuseBeforeJoin(res.reason, res.message);
    }
    this.membership = res.membership;
  }

  // --- RelayPeer ----------------------------------------------------------------------

  sendControl(msg: NodeMessage): void {
    const w = this.control;
    if (!w) return;
    this.lastControlWrite = w.write(framed(encodeControl(msg))).catch(() => {});
  }

  sendDatagram(bytes: Uint8Array): boolean {
    if (this.streamsOnly) {
      // Padding probes a datagram path's capacity; on a stream it would only queue.
      if ((bytes[1]! & Flag.padding) !== 0) return true;
      // A stream delivers late rather than not at all: past a short backlog, video is refused
      // (the subscriber asks again or waits for a keyframe); audio always goes.
      if (bytes[2] !== Track.audio && this.queuedObjectBytes > STREAMS_ONLY_BACKLOG_BYTES) return false;
      return this.sendObject(bytes);
    }
    if (this.closing || !this.fits(bytes.length)) return false;
    if (this.inFlight < this.opts.maxDatagramsInFlight && this.queue.size === 0) {
      this.inFlight++;
      this.datagramWriter.write(bytes).then(this.datagramDone, this.datagramDone);
      return true;
    }
    if (!this.queue.push(bytes, performance.now())) return false;
    this.pump();
    return true;
  }

  /**
   * Whether a datagram of `length` fits the transport now. QUIC lowers its path MTU after heavy
   * loss (black-hole detection) and raises it again only much later; a bigger datagram is then
   * refused without a word, so every full-size fragment was lost and the video stalled for good
   * (issue 5). The smaller size goes to the relay, which has the group's senders fragment to it.
   */
  private fits(length: number): boolean {
    const live = this.t.maxDatagramSize;
    if (live > 0 && live < this.maxDatagramSize && this.maxDatagramSize > MIN_DATAGRAM_SIZE) {
      this.maxDatagramSize = Math.max(live, MIN_DATAGRAM_SIZE);
      this.deps.log("datagram size shrank", { size: this.maxDatagramSize });
      if (this.membership) this.deps.relay.datagramSizeChanged(this.membership);
    }
    return length <= (live > 0 ? live : this.maxDatagramSize);
  }

  /** Hands queued datagrams to the transport, audio first, dropping what is too late. */
  private pump(): void {
    const now = performance.now();
    while (!this.closing && this.inFlight < this.opts.maxDatagramsInFlight) {
      const d = this.queue.shift(now);
      if (!d) return;
      if (!this.fits(d.length)) continue;
      this.inFlight++;
      this.datagramWriter.write(d).then(this.datagramDone, this.datagramDone);
    }
  }

  sendObject(bytes: Uint8Array): boolean {
    if (this.closing) return false;
    if (this.queuedObjectBytes + bytes.length > this.opts.maxQueuedObjectBytes) return false;
    const f = framed(bytes);
    this.queuedObjectBytes += f.length;
    if (this.mediaOut) this.writeObject(f);
    else {
      this.mediaQueue.push(f);
      this.mediaOutOpening ??= this.openMediaOut();
    }
    return true;
  }

  close(reason: CloseReason): void {
    if (this.closing) return;
    this.closing = true;
    // Let the control message that explains the close (error/ended) leave before the session goes.
    const flushed = Promise.race([this.lastControlWrite, new Promise((r) => setTimeout(r, 250))]);
    void flushed.then(() => new Promise((r) => setTimeout(r, 50))).then(() => {
      this.t.close({ closeCode: CloseCode[reason], reason });
      this.releaseReaders();
    });
  }

  // --- internals ----------------------------------------------------------------------

  private writeObject(f: Uint8Array): void {
    this.mediaOut!.write(f).then(
      () => { this.queuedObjectBytes -= f.length; },
      () => { this.queuedObjectBytes -= f.length; },
    );
  }

  private async openMediaOut(): Promise<void> {
    try {
      const ws = await this.t.createUnidirectionalStream();
      const w = ws.getWriter();
      w.closed.catch(() => {});
      this.mediaOut = w;
      const queued = this.mediaQueue;
      this.mediaQueue = [];
      for (const f of queued) this.writeObject(f);
    } catch {
      this.mediaQueue = [];
      this.queuedObjectBytes = 0;
    }
  }

  private async readDatagrams(): Promise<void> {
    const reader = this.t.datagrams.readable.getReader();
    this.readers.push(reader);
    const relay = this.deps.relay;
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closing) return;
      const m = this.membership;
      if (m) relay.forwardDatagram(m, value);
      else relay.outOfGroup(undefined);
    }
  }

  private async acceptUniStreams(): Promise<void> {
    const reader = this.t.incomingUnidirectionalStreams.getReader();
    this.readers.push(reader);
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closing) return;
      if (!this.countStream()) return;
      void this.readObjects(value).catch(() => {});
    }
  }

  private async watchExtraBidi(reader: ReadableStreamDefaultReader<TransportStreamPair>): Promise<void> {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closing) return;
      if (!this.countStream()) return;
      // A second bidirectional stream carries the terminal's reliable objects (its readable
      // half only): Chromium's unidirectional streams never reach a Deno 2.9 server.
      void this.readObjects(value.readable).catch(() => {});
    }
  }

  private countStream(): boolean {
    if (++this.streams <= this.opts.maxStreams) return true;
    this.deps.log("too many streams", { groupId: this.membership?.group.id });
    if (this.membership) this.deps.relay.refuse(this.membership, "limitExceeded");
    else this.refuseBeforeJoin("limitExceeded", CLOSE_MESSAGES.limitExceeded);
    return false;
  }

  private async readObjects(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.getReader();
    this.readers.push(reader);
    const relay = this.deps.relay;
    const decoder = new FrameDecoder(relay.limits.maxObjectBytes);
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closing) return;
      let objects: Uint8Array[];
      try {
        objects = decoder.push(value);
      } catch {
        // An object declared larger than allowed: the stream cannot be resynchronised.
        if (this.membership) {
          this.membership.counters.oversized++;
          relay.refuse(this.membership, "limitExceeded");
        } else this.refuseBeforeJoin("limitExceeded", CLOSE_MESSAGES.limitExceeded);
        return;
      }
      for (const o of objects) {
        const m = this.membership;
        if (!m) relay.outOfGroup(undefined);
        // Streams-only: an object without the reliable flag stands for a datagram.
        else if (this.streamsOnly && standsForDatagram(o)) relay.forwardDatagram(m, o);
        else relay.forwardObject(m, o);
      }
    }
  }

  private refuseBeforeJoin(reason: CloseReason, message: string): void {
    if (this.closing) return;
    this.sendControl({ t: "error", code: reason, message });
    this.close(reason);
  }

  private onTransportClosed(): void {
    const m = this.membership;
    if (m?.active) this.deps.relay.leave(m, "disconnected");
    if (!this.closing) {
      this.closing = true;
      this.t.close({ closeCode: 0, reason: "normal" });
      this.releaseReaders();
    }
  }

  private releaseReaders(): void {
    for (const r of this.readers) r.cancel().catch(() => {});
    this.readers.length = 0;
  }
}
