// The relay core: groups reserved by the edge, the members admitted into them, and the
// forwarding of opaque media objects between them. It knows nothing about codecs and nothing
// about the network: sessions reach it through the small `RelayPeer` interface, so it runs and
// is tested with fake peers. The hot path (`forwardDatagram`) allocates nothing per datagram
// (the uplink meter keeps a small tally per frame; padding copies exist only while a path is
// probed for a bigger simulcast layer).
import type { Member, NodeMessage, TerminalMessage } from "../../src/protocol/control.ts";
import type { CloseReason } from "../../src/protocol/codes.ts";
import { CLOSE_MESSAGES } from "../../src/protocol/codes.ts";
import { Flag, HEADER_BYTES, layerOf, peekTrack, Track } from "../../src/protocol/media.ts";
import { ReceiveMeter } from "../../src/quality/receive-meter.ts";
import { BandwidthEstimator } from "../../src/quality/estimator.ts";
import type { GroupAttributes, GroupSpec, Role } from "../../src/types.ts";
import { randomId, timingSafeEqual } from "../../src/bytes.ts";
import { SubscriberPolicy, type PolicyOptions } from "./subscriber.ts";

/** One admitted session as the relay sees it. Implemented by the node's session over WebTransport. */
export interface RelayPeer {
  /** Largest datagram this session can take both ways. */
  readonly maxDatagramSize: number;
  sendControl(msg: NodeMessage): void;
  /** Queues a datagram; the relay never mutates `bytes` after the call. Returns false when dropped. */
  sendDatagram(bytes: Uint8Array): boolean;
  /** Queues one reliable object (header + payload) on the session's outgoing media stream. */
  sendObject(bytes: Uint8Array): boolean;
  /** Ends the session; the relay has already told the terminal why (error or ended). */
  close(reason: CloseReason): void;
}

export type { GroupSpec };

export type RelayEventType = "joined" | "left" | "connected" | "group-closed";
export interface RelayEvent {
  type: RelayEventType;
  consultationId: string;
  groupId: string;
  terminalId?: string;
  jti?: string;
  reason?: string;
  at: number;
}

export interface RelayLimits {
  maxSessions: number;
  maxGroups: number;
  /** Datagrams per second a session may send (burst: one second's worth). */
  maxDatagramsPerSec: number;
  /** Slack over the group's media budget before datagrams are dropped, ×. */
  bitrateSlack: number;
  /** Largest reliable object, bytes. */
  maxObjectBytes: number;
  /** Highest track number accepted. */
  maxTrack: number;
  /** Rate-dropped datagrams in one second above which the session is closed (limitExceeded). */
  abuseDropsPerSec: number;
  /** Malformed objects in one second above which the session is closed (protocolError). */
  abuseMalformedPerSec: number;
  /** Keep-alive: the terminal pings this often; 5 missed intervals drop it. */
  pingIntervalMs: number;
  /** Ended groups are remembered this long, so late joins learn why. */
  tombstoneMs: number;
  /** Smallest keyframe-request spacing per publisher and track, ms (requests in between are coalesced). */
  keyframeRequestSpacingMs: number;
  /** Per-subscriber forwarding policy (media/relay/subscriber.ts). */
  policy?: Partial<PolicyOptions>;
}

export const DEFAULT_LIMITS: RelayLimits = {
  maxSessions: 1000,
  maxGroups: 500,
  maxDatagramsPerSec: 20_000,
  bitrateSlack: 2,
  maxObjectBytes: 4 * 1024 * 1024,
  maxTrack: 15,
  abuseDropsPerSec: 2000,
  abuseMalformedPerSec: 200,
  pingIntervalMs: 2000,
  tombstoneMs: 6 * 3600_000,
  keyframeRequestSpacingMs: 100,
};

export type ReserveResult = "created" | "exists" | "conflict" | "node_full" | "node_draining";

export interface AdmitRequest {
  /** Verified token claims. */
  claims: { sub: string; jti: string; cid: string; gid: string; role: Role; exp: number };
  resume?: string;
  sdk?: string;
  peer: RelayPeer;
}

export type AdmitResult =
  | { ok: true; membership: Membership }
  | { ok: false; reason: CloseReason; message: string };

