// One cascade link: the WebTransport session between two media nodes that carries the media of
// every group the pair shares (wire format: ./wire.ts). On each node, every terminal of the
// group that is present on the other node appears to the relay as a member whose session is
// this link (a `CascadePeer`): the relay forwards to it like to any terminal, and what arrives
// over the link is handed to the relay as coming from that member. So forwarding is the relay's
// own (opaque, no decoding) and loops cannot form: the relay never sends a member's media back
// to that member, and a link member's media goes only to the terminals of its own node — two
// nodes per pair, each terminal present on exactly one of them.
import { frame, FrameDecoder } from "../../src/protocol/framing.ts";
import { randomId } from "../../src/bytes.ts";
import type { CloseReason } from "../../src/protocol/codes.ts";
import type { NodeMessage } from "../../src/protocol/control.ts";
import type { Group, Membership, Relay, RelayPeer } from "../relay/relay.ts";
import { decodeLink, encodeLink, MAX_LINK_CONTROL_BYTES, tagged, untag, type LinkMessage } from "./wire.ts";

export interface LinkStreamPair {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

/** What a link needs of a WebTransport session (the node's server side, or a dialed client). */
export interface LinkTransport {
  readonly maxDatagramSize: number;
  readonly datagrams: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> };
  readonly incomingBidirectionalStreams: ReadableStream<LinkStreamPair>;
  readonly incomingUnidirectionalStreams: ReadableStream<ReadableStream<Uint8Array>>;
  createUnidirectionalStream(): Promise<WritableStream<Uint8Array>>;
  createBidirectionalStream?(): Promise<LinkStreamPair>;
  close(info?: { closeCode?: number; reason?: string }): void;
  readonly closed: Promise<unknown>;
}

export interface LinkDeps {
  relay: Relay;
  /** Checks an attach from the dialer: resolves with the group id the token allows. */
  verifyAttach?: (token: string, gid: string) => Promise<void>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Keep-alive: pings this often; silent for 5 of them ends the link (ms, default 1000). */
  pingIntervalMs?: number;
  onClosed?: (link: CascadeLink) => void;
}

interface Attachment {
  tag: number;
  gid: string;
  /** Terminal id → the relay member standing for that remote terminal here. */
  remote: Map<string, Membership>;
  attached: boolean;
  /** Resolved with true, or the listener's reason for refusing. */
  waiters: ((r: true | string) => void)[];
}

const MAX_IN_FLIGHT = 256;
/** Prefix of the jti of a link member, so the node does not report it to the edge as a join. */
export const CASCADE_JTI_PREFIX = "cascade:";

/** `{ layer }` when there is one: absent and 0 differ for a keyframe request (every layer vs the lowest). */
const withLayer = (layer: number | undefined): { layer?: number } => (layer === undefined ? {} : { layer });

/** The relay's view of a terminal on the other node. */
class CascadePeer implements RelayPeer {
  constructor(private readonly link: CascadeLink, private readonly att: Attachment, private readonly slot: number, private readonly remoteMax: number) {}
  /** What fits the link and the terminal at the far end: the group's size on both nodes agrees. */
  get maxDatagramSize(): number {
    return Math.min(this.link.maxDatagramSize - 2, this.remoteMax);
  }
  sendControl(msg: NodeMessage): void {
    // Only what a publisher on the other node must act on crosses; the rest (welcome,
    // connected, peer-joined, quality …) each node tells its own terminals itself.
    // The simulcast layer crosses as is (a keyframe-request without one means every layer).
    if (msg.t === "keyframe-request") this.link.send({ t: "ask", tag: this.att.tag, from: msg.slot ?? 0, to: this.slot, track: msg.track, ...withLayer(msg.layer) });
    else if (msg.t === "nack") this.link.send({ t: "ask", tag: this.att.tag, from: msg.slot, to: this.slot, track: msg.track, sequences: msg.sequences, ...withLayer(msg.layer), ...(msg.parts ? { parts: msg.parts } : {}) });
  }
  sendDatagram(bytes: Uint8Array): boolean {
    return this.link.sendDatagram(this.att.tag, bytes);
  }
  sendObject(bytes: Uint8Array): boolean {
    return this.link.sendObject(this.att.tag, bytes);
  }
  close(_reason: CloseReason): void {
    this.att.remote.forEach((m, id) => { if (!m.active) this.att.remote.delete(id); });
  }
}

