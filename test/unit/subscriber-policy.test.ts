// The per-subscriber forwarding policy and delivery queue (media/relay/subscriber.ts), alone
// and inside the relay core with fake peers: whole frames only, dependent frames after a
// keyframe only, audio always and first, deadlines, skip notices, keyframe requests coalesced,
// quality reports to both members. No network.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { SubscriberPolicy } from "../../media/relay/subscriber.ts";
import { DeliveryQueue } from "../../media/relay/delivery-queue.ts";
import { Relay, type GroupSpec, type RelayPeer } from "../../media/relay/relay.ts";
import type { NodeMessage } from "../../src/protocol/control.ts";
import type { CloseReason } from "../../src/protocol/codes.ts";
import { Flag, fragmentFrame, readHeader } from "../../src/protocol/media.ts";
import { DEFAULT_GROUP_ATTRIBUTES } from "../../src/types.ts";

const frame = (track: number, seq: number, size: number, flags = 0, source = 1) =>
  fragmentFrame({ flags, track, source, sequence: seq, timestamp: 1 }, new Uint8Array(size), 1200);

function policy() {
  const skips: [number, number, number, boolean][] = [];
  const keyframes: [number, number][] = [];
  const p = new SubscriberPolicy({
    skip: (pub, track, seq, disc) => skips.push([pub, track, seq, disc]),
    needKeyframe: (pub, track) => keyframes.push([pub, track]),
  });
  return { p, skips, keyframes };
}

/** Reports a path of `kbps` with no loss and no queue, enough times for the estimate to settle there. */
function settle(p: SubscriberPolicy, kbps: number) {
  for (let i = 0; i < 30; i++) p.onReport({ t: "receive-report", slot: 1, intervalMs: 250, bytes: (kbps * 250) / 8, loss: 0, delayMs: 100 });
}

test("before any report everything is forwarded; audio always", () => {
  const { p, skips } = policy();
  for (let seq = 0; seq < 50; seq++) {
    for (const d of frame(1, seq, 20_000, seq % 2 ? Flag.discardable : 0)) assert.is(p.decide(1, d, 20_000, seq * 33), "forward");
  }
  settle(p, 200);
  for (let seq = 0; seq < 50; seq++) assert.is(p.decide(1, frame(0, seq, 100)[0]!, 100, 2000 + seq * 20), "forward");
  assert.equal(skips, []);
});

test("over budget: discardable frames dropped whole (and announced), dependent frames kept, keyframes always", () => {
  const { p, skips, keyframes } = policy();
  settle(p, 300); // estimate ≈ 255 kbit/s ⇒ ~37 kB/s with headroom
  const verdicts = new Map<number, string[]>();
  let now = 10_000;
  for (let seq = 0; seq < 60; seq++, now += 33) {
    const flags = seq === 0 ? Flag.keyframe : seq % 2 ? Flag.discardable : 0;
    const size = seq === 0 ? 20_000 : 3_000; // ≈ 720 kbit/s offered
    const v = frame(1, seq, size, flags).map((d) => p.decide(1, d, size, now));
    verdicts.set(seq, v);
    assert.ok(v.every((x) => x === v[0]), `frame ${seq} split: ${v}`);
  }
  assert.equal(verdicts.get(0)![0], "forward");
  const even = [...verdicts].filter(([s]) => s % 2 === 0).map(([, v]) => v[0]);
  const odd = [...verdicts].filter(([s]) => s % 2 === 1).map(([, v]) => v[0]);
  assert.ok(even.every((v) => v === "forward"), "dependent frames stay while the debt is bounded");
  const droppedOdd = odd.filter((v) => v === "drop").length;
  assert.ok(droppedOdd >= 10, `discardable frames dropped: ${droppedOdd}`);
  assert.is(skips.length, droppedOdd);
  assert.ok(skips.every(([pub, track, seq, disc]) => pub === 1 && track === 1 && seq % 2 === 1 && disc));
  assert.equal(keyframes, []);
  // A retransmission of a dropped frame follows the decision.
  const dropped = skips[0]![2];
  assert.is(p.decide(1, frame(1, dropped, 2000, Flag.discardable)[0]!, 2000, now), "drop");
});