/** Counters per session; also summed per node for the heartbeat. */
export class Counters {
  datagramsIn = 0;
  datagramsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  objectsIn = 0;
  objectsOut = 0;
  malformed = 0;
  oversized = 0;
  rateDropped = 0;
  outOfGroup = 0;
  queueDropped = 0;
}

export class Membership {
  active = true;
  readonly counters = new Counters();
  lastSeen: number;
  // Token bucket for datagrams and bytes; `windowDrops`/`windowMalformed` for abuse detection.
  tokens: number;
  byteTokens: number;
  refillAt: number;
  windowStart: number;
  windowDrops = 0;
  windowMalformed = 0;
  /** Loss the terminal last reported receiving (stats `loss`, 0..1). */
  reportedLoss = 0;
  /** The terminal's round trip to the node as it last reported it, ms. */
  rttMs = 0;
  /** What this member receives: which frames of each publisher go to it (set by the relay). */
  policy!: SubscriberPolicy;
  /**
   * This member's uplink as the node sees it (what arrives from it), for the number of
   * simulcast layers it sends; updated when its subscribers report, at most every 250 ms.
   */
  readonly uplink = { meter: undefined as ReceiveMeter | undefined, estimator: new BandwidthEstimator({ initialKbps: 2500, minKbps: 100, maxKbps: 20_000 }), at: 0, reports: 0 };
  constructor(
    readonly sessionId: string,
    readonly group: Group,
    readonly member: Member,
    readonly jti: string,
    readonly resumeSecret: string,
    readonly expiresAt: number,
    readonly peer: RelayPeer,
    now: number,
    readonly datagramRate: number,
    readonly byteRate: number,
  ) {
    this.lastSeen = now;
    this.tokens = datagramRate;
    this.byteTokens = byteRate;
    this.refillAt = now;
    this.windowStart = now;
  }
  get slot(): number {
    return this.member.slot;
  }
}

interface TokenUse {
  terminalId: string;
  resume: string;
  exp: number;
  live?: Membership;
}

export class Group {
  readonly members: Member[];
  readonly live: Membership[] = [];
  readonly tokens = new Map<string, TokenUse>();
  readonly revokedJtis = new Set<string>();
  readonly revokedTerminals = new Set<string>();
  datagramSize = 0;
  connectedOnce = false;
  ended = false;
  readonly keyframeAsked = new Map<number, number>();
  constructor(readonly spec: GroupSpec) {
    // Slots follow the edge's member order: stable across reconnects, 1-based (0 = "from a terminal").
    this.members = spec.members.map((m, i) => ({ terminalId: m.terminalId, role: m.role, slot: i + 1 }));
  }
  get id(): string {
    return this.spec.groupId;
  }
  liveMembers(): Member[] {
    return this.live.map((m) => m.member);
  }
}

export interface RelayOptions {
  limits?: Partial<RelayLimits>;
  /** Reports to the edge (queued and retried by the reporter). */
  onEvent?: (e: RelayEvent) => void;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  now?: () => number;
}

export class Relay {
  readonly limits: RelayLimits;
  readonly groups = new Map<string, Group>();
  /** groupId → why and when it ended. */
  private readonly tombstones = new Map<string, { reason: CloseReason; at: number; consultationId: string }>();
  readonly totals = new Counters();
  sessions = 0;
  draining = false;
  private readonly onEvent: (e: RelayEvent) => void;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private readonly now: () => number;
  /** Coarse clock for the hot path, refreshed by `tick()`. */
  private clock: number;

  constructor(opts: RelayOptions = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.onEvent = opts.onEvent ?? (() => {});
    this.log = opts.log ?? (() => {});
    this.now = opts.now ?? Date.now;
    this.clock = this.now();
  }

  // --- groups (edge → node) ----------------------------------------------------------

  reserve(spec: GroupSpec): ReserveResult {
    const existing = this.groups.get(spec.groupId);
    if (existing) return existing.spec.consultationId === spec.consultationId ? "exists" : "conflict";
    const gone = this.tombstones.get(spec.groupId);
    if (gone) {
      // A group the edge moved away (drain, a lost placement race, a degraded path) may come
      // back to this node later; one that ended may not.
      if (gone.reason !== "nodeDraining" || gone.consultationId !== spec.consultationId) return "conflict";
    }
    if (this.draining) return "node_draining";
    if (this.groups.size >= this.limits.maxGroups) return "node_full";
    this.tombstones.delete(spec.groupId);
    this.groups.set(spec.groupId, new Group(spec));
    this.log("group reserved", { groupId: spec.groupId, members: spec.members.length });
    return "created";
  }