export class CascadeLink {
  readonly byTag = new Map<number, Attachment>();
  readonly byGid = new Map<string, Attachment>();
  closed = false;
  counters = { datagramsIn: 0, datagramsOut: 0, objectsIn: 0, objectsOut: 0, dropped: 0 };
  private control?: WritableStreamDefaultWriter<Uint8Array>;
  private controlReady: Promise<void>;
  private readonly datagramWriter: WritableStreamDefaultWriter<Uint8Array>;
  private objectWriter?: Promise<WritableStreamDefaultWriter<Uint8Array> | undefined>;
  private inFlight = 0;
  private nextTag = 1;
  private heardAt = Date.now();
  private pingN = 0;
  private timer?: ReturnType<typeof setInterval>;
  private readonly onWriteDone = () => { this.inFlight--; };

  constructor(
    private readonly t: LinkTransport,
    readonly role: "dialer" | "listener",
    /** "?" on a listener until the first attach's token names the dialer. */
    public peerNodeId: string,
    private readonly deps: LinkDeps,
  ) {
    this.datagramWriter = t.datagrams.writable.getWriter();
    this.datagramWriter.closed.catch(() => {});
    t.closed.then(() => this.close("link closed"), () => this.close("link closed"));
    this.controlReady = this.openControl();
    void this.readDatagrams().catch(() => {});
    void this.readObjects().catch(() => {});
    const every = deps.pingIntervalMs ?? 1000;
    this.timer = setInterval(() => this.tick(every), every);
  }

  get maxDatagramSize(): number {
    return this.t.maxDatagramSize;
  }

  private async openControl(): Promise<void> {
    let pair: LinkStreamPair;
    if (this.role === "dialer") {
      pair = await this.t.createBidirectionalStream!();
    } else {
      const r = this.t.incomingBidirectionalStreams.getReader();
      const { value, done } = await r.read();
      r.releaseLock();
      if (done || !value) throw new Error("no control stream");
      pair = value;
    }
    this.control = pair.writable.getWriter();
    this.control.closed.catch(() => {});
    void this.readControl(pair.readable).catch(() => this.close("control stream failed"));
  }

  send(m: LinkMessage): void {
    if (this.closed) return;
    const bytes = frame(encodeLink(m));
    if (this.control) {
      this.control.write(bytes).catch(() => {});
      return;
    }
    void this.controlReady.then(() => this.control?.write(bytes).catch(() => {}), () => {});
  }

  sendDatagram(tag: number, d: Uint8Array): boolean {
    if (this.closed || this.inFlight >= MAX_IN_FLIGHT) {
      this.counters.dropped++;
      return false;
    }
    this.inFlight++;
    this.counters.datagramsOut++;
    this.datagramWriter.write(tagged(tag, d)).then(this.onWriteDone, this.onWriteDone);
    return true;
  }

  sendObject(tag: number, obj: Uint8Array): boolean {
    if (this.closed) return false;
    // One long-lived stream per direction (Deno stalls after ~100 streams).
    this.objectWriter ??= this.t.createUnidirectionalStream().then((ws) => {
      const w = ws.getWriter();
      w.closed.catch(() => {});
      return w;
    }, () => undefined);
    const f = frame(tagged(tag, obj));
    this.counters.objectsOut++;
    void this.objectWriter.then((w) => w?.write(f).catch(() => {}));
    return true;
  }

