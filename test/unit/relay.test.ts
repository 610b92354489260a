// The relay core without any network: fake peers record what the relay hands them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Relay, type GroupSpec, type RelayEvent, type RelayPeer, type AdmitRequest } from "../../media/relay/relay.ts";
import type { NodeMessage } from "../../src/protocol/control.ts";
import type { CloseReason } from "../../src/protocol/codes.ts";
import { encodeObject, fragmentFrame, HEADER_BYTES } from "../../src/protocol/media.ts";
import { DEFAULT_GROUP_ATTRIBUTES } from "../../src/types.ts";

class FakePeer implements RelayPeer {
  control: NodeMessage[] = [];
  datagrams: Uint8Array[] = [];
  objects: Uint8Array[] = [];
  closed?: CloseReason;
  accept = true;
  constructor(readonly maxDatagramSize = 1200) {}
  sendControl(msg: NodeMessage) { this.control.push(msg); }
  sendDatagram(b: Uint8Array) { if (!this.accept) return false; this.datagrams.push(b.slice()); return true; }
  sendObject(b: Uint8Array) { this.objects.push(b.slice()); return true; }
  close(reason: CloseReason) { this.closed = reason; }
  types() { return this.control.map((m) => m.t); }
  last<T extends NodeMessage["t"]>(t: T) { return [...this.control].reverse().find((m) => m.t === t) as Extract<NodeMessage, { t: T }> | undefined; }
}

function setup(limits = {}) {
  let now = 1_000_000;
  const events: RelayEvent[] = [];
  const relay = new Relay({ limits, onEvent: (e) => events.push(e), now: () => now });
  const spec: GroupSpec = {
    groupId: "grp_1", consultationId: "cns_1", clinicId: "cln_1", attributes: { ...DEFAULT_GROUP_ATTRIBUTES },
    members: [{ terminalId: "trm_a", role: "requester" }, { terminalId: "trm_b", role: "consultant" }],
    expiresAt: now + 3600_000,
  };
  assert.is(relay.reserve(spec), "created");
  const claims = (i: 0 | 1, over: Partial<AdmitRequest["claims"]> = {}) => ({
    sub: spec.members[i]!.terminalId, role: spec.members[i]!.role, jti: `jti_${i}`, cid: "cns_1", gid: "grp_1", exp: 2e9, ...over,
  });
  const join = (i: 0 | 1, peer = new FakePeer(), over: Partial<AdmitRequest["claims"]> = {}, resume?: string) => {
    const r = relay.admit({ claims: claims(i, over), peer, resume });
    return { r, peer, m: r.ok ? r.membership : undefined };
  };
  return { relay, spec, events, join, advance: (ms: number) => { now += ms; relay.tick(); } };
}

const frameOf = (track: number, size: number, seq = 0) =>
  fragmentFrame({ flags: 0, track, source: 0, sequence: seq, timestamp: 1 }, new Uint8Array(size).fill(7), 1200);

test("reserve: created, the same again, another consultation, full, draining", () => {
  const { relay, spec } = setup({ maxGroups: 2 });
  assert.is(relay.reserve(spec), "exists");
  assert.is(relay.reserve({ ...spec, consultationId: "cns_other" }), "conflict");
  assert.is(relay.reserve({ ...spec, groupId: "grp_2" }), "created");
  assert.is(relay.reserve({ ...spec, groupId: "grp_3" }), "node_full");
  relay.draining = true;
  relay.closeGroup("grp_2");
  assert.is(relay.reserve({ ...spec, groupId: "grp_4" }), "node_draining");
});

test("a group the edge moved away may come back; an ended one may not", () => {
  const { relay, spec, join } = setup();
  relay.closeGroup("grp_1", "nodeDraining");
  const old = join(0);
  assert.not.ok(old.r.ok);
  assert.is(!old.r.ok && old.r.reason, "nodeDraining", "a terminal with a token for the old placement is sent to ask the edge");
  assert.is(relay.reserve({ ...spec, consultationId: "cns_other" }), "conflict", "still not another consultation's");
  assert.is(relay.reserve(spec), "created", "the same consultation placed here again");
  assert.ok(join(0).r.ok);
  relay.closeGroup("grp_1", "consultationEnded");
  assert.is(relay.reserve(spec), "conflict");
  const late = join(1);
  assert.is(!late.r.ok && late.r.reason, "consultationEnded");
});