  /** Ends a group: every member gets `ended` and is closed. Returns how many sessions were closed. */
  closeGroup(groupId: string, reason: CloseReason = "consultationEnded"): number | undefined {
    const g = this.groups.get(groupId);
    if (!g) return undefined;
    g.ended = true;
    const live = [...g.live];
    for (const m of live) {
      m.peer.sendControl({ t: "ended", reason });
      this.leave(m, reason);
      m.peer.close(reason);
    }
    this.groups.delete(groupId);
    this.tombstones.set(groupId, { reason, at: this.now(), consultationId: g.spec.consultationId });
    this.emit("group-closed", g, { reason });
    this.log("group closed", { groupId, reason, closedSessions: live.length });
    return live.length;
  }

  /** The group existed here and has ended (remembered for `tombstoneMs`). */
  hasEnded(groupId: string): boolean {
    return this.tombstones.has(groupId);
  }

  /** Refuses these tokens/terminals from now on and closes their live sessions. */
  revoke(groupId: string, jtis: string[] = [], terminalIds: string[] = []): number | undefined {
    const g = this.groups.get(groupId);
    if (!g) return undefined;
    for (const j of jtis) g.revokedJtis.add(j);
    for (const t of terminalIds) g.revokedTerminals.add(t);
    let n = 0;
    for (const m of [...g.live]) {
      if (g.revokedJtis.has(m.jti) || g.revokedTerminals.has(m.member.terminalId)) {
        this.refuse(m, "revoked");
        n++;
      }
    }
    return n;
  }

  // --- admission --------------------------------------------------------------------

  admit(req: AdmitRequest): AdmitResult {
    const { claims } = req;
    const now = this.now();
    const fail = (reason: CloseReason, message = CLOSE_MESSAGES[reason]): AdmitResult => ({ ok: false, reason, message });
    const g = this.groups.get(claims.gid);
    if (!g) {
      const gone = this.tombstones.get(claims.gid);
      // Moved away: the terminal should ask the edge where the group is now, not give up.
      return gone ? fail(gone.reason === "nodeDraining" ? "nodeDraining" : "consultationEnded") : fail("groupUnknown");
    }
    if (g.spec.consultationId !== claims.cid) return fail("groupUnknown");
    if (g.ended || g.spec.expiresAt <= now) return fail("consultationEnded");
    if (g.revokedJtis.has(claims.jti) || g.revokedTerminals.has(claims.sub)) return fail("revoked");
    const member = g.members.find((m) => m.terminalId === claims.sub && m.role === claims.role);
    if (!member) return fail("tokenInvalid", "The token's terminal is not a member of this consultation.");
    const use = g.tokens.get(claims.jti);
    if (use) {
      // A jti is single use; the documented exception is a rejoin carrying the welcome's resume secret.
      const resumed = req.resume !== undefined && timingSafeEqual(req.resume, use.resume) && use.terminalId === claims.sub;
      if (!resumed) return fail("tokenInUse", use.live ? CLOSE_MESSAGES.tokenInUse : "This token was already used; rejoining needs its resume secret.");
    }
    // A terminal has at most one live session: a new admission replaces the old one.
    const previous = g.live.find((m) => m.member.terminalId === claims.sub);
    const others = g.live.length - (previous ? 1 : 0);
    if (others >= Math.min(g.spec.attributes.maxParticipants, g.members.length)) return fail("groupFull");
    if (this.draining) return fail("nodeDraining");
    if (!previous && this.sessions >= this.limits.maxSessions) return fail("limitExceeded", "The media node has no room for another session.");
    if (previous) this.refuse(previous, "replaced");

    const resume = use?.resume ?? randomId("rs", 24);
    const attrs = g.spec.attributes;
    const byteRate = Math.ceil(((attrs.maxVideoKbps + attrs.maxAudioKbps) * 1000 / 8) * this.limits.bitrateSlack) + 64 * 1024;
    const m = new Membership(
      randomId("ses", 12), g, member, claims.jti, resume, claims.exp, req.peer, now,
      this.limits.maxDatagramsPerSec, byteRate,
    );
    m.policy = new SubscriberPolicy({
      skip: (publisher, track, sequence, discardable, layer) =>
        m.peer.sendControl({ t: "skip", slot: publisher, track, sequences: [sequence], discardable, ...(layer ? { layer } : {}) }),
      needKeyframe: (publisher, track, layer) => this.askKeyframe(m, track, publisher, layer),
      note: (what, fields) => this.log(what === "switch" ? "layer switch" : "path probe", { groupId: g.id, slot: member.slot, ...fields }),
    }, {
      ...this.limits.policy,
      // A cascade member (media/cascade/link.ts, jti prefix "cascade:") stands for a whole node:
      // it gets every layer and that node picks one for each of its terminals.
      ...(claims.jti.startsWith("cascade:") ? { selectLayers: false } : {}),
    });
    for (const o of g.live) o.policy?.reset(member.slot);
    g.tokens.set(claims.jti, { terminalId: claims.sub, resume, exp: claims.exp, live: m });
    g.live.push(m);
    this.sessions++;
    const sizeChanged = this.recomputeDatagramSize(g);
    req.peer.sendControl({
      t: "welcome", v: 1, sessionId: m.sessionId, consultationId: g.spec.consultationId, groupId: g.id,
      self: member, members: g.liveMembers(), maxDatagramSize: g.datagramSize, pingIntervalMs: this.limits.pingIntervalMs,
      resume, expiresAt: claims.exp,
    });
    for (const o of g.live) {
      if (o === m) continue;
      if (sizeChanged) o.peer.sendControl({ t: "datagram-size", maxDatagramSize: g.datagramSize });
      o.peer.sendControl({ t: "peer-joined", member });
    }
    this.emit("joined", g, { terminalId: member.terminalId, jti: claims.jti });
    this.log("member joined", { groupId: g.id, slot: member.slot, sdk: req.sdk, resumed: !!use });
    const present = new Set(g.live.map((x) => x.member.terminalId));
    if (g.members.every((x) => present.has(x.terminalId))) {
      const members = g.liveMembers();
      for (const o of g.live) o.peer.sendControl({ t: "connected", members });
      this.emit("connected", g, {});
      g.connectedOnce = true;
    }
    return { ok: true, membership: m };
  }