test("hopelessly over budget: the dependent chain stops, a keyframe is asked for, the next keyframe restarts it", () => {
  const { p, skips, keyframes } = policy();
  settle(p, 100);
  let now = 10_000;
  const v: string[] = [];
  for (let seq = 0; seq < 20; seq++, now += 33) v.push(p.decide(1, frame(1, seq, 8000)[0]!, 8000, now));
  const firstDrop = v.indexOf("drop");
  assert.ok(firstDrop > 0, "some dependent frames pass before the debt is too deep");
  assert.ok(v.slice(firstDrop).every((x) => x === "drop"), "nothing dependent after the chain broke");
  assert.ok(keyframes.length >= 1 && keyframes.every(([pub, t]) => pub === 1 && t === 1));
  assert.ok(skips.every(([, , , disc]) => !disc));
  assert.is(p.decide(1, frame(1, 20, 8000, Flag.keyframe)[0]!, 8000, now + 5000), "forward");
  assert.is(p.decide(1, frame(1, 21, 500)[0]!, 500, now + 5033), "forward");
});

test("a frame cut by the queue deadline: the rest of it is dropped, dependents wait for a keyframe", () => {
  const { p, skips, keyframes } = policy();
  const [d0, d1] = frame(1, 5, 2000);
  assert.is(p.decide(1, d0!, 2000, 0), "forward");
  p.dropped(1, d0!);
  assert.is(p.decide(1, d1!, 2000, 1), "drop");
  assert.equal(skips, [[1, 1, 5, false]]);
  assert.equal(keyframes, [[1, 1]]);
  assert.is(p.decide(1, frame(1, 6, 500)[0]!, 500, 2), "drop");
  p.dropped(1, frame(0, 9, 100)[0]!); // audio: nothing to do
  assert.is(skips.length, 2);
});

test("delivery queue: audio first, deadlines, whole frames cut, bounded", () => {
  const expired: Uint8Array[] = [];
  const q = new DeliveryQueue((d) => expired.push(d), { maxItems: 8, audioDeadlineMs: 100, videoDeadlineMs: 200 });
  const v = frame(1, 1, 3000); // 3 fragments
  for (const d of v) assert.ok(q.push(d, 0));
  const a = frame(0, 1, 100)[0]!;
  assert.ok(q.push(a, 10));
  assert.is(q.shift(20), a, "audio overtakes queued video");
  assert.is(q.shift(20), v[0]);
  // The rest of the frame is now past its deadline: both fragments go, one notice.
  assert.is(q.shift(500), undefined);
  assert.is(expired.length, 1);
  assert.is(readHeader(expired[0]!).sequence, 1);
  assert.is(q.expired, 2);
  for (let i = 0; i < 8; i++) assert.ok(q.push(frame(1, 10 + i, 100)[0]!, 600));
  assert.not.ok(q.push(frame(1, 30, 100)[0]!, 600), "full");
  assert.is(q.full, 1);
  assert.is(q.size, 8);
  const late = frame(0, 2, 100)[0]!;
  q.push(late, 600); // refused, queue full
  let n = 0;
  while (q.shift(650)) n++;
  assert.is(n, 8);
});

class FakePeer implements RelayPeer {
  control: NodeMessage[] = [];
  datagrams: Uint8Array[] = [];
  objects: Uint8Array[] = [];
  closed?: CloseReason;
  constructor(readonly maxDatagramSize = 1200) {}
  sendControl(msg: NodeMessage) { this.control.push(msg); }
  sendDatagram(b: Uint8Array) { this.datagrams.push(b.slice()); return true; }
  sendObject(b: Uint8Array) { this.objects.push(b.slice()); return true; }
  close(reason: CloseReason) { this.closed = reason; }
  of<T extends NodeMessage["t"]>(t: T) { return this.control.filter((m) => m.t === t) as Extract<NodeMessage, { t: T }>[]; }
}

function group() {
  let now = 1_000_000;
  const relay = new Relay({ now: () => now, limits: { keyframeRequestSpacingMs: 300 } });
  const spec: GroupSpec = {
    groupId: "g", consultationId: "c", clinicId: "cl", attributes: { ...DEFAULT_GROUP_ATTRIBUTES },
    members: [{ terminalId: "a", role: "requester" }, { terminalId: "b", role: "consultant" }], expiresAt: now + 3600_000,
  };
  relay.reserve(spec);
  const pa = new FakePeer();
  const pb = new FakePeer();
  const join = (i: 0 | 1, peer: FakePeer) => {
    const r = relay.admit({ claims: { sub: spec.members[i]!.terminalId, role: spec.members[i]!.role, jti: `j${i}`, cid: "c", gid: "g", exp: 2e9 }, peer });
    if (!r.ok) throw new Error(r.reason);
    return r.membership;
  };
  const a = join(0, pa);
  const b = join(1, pb);
  return { relay, a, b, pa, pb, advance: (ms: number) => { now += ms; relay.tick(); } };
}