test("admission: welcome with slot, then connected to both and events for the edge", () => {
  const { join, events } = setup();
  const a = join(0);
  assert.ok(a.r.ok);
  const w = a.peer.last("welcome")!;
  assert.is(w.self.slot, 1);
  assert.is(w.maxDatagramSize, 1200);
  assert.ok(w.resume && w.resume.length > 20);
  assert.not.ok(a.peer.types().includes("connected"));
  const b = join(1, new FakePeer(1100));
  assert.ok(b.r.ok);
  assert.is(b.peer.last("welcome")!.self.slot, 2);
  assert.is(b.peer.last("welcome")!.maxDatagramSize, 1100, "the group uses the smallest datagram size");
  assert.equal(a.peer.last("datagram-size"), { t: "datagram-size", maxDatagramSize: 1100 });
  assert.is(a.peer.last("peer-joined")!.member.slot, 2);
  assert.is(a.peer.last("connected")!.members.length, 2);
  assert.is(b.peer.last("connected")!.members.length, 2);
  assert.equal(events.map((e) => e.type), ["joined", "joined", "connected"]);
  assert.ok(events.every((e) => e.consultationId === "cns_1" && e.groupId === "grp_1"));
});

test("admission refusals carry the right reason", () => {
  const { relay, join } = setup();
  assert.equal(join(0, undefined, { gid: "grp_x" }).r, { ok: false, reason: "groupUnknown", message: "This consultation is not hosted on this media node." });
  assert.is((join(0, undefined, { cid: "cns_other" }).r as any).reason, "groupUnknown");
  assert.is((join(0, undefined, { sub: "trm_stranger" }).r as any).reason, "tokenInvalid");
  assert.is((join(0, undefined, { role: "consultant" }).r as any).reason, "tokenInvalid", "role must match the member's");
  assert.ok(join(0).r.ok);
  assert.is((join(0).r as any).reason, "tokenInUse", "the same jti while live");
  relay.revoke("grp_1", ["jti_revoked"]);
  assert.is((join(1, undefined, { jti: "jti_revoked" }).r as any).reason, "revoked");
  relay.closeGroup("grp_1");
  assert.is((join(1).r as any).reason, "consultationEnded", "an ended group is remembered");
});

test("group expiry, maxParticipants and node capacity", () => {
  const s = setup({ maxSessions: 1 });
  assert.ok(s.join(0).r.ok);
  assert.is((s.join(1).r as any).reason, "limitExceeded");
  const t = setup();
  t.relay.groups.get("grp_1")!.spec.attributes.maxParticipants = 1;
  assert.ok(t.join(0).r.ok);
  assert.is((t.join(1).r as any).reason, "groupFull");
  const u = setup();
  u.advance(3600_001);
  assert.is((u.join(0).r as any).reason, "consultationEnded");
});

test("a jti is single use; the resume secret lets it rejoin and replaces the old session", () => {
  const { relay, join } = setup();
  const a = join(0);
  const secret = a.peer.last("welcome")!.resume!;
  const b = join(1);
  relay.leave(a.m!, "disconnected");
  assert.is(b.peer.last("peer-left")!.reason, "disconnected");
  assert.is((join(0).r as any).reason, "tokenInUse", "no reuse without the secret");
  assert.is((join(0, undefined, {}, "rs_wrong").r as any).reason, "tokenInUse");
  const again = join(0, undefined, {}, secret);
  assert.ok(again.r.ok);
  assert.is(again.peer.last("welcome")!.resume, secret);
  // Resume while the first session still looks live (its connection died silently): it is replaced.
  const third = join(0, undefined, {}, secret);
  assert.ok(third.r.ok);
  assert.is(again.peer.closed, "replaced");
  assert.is(again.peer.last("error")!.code, "replaced");
  assert.is(relay.sessions, 2);
});

test("a new token for the same terminal replaces its live session", () => {
  const { join } = setup();
  const a = join(0);
  const a2 = join(0, undefined, { jti: "jti_fresh" });
  assert.ok(a2.r.ok);
  assert.is(a.peer.closed, "replaced");
});