  // --- session life -----------------------------------------------------------------

  /** The session ended by itself (bye, transport closed). Idempotent. */
  leave(m: Membership, reason: string): void {
    if (!m.active) return;
    m.active = false;
    const g = m.group;
    const i = g.live.indexOf(m);
    if (i >= 0) g.live.splice(i, 1);
    this.sessions--;
    const use = g.tokens.get(m.jti);
    if (use?.live === m) use.live = undefined;
    this.addTotals(m.counters);
    if (g.ended) return;
    const sizeChanged = this.recomputeDatagramSize(g);
    for (const o of g.live) {
      o.policy.reset(m.slot);
      o.peer.sendControl({ t: "peer-left", member: m.member, reason });
      if (sizeChanged) o.peer.sendControl({ t: "datagram-size", maxDatagramSize: g.datagramSize });
    }
    this.emit("left", g, { terminalId: m.member.terminalId, jti: m.jti, reason });
    this.log("member left", { groupId: g.id, slot: m.slot, reason });
  }

  /** Tells the terminal why with an `error` message, closes it and lets the others know. */
  refuse(m: Membership, reason: CloseReason): void {
    if (!m.active) return;
    m.peer.sendControl({ t: "error", code: reason, message: CLOSE_MESSAGES[reason] });
    this.leave(m, reason);
    m.peer.close(reason);
  }

  /** A control message from an admitted terminal (join was handled before). */
  onControl(m: Membership, msg: TerminalMessage): void {
    if (!m.active) return;
    m.lastSeen = this.now();
    const g = m.group;
    switch (msg.t) {
      case "ping":
        m.peer.sendControl({ t: "pong", n: msg.n, ts: msg.ts });
        return;
      case "bye":
        this.leave(m, msg.reason ?? "bye");
        m.peer.close("normal");
        return;
      case "keyframe-request":
        this.askKeyframe(m, msg.track, msg.slot, msg.layer);
        return;
      case "receive-report":
        this.onReceiveReport(m, msg);
        return;
      case "nack":
        // Only to the publisher named; the retransmission comes back as reliable objects.
        for (const o of g.live) {
          if (o !== m && o.slot === msg.slot) o.peer.sendControl({ t: "nack", track: msg.track, sequences: msg.sequences, slot: m.slot, ...(msg.layer ? { layer: msg.layer } : {}), ...(msg.parts ? { parts: msg.parts } : {}) });
        }
        return;
      case "stats": {
        const loss = msg.report.loss;
        if (typeof loss === "number" && loss >= 0 && loss <= 1) m.reportedLoss = loss;
        for (const o of g.live) if (o !== m) o.peer.sendControl({ t: "peer-stats", from: m.slot, report: msg.report });
        return;
      }
      case "signal":
        for (const o of g.live) {
          if (o === m || (msg.to !== undefined && o.slot !== msg.to)) continue;
          o.peer.sendControl({ t: "signal", kind: msg.kind, body: msg.body, from: m.slot });
        }
        return;
      case "join":
        this.refuse(m, "protocolError");
        return;
    }
  }