test("relay: a receive report gives the publisher its target and both members a quality report", () => {
  const { relay, a, b, pa, pb } = group();
  relay.onControl(a, { t: "receive-report", slot: b.slot, intervalMs: 500, bytes: 62_500, loss: 0.03, delayMs: 4, jitterMs: 1, rttMs: 12 });
  relay.onControl(b, { t: "receive-report", slot: a.slot, intervalMs: 500, bytes: 62_500, loss: 0.03, delayMs: 4, rttMs: 30 });
  const toB = pb.of("quality");
  const toA = pa.of("quality");
  const send = toB.find((q) => q.direction === "send")!;
  assert.is(send.slot, a.slot);
  assert.is(send.kbps, 1000);
  assert.is(send.loss, 0.03);
  assert.ok(send.targetKbps! > 0 && send.targetKbps === send.estimateKbps);
  assert.is(send.rttMs, 12, "the subscriber's RTT");
  const recv = toA.find((q) => q.direction === "receive")!;
  assert.is(recv.slot, b.slot);
  assert.is(recv.kbps, 1000);
  const recvB = toB.find((q) => q.direction === "receive")!;
  assert.is(recvB.rttMs, 12, "the publisher's RTT, for the subscriber's reorder window");
  // A report about someone absent changes nothing for the others.
  const before = pa.control.length + pb.control.length;
  relay.onControl(a, { t: "receive-report", slot: 9, intervalMs: 500, bytes: 1, loss: 0, delayMs: 0 });
  assert.is(pa.control.length + pb.control.length, before);
});

test("relay: skips reach the subscriber, keyframe requests reach the publisher coalesced, datagrams whole", () => {
  const { relay, a, b, pa, pb, advance } = group();
  // b's path from a is thin.
  for (let i = 0; i < 30; i++) relay.onControl(b, { t: "receive-report", slot: a.slot, intervalMs: 250, bytes: 3125, loss: 0, delayMs: 100 });
  let seq = 0;
  const send = (size: number, flags: number) => { for (const d of frame(1, seq, size, flags, 0)) relay.forwardDatagram(a, d); seq++; };
  send(6000, Flag.keyframe);
  for (let i = 0; i < 30; i++) {
    advance(33);
    send(3000, i % 2 ? Flag.discardable : 0);
  }
  const skips = pb.of("skip");
  assert.ok(skips.length > 0, "something was dropped for b");
  const skipped = new Set(skips.flatMap((s) => s.sequences));
  // Every frame is either entirely there or entirely absent, and absent ones were announced.
  const bySeq = new Map<number, number>();
  for (const d of pb.datagrams) { const h = readHeader(d); if (h.track === 1) bySeq.set(h.sequence, (bySeq.get(h.sequence) ?? 0) + 1); }
  for (let s = 0; s < seq; s++) {
    const want = s === 0 ? 6 : 3;
    const got = bySeq.get(s) ?? 0;
    assert.ok(got === 0 || got === want, `frame ${s}: ${got}/${want} fragments`);
    assert.is(got === 0, skipped.has(s), `frame ${s} absent iff skipped`);
  }
  const kf = pa.of("keyframe-request");
  assert.ok(kf.length >= 1, "the publisher is asked for a keyframe once the chain broke");
  assert.ok(kf.length <= Math.ceil((30 * 33) / 300) + 1, `coalesced: ${kf.length}`);
  assert.ok(kf.every((k) => k.slot === b.slot && k.track === 1));
  // Audio is never dropped.
  const audioBefore = pb.datagrams.length;
  for (let i = 0; i < 20; i++) relay.forwardDatagram(a, frame(0, i, 120, 0, 0)[0]!);
  assert.is(pb.datagrams.length - audioBefore, 20);
  // When a leaves and comes back, b's path state starts afresh (sequences restart).
  relay.leave(a, "bye");
  assert.is(b.policy.paths.has(a.slot), false);
});

test.run();