test("datagrams: stamped with the publisher's slot, forwarded to the others only, intact", () => {
  const s = setup();
  const a = s.join(0);
  const b = s.join(1);
  const frags = frameOf(1, 5000, 9);
  for (const d of frags) s.relay.forwardDatagram(a.m!, d.slice());
  assert.is(b.peer.datagrams.length, frags.length);
  assert.is(a.peer.datagrams.length, 0, "never echoed to the sender");
  for (let i = 0; i < frags.length; i++) {
    const got = b.peer.datagrams[i]!;
    assert.is(got[3], 1, "source = slot of the publisher");
    assert.equal(got.subarray(4), frags[i]!.subarray(4));
  }
  assert.is(a.m!.counters.datagramsIn, frags.length);
  assert.is(b.m!.counters.datagramsOut, frags.length);
});

test("malformed, oversized and out-of-track datagrams are dropped and counted", () => {
  const s = setup();
  const a = s.join(0);
  const b = s.join(1);
  s.relay.forwardDatagram(a.m!, new Uint8Array(10));
  const badVersion = frameOf(0, 100)[0]!; badVersion[0] = 9;
  s.relay.forwardDatagram(a.m!, badVersion);
  s.relay.forwardDatagram(a.m!, new Uint8Array(1300));
  const highTrack = frameOf(200, 100)[0]!;
  s.relay.forwardDatagram(a.m!, highTrack);
  assert.is(b.peer.datagrams.length, 0);
  assert.is(a.m!.counters.malformed, 3);
  assert.is(a.m!.counters.oversized, 1);
  assert.is(a.peer.closed, undefined, "a few bad datagrams do not close the session");
});

test("a flood of malformed datagrams closes the session with protocolError", () => {
  const s = setup({ abuseMalformedPerSec: 50 });
  const a = s.join(0);
  s.join(1);
  for (let i = 0; i < 60; i++) s.relay.forwardDatagram(a.m!, new Uint8Array(5));
  assert.is(a.peer.closed, "protocolError");
  assert.is(a.peer.last("error")!.code, "protocolError");
});

test("datagram rate: over the bucket is dropped and counted; sustained abuse closes with limitExceeded", () => {
  const s = setup({ maxDatagramsPerSec: 100, abuseDropsPerSec: 50 });
  const a = s.join(0);
  const b = s.join(1);
  const d = frameOf(0, 100)[0]!;
  for (let i = 0; i < 100; i++) s.relay.forwardDatagram(a.m!, d.slice());
  assert.is(b.peer.datagrams.length, 100);
  for (let i = 0; i < 40; i++) s.relay.forwardDatagram(a.m!, d.slice());
  assert.is(a.m!.counters.rateDropped, 40);
  assert.is(a.peer.closed, undefined);
  s.advance(500); // refills 50
  for (let i = 0; i < 50; i++) s.relay.forwardDatagram(a.m!, d.slice());
  assert.is(b.peer.datagrams.length, 150);
  for (let i = 0; i < 60; i++) s.relay.forwardDatagram(a.m!, d.slice());
  assert.is(a.peer.closed, "limitExceeded");
  assert.is(b.peer.last("peer-left")!.reason, "limitExceeded");
});

test("a subscriber whose queue is full loses datagrams (counted), the others do not", () => {
  const s = setup();
  const a = s.join(0);
  const b = s.join(1);
  b.peer.accept = false;
  s.relay.forwardDatagram(a.m!, frameOf(0, 100)[0]!);
  assert.is(b.m!.counters.queueDropped, 1);
});

test("reliable objects: whole objects only, stamped and forwarded", () => {
  const s = setup();
  const a = s.join(0);
  const b = s.join(1);
  const obj = encodeObject({ flags: 2, track: 1, source: 0, sequence: 3, timestamp: 5 }, new Uint8Array(50_000).fill(3));
  s.relay.forwardObject(a.m!, obj);
  assert.is(b.peer.objects.length, 1);
  assert.is(b.peer.objects[0]![3], 1);
  assert.is(b.peer.objects[0]!.length, HEADER_BYTES + 50_000);
  const fragment = frameOf(1, 5000)[0]!; // fragment 0 of 5: not a whole object
  s.relay.forwardObject(a.m!, fragment);
  assert.is(b.peer.objects.length, 1);
  assert.is(a.m!.counters.malformed, 1);
});