  /**
   * Asks publishers (one slot, or all but `m`) for a keyframe; coalesced per publisher, track
   * and layer. Without a layer, a simulcast publisher is asked for the layer `m` gets (or is
   * switching to); `m` standing for a node (cascade) asks for every layer.
   */
  askKeyframe(m: Membership, track: number, slot?: number, layer?: number): void {
    const now = this.now();
    const g = m.group;
    for (const o of g.live) {
      if (o === m || (slot !== undefined && o.slot !== slot)) continue;
      const l = layer ?? (track === Track.video ? m.policy?.keyframeLayer(o.slot) : undefined);
      const key = ((l === undefined ? 0 : l + 1) << 16) | (o.slot << 8) | track;
      const last = g.keyframeAsked.get(key);
      if (last !== undefined && now - last < this.limits.keyframeRequestSpacingMs) continue; // coalesced
      g.keyframeAsked.set(key, now);
      o.peer.sendControl(l === undefined ? { t: "keyframe-request", track, slot: m.slot } : { t: "keyframe-request", track, slot: m.slot, layer: l });
    }
  }

  /**
   * A subscriber's feedback about one publisher: updates that path's estimate, tells the
   * publisher how it is received and what to aim at (the lowest estimate among its
   * subscribers: one encoding serves them all), and tells the subscriber what it receives.
   */
  private onReceiveReport(m: Membership, r: Extract<TerminalMessage, { t: "receive-report" }>): void {
    const g = m.group;
    const pub = g.live.find((o) => o !== m && o.slot === r.slot);
    if (r.rttMs !== undefined) m.rttMs = r.rttMs;
    m.reportedLoss = r.loss;
    if (!pub) return;
    const estimate = Math.round(m.policy.onReport(r));
    const path = m.policy.path(r.slot);
    const dropped = path.dropped;
    path.dropped = 0;
    let target = Infinity;
    for (const o of g.live) {
      if (o === pub) continue;
      const p = o.policy.paths.get(pub.slot);
      if (p && p.reports > 0) target = Math.min(target, p.estimateKbps);
    }
    const kbps = Math.round((r.bytes * 8) / Math.max(1, r.intervalMs));
    const common = { estimateKbps: estimate, kbps, loss: r.loss, delayMs: r.delayMs, dropped };
    const uplinkKbps = this.uplinkEstimate(pub);
    const layer = path.simulcast ? { layer: path.layer } : {};
    pub.peer.sendControl({
      t: "quality", slot: m.slot, direction: "send", ...common, targetKbps: Math.round(target), rttMs: m.rttMs,
      ...(uplinkKbps === undefined ? {} : { uplinkKbps }), ...layer,
    });
    m.peer.sendControl({ t: "quality", slot: pub.slot, direction: "receive", ...common, rttMs: pub.rttMs, ...layer });
  }

  /** The node's estimate of a member's uplink, kbit/s (undefined until two intervals were seen). */
  private uplinkEstimate(pub: Membership): number | undefined {
    const u = pub.uplink;
    const now = this.now();
    if (u.meter && now - u.at >= 250) {
      const r = u.meter.report(now);
      u.at = now;
      u.estimator.update({ intervalMs: r.intervalMs, bytes: r.bytes, loss: r.loss, delayMs: r.delayMs });
      u.reports++;
    }
    return u.reports >= 2 ? Math.round(u.estimator.estimateKbps) : undefined;
  }

  // --- forwarding (hot path) ----------------------------------------------------------