  /** Dialer: joins a group on the link; resolves true once the listener accepted it, else its reason. */
  attach(gid: string, token: string): Promise<true | string> {
    const existing = this.byGid.get(gid);
    if (existing?.attached) return Promise.resolve(true);
    const att = existing ?? this.addAttachment(this.nextTag++, gid);
    return new Promise((resolve) => {
      att.waiters.push(resolve);
      this.send({ t: "attach", tag: att.tag, gid, token });
    });
  }

  /** Tells the other node that a terminal of `gid` is (no longer) here. */
  announce(gid: string, terminalId: string, present: boolean): void {
    const att = this.byGid.get(gid);
    if (att?.attached) this.send({ t: "member", tag: att.tag, terminalId, present, ...(present ? { maxDatagramSize: this.localMax(gid, terminalId) } : {}) });
  }

  private localMax(gid: string, terminalId: string): number | undefined {
    const m = this.deps.relay.groups.get(gid)?.live.find((x) => x.member.terminalId === terminalId && !x.jti.startsWith(CASCADE_JTI_PREFIX));
    return m ? Math.min(0xffff, m.peer.maxDatagramSize) : undefined;
  }

  detach(gid: string): void {
    const att = this.byGid.get(gid);
    if (!att) return;
    for (const m of att.remote.values()) this.deps.relay.leave(m, "cascadeClosed");
    this.byGid.delete(gid);
    this.byTag.delete(att.tag);
  }

  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const att of [...this.byGid.values()]) {
      for (const w of att.waiters) w("link closed");
      for (const m of att.remote.values()) this.deps.relay.leave(m, "timeout");
    }
    this.byGid.clear();
    this.byTag.clear();
    try { this.t.close({ closeCode: 0, reason: "" }); } catch { /* gone */ }
    this.deps.log("cascade link closed", { peer: this.peerNodeId, why });
    this.deps.onClosed?.(this);
  }

  private addAttachment(tag: number, gid: string): Attachment {
    const att: Attachment = { tag, gid, remote: new Map(), attached: false, waiters: [] };
    this.byTag.set(tag, att);
    this.byGid.set(gid, att);
    return att;
  }

  private tick(every: number): void {
    if (this.closed) return;
    if (Date.now() - this.heardAt > every * 5) return this.close("peer silent");
    this.send({ t: "ping", n: this.pingN++ });
    // Link members have no terminal pinging the relay: the link vouches for them while it lives.
    for (const att of this.byGid.values()) for (const m of att.remote.values()) this.deps.relay.onControl(m, { t: "ping", n: 0, ts: 0 });
  }

  private localMembers(g: Group): string[] {
    return g.live.filter((m) => !m.jti.startsWith(CASCADE_JTI_PREFIX)).map((m) => m.member.terminalId);
  }

  private markAttached(att: Attachment): void {
    att.attached = true;
    for (const w of att.waiters.splice(0)) w(true);
    const g = this.deps.relay.groups.get(att.gid);
    if (g) for (const id of this.localMembers(g)) this.send({ t: "member", tag: att.tag, terminalId: id, present: true, maxDatagramSize: this.localMax(att.gid, id) });
  }

  private async readControl(readable: ReadableStream<Uint8Array>): Promise<void> {
    const reader = readable.getReader();
    const decoder = new FrameDecoder(MAX_LINK_CONTROL_BYTES);
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closed) return;
      for (const f of decoder.push(value)) await this.onMessage(decodeLink(f));
    }
  }

  private async onMessage(m: LinkMessage): Promise<void> {
    this.heardAt = Date.now();
    switch (m.t) {
      case "ping":
        this.send({ t: "pong", n: m.n });
        return;
      case "pong":
        return;
      case "attach": {
        if (this.role !== "listener" || !this.deps.verifyAttach) return this.close("attach from a listener");
        try {
          await this.deps.verifyAttach(m.token, m.gid);
        } catch (err) {
          this.deps.log("cascade attach refused", { peer: this.peerNodeId, reason: (err as Error).message });
          this.send({ t: "refused", tag: m.tag, reason: (err as Error).message.slice(0, 100) });
          return;
        }
        const att = this.byTag.get(m.tag) ?? this.addAttachment(m.tag, m.gid);
        this.send({ t: "attached", tag: m.tag });
        this.markAttached(att);
        return;
      }
      case "attached": {
        const att = this.byTag.get(m.tag);
        if (att) this.markAttached(att);
        return;
      }
      case "refused": {
        const att = this.byTag.get(m.tag);
        if (!att) return;
        for (const w of att.waiters.splice(0)) w(m.reason);
        this.byTag.delete(m.tag);
        this.byGid.delete(att.gid);
        return;
      }
      case "member":
        return this.onMember(m.tag, m.terminalId, m.present, m.maxDatagramSize);
      case "ask": {
        const att = this.byTag.get(m.tag);
        const asker = att && [...att.remote.values()].find((x) => x.slot === m.from);
        if (!asker) return;
        if (m.sequences) this.deps.relay.onControl(asker, { t: "nack", slot: m.to, track: m.track, sequences: m.sequences, ...withLayer(m.layer), ...(m.parts ? { parts: m.parts } : {}) });
        else this.deps.relay.onControl(asker, { t: "keyframe-request", track: m.track, slot: m.to, ...withLayer(m.layer) });
        return;
      }
    }
  }

  private onMember(tag: number, terminalId: string, present: boolean, remoteMax = 0xffff): void {
    const att = this.byTag.get(tag);
    if (!att?.attached) return;
    const { relay } = this.deps;
    const current = att.remote.get(terminalId);
    if (!present) {
      if (current) relay.leave(current, "bye");
      att.remote.delete(terminalId);
      return;
    }
    if (current?.active) return;
    const g = relay.groups.get(att.gid);
    const member = g?.members.find((x) => x.terminalId === terminalId);
    if (!g || !member) return;
    const r = relay.admit({
      claims: { sub: terminalId, jti: `${CASCADE_JTI_PREFIX}${randomId("c", 8)}`, cid: g.spec.consultationId, gid: g.id, role: member.role, exp: Math.floor(g.spec.expiresAt / 1000) },
      sdk: `cascade:${this.peerNodeId}`,
      peer: new CascadePeer(this, att, member.slot, remoteMax),
    });
    if (r.ok) att.remote.set(terminalId, r.membership);
    else this.deps.log("cascade member refused", { groupId: g.id, reason: r.reason });
  }

  private memberFor(att: Attachment, slot: number): Membership | undefined {
    for (const m of att.remote.values()) if (m.slot === slot && m.active) return m;
    return undefined;
  }

  private async readDatagrams(): Promise<void> {
    const reader = this.t.datagrams.readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closed) return;
      this.heardAt = Date.now();
      const u = value && untag(value);
      if (!u || u.body.length < 4) continue;
      const att = this.byTag.get(u.tag);
      // The publishing terminal's slot, stamped by the other node's relay.
      const m = att && this.memberFor(att, u.body[3]!);
      if (!m) continue;
      this.counters.datagramsIn++;
      this.deps.relay.forwardDatagram(m, u.body);
    }
  }

  private async readObjects(): Promise<void> {
    const streams = this.t.incomingUnidirectionalStreams.getReader();
    for (;;) {
      const { value, done } = await streams.read();
      if (done || this.closed) return;
      void this.readObjectStream(value).catch(() => {});
    }
  }

  private async readObjectStream(rs: ReadableStream<Uint8Array>): Promise<void> {
    const reader = rs.getReader();
    const decoder = new FrameDecoder(this.deps.relay.limits.maxObjectBytes + 2);
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.closed) return;
      for (const f of decoder.push(value)) {
        const u = untag(f);
        if (!u || u.body.length < 4) continue;
        const att = this.byTag.get(u.tag);
        const m = att && this.memberFor(att, u.body[3]!);
        if (!m) continue;
        this.counters.objectsIn++;
        this.deps.relay.forwardObject(m, u.body);
      }
    }
  }
}