test("control: ping → pong, keyframe requests routed and coalesced, stats → peer-stats, signal, bye", () => {
  const s = setup();
  const a = s.join(0);
  const b = s.join(1);
  s.relay.onControl(a.m!, { t: "ping", n: 4, ts: 1.5 });
  assert.equal(a.peer.last("pong"), { t: "pong", n: 4, ts: 1.5 });
  s.relay.onControl(b.m!, { t: "keyframe-request", track: 1, slot: 1 });
  s.relay.onControl(b.m!, { t: "keyframe-request", track: 1, slot: 1 });
  assert.equal(a.peer.control.filter((m) => m.t === "keyframe-request"), [{ t: "keyframe-request", track: 1, slot: 2 }], "coalesced");
  s.advance(150);
  s.relay.onControl(b.m!, { t: "keyframe-request", track: 1 });
  assert.is(a.peer.control.filter((m) => m.t === "keyframe-request").length, 2);
  assert.is(b.peer.control.filter((m) => m.t === "keyframe-request").length, 0, "never to the asker");
  s.relay.onControl(b.m!, { t: "nack", track: 1, sequences: [4, 5], slot: 1 });
  assert.equal(a.peer.last("nack"), { t: "nack", track: 1, sequences: [4, 5], slot: 2 }, "nack goes to the publisher named, with the asker's slot");
  assert.is(b.peer.control.filter((m) => m.t === "nack").length, 0);
  s.relay.onControl(a.m!, { t: "stats", report: { loss: 0.25, kbps: 900 } });
  assert.equal(b.peer.last("peer-stats"), { t: "peer-stats", from: 1, report: { loss: 0.25, kbps: 900 } });
  assert.is(s.relay.lossRate(), 0.125);
  s.relay.onControl(a.m!, { t: "signal", kind: "still-request", body: { w: 1 }, to: 2 });
  assert.equal(b.peer.last("signal"), { t: "signal", kind: "still-request", body: { w: 1 }, from: 1 });
  s.relay.onControl(a.m!, { t: "bye" });
  assert.is(a.peer.closed, "normal");
  assert.is(b.peer.last("peer-left")!.reason, "bye");
  assert.equal(s.events.map((e) => e.type).slice(-1), ["left"]);
});

test("keep-alive: a member silent for 5 ping intervals is dropped with timeout", () => {
  const s = setup({ pingIntervalMs: 100 });
  const a = s.join(0);
  const b = s.join(1);
  for (let i = 0; i < 6; i++) {
    s.advance(90);
    s.relay.onControl(b.m!, { t: "ping", n: i });
  }
  assert.is(a.peer.closed, "timeout");
  assert.is(a.peer.last("error")!.code, "timeout");
  assert.is(b.peer.closed, undefined);
});

test("closing a group sends ended to every member and closes them; revocation closes the matching session", () => {
  const s = setup();
  const a = s.join(0);
  const b = s.join(1);
  assert.is(s.relay.revoke("grp_1", [], ["trm_b"]), 1);
  assert.is(b.peer.closed, "revoked");
  assert.is(b.peer.last("error")!.code, "revoked");
  assert.is((s.join(1, undefined, { jti: "jti_new" }).r as any).reason, "revoked", "a revoked terminal cannot rejoin");
  assert.is(s.relay.closeGroup("grp_1"), 1);
  assert.equal(a.peer.last("ended"), { t: "ended", reason: "consultationEnded" });
  assert.is(a.peer.closed, "consultationEnded");
  assert.is(s.relay.sessions, 0);
  assert.is(s.relay.closeGroup("grp_1"), undefined);
  assert.is(s.events.at(-1)!.type, "group-closed");
});

test("node counters sum live and departed sessions", () => {
  const s = setup();
  const a = s.join(0);
  s.join(1);
  s.relay.forwardDatagram(a.m!, frameOf(0, 100)[0]!);
  s.relay.leave(a.m!, "bye");
  const c = s.relay.snapshot();
  assert.is(c.datagramsIn, 1);
  assert.is(c.datagramsOut, 1);
});

test.run();