  /**
   * One datagram from a member: checked by peeking at its header, stamped with the
   * publisher's slot in place, handed to every other live member. No allocation.
   */
  forwardDatagram(m: Membership, d: Uint8Array): void {
    if (!m.active) return;
    const c = m.counters;
    c.datagramsIn++;
    c.bytesIn += d.length;
    const g = m.group;
    if (d.length > m.peer.maxDatagramSize) {
      c.oversized++;
      this.malformed(m);
      return;
    }
    const track = peekTrack(d);
    if (track < 0 || track > this.limits.maxTrack) {
      c.malformed++;
      this.malformed(m);
      return;
    }
    if (!this.take(m, d.length)) return;
    this.meterUplink(m, d, track);
    d[3] = m.member.slot;
    const live = g.live;
    const count = (d[10]! << 8) | d[11]!;
    // The whole frame's size, from this fragment (only the last one may be shorter).
    const index = (d[8]! << 8) | d[9]!;
    const frameBytes = count > 1 && index < count - 1 ? count * d.length : count > 1 ? (count - 1) * g.datagramSize + d.length : d.length;
    for (let i = 0; i < live.length; i++) {
      const o = live[i]!;
      if (o === m) continue;
      if (o.policy.decide(m.slot, d, frameBytes, this.clock) === "drop") continue;
      if (d.length > o.peer.maxDatagramSize || !o.peer.sendDatagram(d)) {
        o.counters.queueDropped++;
        continue;
      }
      o.counters.datagramsOut++;
      o.counters.bytesOut += d.length;
      if (track === Track.video) this.pad(o, m.slot, d);
    }
  }

  /** One reliable object (header + payload) from a member's media stream. */
  forwardObject(m: Membership, obj: Uint8Array): void {
    if (!m.active) return;
    const c = m.counters;
    c.objectsIn++;
    c.bytesIn += obj.length;
    if (obj.length > this.limits.maxObjectBytes) {
      c.oversized++;
      this.malformed(m);
      return;
    }
    const track = peekTrack(obj);
    // A reliable object is always whole: fragment 0 of 1.
    if (track < 0 || track > this.limits.maxTrack || obj[10] !== 0 || obj[11] !== 1) {
      c.malformed++;
      this.malformed(m);
      return;
    }
    obj[3] = m.member.slot;
    for (const o of m.group.live) {
      if (o === m) continue;
      if (o.policy.decide(m.slot, obj, obj.length, this.clock) === "drop") continue;
      if (!o.peer.sendObject(obj)) {
        o.counters.queueDropped++;
        continue;
      }
      o.counters.objectsOut++;
      o.counters.bytesOut += obj.length;
    }
  }

  /** A member sent something that belongs to no group it is in (e.g. before join). */
  outOfGroup(m: Membership | undefined): void {
    if (m) m.counters.outOfGroup++;
    else this.totals.outOfGroup++;
  }

  // --- timers -------------------------------------------------------------------------

  /** Called every ~50 ms–1 s: keep-alive, group expiry, tombstone pruning, coarse clock. */
  tick(): void {
    const now = (this.clock = this.now());
    const deadline = this.limits.pingIntervalMs * 5;
    for (const g of [...this.groups.values()]) {
      if (g.spec.expiresAt <= now) {
        this.closeGroup(g.id, "consultationEnded");
        continue;
      }
      for (const m of [...g.live]) {
        if (now - m.lastSeen > deadline) this.refuse(m, "timeout");
        // Re-check revocation on the timer too, should a revocation have raced an admission.
        else if (g.revokedJtis.has(m.jti) || g.revokedTerminals.has(m.member.terminalId)) this.refuse(m, "revoked");
      }
    }
    for (const [id, t] of this.tombstones) if (now - t.at > this.limits.tombstoneMs) this.tombstones.delete(id);
  }

  /** Node-wide counters: totals of departed sessions plus the live ones. */
  snapshot(): Counters {
    const out = Object.assign(new Counters(), this.totals);
    for (const g of this.groups.values()) for (const m of g.live) addInto(out, m.counters);
    return out;
  }

  /** Mean loss the live terminals report receiving, 0..1. */
  lossRate(): number {
    const live = this.liveMemberships();
    return live.length ? live.reduce((s, m) => s + m.reportedLoss, 0) / live.length : 0;
  }

  liveMemberships(): Membership[] {
    return [...this.groups.values()].flatMap((g) => g.live);
  }

  // --- internals ----------------------------------------------------------------------

  private take(m: Membership, bytes: number): boolean {
    const now = this.clock;
    const dt = now - m.refillAt;
    if (dt > 0) {
      m.tokens = Math.min(m.datagramRate, m.tokens + (dt * m.datagramRate) / 1000);
      m.byteTokens = Math.min(m.byteRate, m.byteTokens + (dt * m.byteRate) / 1000);
      m.refillAt = now;
    }
    if (now - m.windowStart >= 1000) {
      m.windowStart = now;
      m.windowDrops = 0;
      m.windowMalformed = 0;
    }
    if (m.tokens >= 1 && m.byteTokens >= bytes) {
      m.tokens -= 1;
      m.byteTokens -= bytes;
      return true;
    }
    m.counters.rateDropped++;
    if (++m.windowDrops > this.limits.abuseDropsPerSec) {
      this.log("session over its datagram limit", { groupId: m.group.id, slot: m.slot });
      this.refuse(m, "limitExceeded");
    }
    return false;
  }

  /** A path being probed (SubscriberPolicy) gets copies of what it is sent, flagged padding. Rare: allocates. */
  private pad(o: Membership, publisher: number, d: Uint8Array): void {
    const n = o.policy.padding(publisher, d.length);
    for (let i = 0; i < n; i++) {
      const copy = d.slice();
      copy[1] = copy[1]! | Flag.padding;
      if (!o.peer.sendDatagram(copy)) break;
      o.counters.datagramsOut++;
      o.counters.bytesOut += copy.length;
    }
  }

  /** Feeds the member's uplink meter (loss per layer's sequence space, queueing delay). */
  private meterUplink(m: Membership, d: Uint8Array, track: number): void {
    const u = m.uplink;
    const now = this.now();
    if (!u.meter) {
      u.meter = new ReceiveMeter(now);
      u.at = now;
    }
    const flags = d[1]!;
    const seq = ((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0;
    for (let i = 0; i < 8; i++) F64_BYTES[7 - i] = d[12 + i]!; // big-endian f64, without a DataView per datagram
    u.meter.onDatagram(
      track | (layerOf(flags) << 8), seq, (d[10]! << 8) | d[11]!, d.length, F64[0]!, now,
      (d[8]! << 8) | d[9]!, (flags & (Flag.retransmission | Flag.parity)) !== 0,
    );
  }

  private malformed(m: Membership): void {
    if (this.clock - m.windowStart >= 1000) {
      m.windowStart = this.clock;
      m.windowDrops = 0;
      m.windowMalformed = 0;
    }
    if (++m.windowMalformed > this.limits.abuseMalformedPerSec) {
      this.log("session sent too many malformed objects", { groupId: m.group.id, slot: m.slot });
      this.refuse(m, "protocolError");
    }
  }

  /**
   * A member's transport now takes smaller datagrams (QUIC lowers its path MTU after heavy
   * loss): the group's size follows, and every member is told, so senders fragment to fit.
   */
  datagramSizeChanged(m: Membership): void {
    if (!m.active) return;
    if (!this.recomputeDatagramSize(m.group)) return;
    for (const o of m.group.live) o.peer.sendControl({ t: "datagram-size", maxDatagramSize: m.group.datagramSize });
  }

  private recomputeDatagramSize(g: Group): boolean {
    let size = 0;
    for (const m of g.live) size = size === 0 ? m.peer.maxDatagramSize : Math.min(size, m.peer.maxDatagramSize);
    if (size === 0 || size === g.datagramSize) return false;
    const changed = g.datagramSize !== 0;
    g.datagramSize = size;
    return changed;
  }

  private addTotals(c: Counters): void {
    addInto(this.totals, c);
  }

  private emit(type: RelayEventType, g: Group, extra: Partial<RelayEvent>): void {
    this.onEvent({ type, consultationId: g.spec.consultationId, groupId: g.id, at: this.now(), ...extra });
  }
}

function addInto(a: Counters, b: Counters): void {
  for (const k of Object.keys(b) as (keyof Counters)[]) a[k] += b[k];
}

const F64 = new Float64Array(1);
const F64_BYTES = new Uint8Array(F64.buffer);

/** Smallest datagram that can carry media: header plus a little payload. */
export const MIN_DATAGRAM_SIZE = HEADER_BYTES + 64;
