// TerminalSession's receive path without a network: a scripted stand-in for WebTransport (a
// mock, as Node 20 has no WebTransport) delivers datagrams and reliable objects in chosen
// orders, so reordering across the two paths, gap skipping and nack are checked exactly.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TerminalSession } from "../../src/terminal/session.ts";
import type { TerminalMessage } from "../../src/protocol/control.ts";
import { frame, FrameDecoder } from "../../src/protocol/framing.ts";
import { encodeObject, fragmentFrame } from "../../src/protocol/media.ts";
import { ScriptedNode } from "../support/scripted-node.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The node's side of one session, driven by the test. */
class FakeNode extends ScriptedNode {
  /** A frame from slot 2 as datagrams (or only some of its fragments). */
  datagramFrame(seq: number, size: number, only?: number[]) {
    const frags = fragmentFrame({ flags: 0, track: 1, source: 2, sequence: seq, timestamp: seq }, body(seq, size), 1200);
    frags.forEach((d, i) => { if (!only || only.includes(i)) this.datagrams.push(d); });
  }

  /** A keyframe from slot 2 as datagrams (only some fragments; `resent`: flagged as a retransmission). */
  keyframeDatagrams(seq: number, size: number, only: number[], resent = false) {
    const frags = fragmentFrame({ flags: 0x01 | (resent ? 0x08 : 0), track: 1, source: 2, sequence: seq, timestamp: seq }, body(seq, size), 1200);
    frags.forEach((d, i) => { if (only.includes(i)) this.datagrams.push(d); });
  }

  /** A frame from slot 2 as a reliable object. */
  objectFrame(seq: number, size: number) {
    this.pushObject(frame(encodeObject({ flags: 2, track: 1, source: 2, sequence: seq, timestamp: seq }, body(seq, size))));
  }
}

function body(seq: number, size: number) {
  return new Uint8Array(size).map((_, i) => (i * 7 + seq) & 0xff);
}

async function open(opts: { reorderMs?: number; nackDelayMs?: number } = {}) {
  const node = new FakeNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "a.b.c", WebTransport: node.WebTransport, ...opts });
  const got: number[] = [];
  s.on("frame", (f) => {
    assert.equal(f.payload, body(f.header.sequence, f.payload.length));
    got.push(f.header.sequence);
  });
  await sleep(5);
  return { node, s, got };
}

test("connect sends join with the token and resolves on welcome", async () => {
  const { node, s } = await open();
  const join = node.fromTerminal[0] as Extract<TerminalMessage, { t: "join" }>;
  assert.is(join.t, "join");
  assert.is(join.token, "a.b.c");
  assert.is(join.maxDatagramSize, 1200);
  assert.is(s.self.slot, 1);
  await s.leave();
  assert.ok(node.fromTerminal.some((m) => m.t === "bye"));
  assert.ok(node.closed);
});

test("an error instead of welcome rejects connect with its reason", async () => {
  const node = new FakeNode();
  const orig = node.send.bind(node);
  node.send = (m) => orig(m.t === "welcome" ? { t: "error", code: "groupFull", message: "full" } : m);
  try {
    await TerminalSession.connect({ url: "https://fake/v1/session", token: "x", WebTransport: node.WebTransport });
    assert.unreachable();
  } catch (err) {
    assert.is((err as { reason: string }).reason, "groupFull");
  }
});

test("a reliable frame overtaken by later datagram frames is still delivered first", async () => {
  const { node, s, got } = await open();
  node.datagramFrame(0, 500);
  await sleep(5);
  node.datagramFrame(2, 3000);
  node.datagramFrame(3, 100);
  await sleep(10);
  assert.equal(got, [0], "held behind the gap");
  node.objectFrame(1, 50_000);
  await sleep(10);
  assert.equal(got, [0, 1, 2, 3]);
  assert.is(s.counters.lost, 0);
  await s.leave();
});

test("when the first frame seen is not 0, earlier frames on the other path get a window to arrive", async () => {
  const { node, s, got } = await open({ reorderMs: 300 });
  node.datagramFrame(11, 100);
  await sleep(10);
  node.objectFrame(10, 100);
  await sleep(350);
  assert.equal(got, [10, 11]);
  await s.leave();
});

test("a gap is asked for with nack (again while it stays missing, at most 3 times), then skipped after the reorder window and counted lost", async () => {
  const { node, s, got } = await open({ reorderMs: 400, nackDelayMs: 10 });
  node.datagramFrame(0, 100);
  node.datagramFrame(1, 3000, [0, 2]); // fragment 1 of 3 lost
  node.datagramFrame(2, 100);
  node.datagramFrame(3, 100);
  await sleep(40);
  assert.equal(got, [0]);
  const nacks = node.fromTerminal.filter((m) => m.t === "nack");
  assert.ok(nacks.length >= 1 && nacks.length <= 3, `${nacks.length} nacks`);
  // Fragments 0 and 2 are here: only fragment 1 is asked for.
  for (const n of nacks) assert.equal(n, { t: "nack", track: 1, sequences: [1], slot: 2, parts: [[1]] });
  await sleep(450);
  assert.is(node.fromTerminal.filter((m) => m.t === "nack").length, 3, "3 asks in all");
  assert.equal(got, [0, 2, 3]);
  assert.is(s.counters.lost, 1);
  node.objectFrame(1, 3000); // too late now
  await sleep(10);
  assert.equal(got, [0, 2, 3]);
  assert.is(s.counters.late, 1);
  await s.leave();
});

test("a nack makes the sender re-send what it still holds: small frames as flagged datagrams ahead of new video, big ones as reliable objects", async () => {
  const node = new FakeNode();
  const written: Uint8Array[] = [];
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "t", WebTransport: node.WebTransport, maxDatagramFragments: 2 });
  (s as any).wt.createBidirectionalStream = async () => ({ readable: new ReadableStream(), writable: new WritableStream<Uint8Array>({ write: (c) => { written.push(c); } }) });
  const seqs = [0, 1, 2].map((i) => s.sendFrame(1, body(i, 2000)));
  const big = s.sendFrame(1, body(3, 3000), { reliable: false }); // 3 fragments > 2: kept, re-sent as an object
  await sleep(5);
  assert.ok(node.sentDatagrams.length >= 9, "sent as datagrams first");
  const before = node.sentDatagrams.length;
  node.send({ t: "nack", track: 1, sequences: [seqs[1]!, big, 99], slot: 2 });
  await sleep(20);
  const again = node.sentDatagrams.slice(before);
  assert.is(again.length, 2, "the 2 fragments of the small frame");
  for (const d of again) {
    assert.is(d[7], seqs[1]);
    assert.is(d[1]! & 0x08, 0x08, "flagged retransmission");
    assert.is(d[1]! & 0x02, 0, "not flagged reliable");
  }
  assert.equal(new Uint8Array([...again[0]!.subarray(20), ...again[1]!.subarray(20)]), body(1, 2000));
  assert.is(written.length, 1, "one object: the big frame");
  const [obj] = new FrameDecoder().push(written[0]!);
  assert.is(obj![7], big);
  assert.is(obj![1]! & 0x02, 0x02, "flagged reliable");
  assert.equal(obj!.subarray(20), body(3, 3000));
  assert.is(s.counters.retransmitted, 2);
  await s.leave();
});

test("a nack naming fragments gets only those again; asked again while that copy is still being paced, it is not sent twice", async () => {
  const node = new FakeNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "t", WebTransport: node.WebTransport, paceBytesPerSec: 20_000, fec: "off" });
  const key = s.sendFrame(1, body(0, 6000), { keyframe: true, reliable: false }); // 6 fragments
  await sleep(400); // paced out
  const before = node.sentDatagrams.length;
  assert.is(before, 6);
  node.send({ t: "nack", track: 1, sequences: [key], slot: 2, parts: [[2, 4]] });
  await sleep(5);
  node.send({ t: "nack", track: 1, sequences: [key], slot: 2, parts: [[2, 4]] }); // before the first copy left
  await sleep(300);
  const again = node.sentDatagrams.slice(before);
  assert.equal(again.map((d) => new DataView(d.buffer, d.byteOffset).getUint16(8)), [2, 4], "fragments 2 and 4, once");
  for (const d of again) assert.is(d[1]! & 0x08, 0x08, "flagged retransmission");
  assert.is(s.counters.retransmitted, 1);
  node.send({ t: "nack", track: 1, sequences: [key], slot: 2 }); // later, no parts: the whole frame
  await sleep(600);
  assert.is(node.sentDatagrams.length - before, 2 + 6);
  await s.leave();
});

test("a gap holding a partly received keyframe stays open past the reorder window until its repair completes", async () => {
  const { node, s, got } = await open({ reorderMs: 80, nackDelayMs: 10 });
  node.datagramFrame(0, 100);
  node.keyframeDatagrams(1, 4000, [0, 2, 3]); // 4 fragments, fragment 1 lost
  node.datagramFrame(2, 100);
  node.datagramFrame(3, 100);
  await sleep(250); // three reorder windows
  assert.equal(got, [0], "the frames behind the keyframe wait for it");
  assert.ok(node.fromTerminal.some((m) => m.t === "nack" && m.parts?.[0]?.[0] === 1), "fragment 1 asked for");
  node.keyframeDatagrams(1, 4000, [1], true);
  await sleep(10);
  assert.equal(got, [0, 1, 2, 3]);
  assert.is(s.counters.lost, 0);
  await s.leave();
});

test("a keyframe that is never repaired is given up after keyframeWaitMs", async () => {
  const node = new FakeNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "a.b.c", WebTransport: node.WebTransport, reorderMs: 50, nackDelayMs: 10, keyframeWaitMs: 300 });
  const got: number[] = [];
  s.on("frame", (f) => got.push(f.header.sequence));
  await sleep(5);
  node.datagramFrame(0, 100);
  node.keyframeDatagrams(1, 4000, [0, 2, 3]);
  node.datagramFrame(2, 100);
  await sleep(200);
  assert.equal(got, [0]);
  await sleep(250);
  assert.equal(got, [0, 2], "skipped after 300 ms");
  assert.is(s.counters.lost, 1);
  await s.leave();
});

test("frames over the fragment limit take the reliable stream", async () => {
  const node = new FakeNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "t", WebTransport: node.WebTransport, maxDatagramFragments: 4 });
  const objects: Uint8Array[] = [];
  (s as any).wt.createBidirectionalStream = async () => ({ readable: new ReadableStream(), writable: new WritableStream<Uint8Array>({ write: (c) => { objects.push(c); } }) });
  s.sendFrame(1, new Uint8Array(5 * 1180)); // 5 fragments > 4
  s.sendFrame(1, new Uint8Array(4 * 1180)); // 4 fragments: datagrams
  await sleep(5);
  assert.is(objects.length, 1);
  assert.is(node.sentDatagrams.length, 4);
  await s.leave();
});

test("datagrams are paced beyond a burst, and audio goes before video still queued", async () => {
  const node = new FakeNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "t", WebTransport: node.WebTransport, maxDatagramFragments: 100, paceBytesPerSec: 20_000 });
  s.sendFrame(1, new Uint8Array(60 * 1180)); // ~70 kB: far more than the burst, which scales with the pace (30 ms, at least 4 datagrams)
  await sleep(2);
  const first = node.sentDatagrams.length;
  assert.ok(first <= 5 && first >= 4, `burst ${first}`);
  s.sendFrame(0, new Uint8Array(100));
  await sleep(250); // ~5 kB of budget at this pace: the audio datagram and a few video ones

  const tracks = node.sentDatagrams.map((d) => d[2]);
  const audioAt = tracks.indexOf(0);
  assert.ok(audioAt >= 0, "audio sent");
  assert.ok(tracks.slice(audioAt + 1).includes(1), "video still queued was sent after the audio");
  assert.ok(node.sentDatagrams.length < 61, "the rest of the video is still being paced");
  await s.leave();
});

test("skip: frames the node announces it will not forward are passed over at once, never nacked", async () => {
  const { node, s, got } = await open({ reorderMs: 1000, nackDelayMs: 10 });
  const skips: number[] = [];
  s.on("skip", (k) => skips.push(...k.sequences));
  node.datagramFrame(0, 500);
  node.datagramFrame(1, 500);
  node.send({ t: "skip", slot: 2, track: 1, sequences: [2], discardable: true });
  await sleep(10);
  node.datagramFrame(3, 500);
  await sleep(60);
  assert.equal(got, [0, 1, 3], "3 delivered without waiting out the 1 s window");
  assert.equal(skips, [2]);
  assert.not.ok(node.fromTerminal.some((m) => m.t === "nack"), "a skipped frame is not asked for");
  // Announced after the frame after it arrived: the held frame goes on at once too.
  node.datagramFrame(5, 500);
  await sleep(5);
  node.send({ t: "skip", slot: 2, track: 1, sequences: [4], discardable: false });
  await sleep(20);
  assert.equal(got, [0, 1, 3, 5]);
  await s.leave();
});

test("a missing frame is asked for again when the re-sent copy is lost too (at most 3 times)", async () => {
  const { node, s, got } = await open({ reorderMs: 2000, nackDelayMs: 10 });
  node.datagramFrame(0, 500);
  node.datagramFrame(2, 500);
  await sleep(400);
  const asks = node.fromTerminal.filter((m) => m.t === "nack" && m.sequences.includes(1)).length;
  assert.is(asks, 3, `asked ${asks} times`);
  assert.equal(got, [0]);
  await s.leave();
});

test("receive reports go to the node per publisher; quality reports set the target, redundancy and timing", async () => {
  const node = new FakeNode({ members: [{ terminalId: "t1", role: "requester", slot: 1 }, { terminalId: "t2", role: "consultant", slot: 2 }] });
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "a.b.c", WebTransport: node.WebTransport, reportIntervalMs: 50 });
  await sleep(5);
  const initialWindow = s.reorderMs;
  for (let i = 0; i < 5; i++) node.datagramFrame(i, 3000);
  await sleep(120);
  const reports = node.fromTerminal.filter((m) => m.t === "receive-report");
  assert.ok(reports.length >= 1, "a report was sent");
  const r = reports[0] as Extract<TerminalMessage, { t: "receive-report" }>;
  assert.is(r.slot, 2);
  assert.is(r.bytes, 5 * (3 * 20 + 3000));
  assert.is(r.loss, 0);

  const qualities: string[] = [];
  s.on("quality", (q) => qualities.push(q.direction));
  node.send({ t: "quality", slot: 2, direction: "send", estimateKbps: 900, kbps: 850, loss: 0.05, delayMs: 3, targetKbps: 900 });
  node.send({ t: "quality", slot: 2, direction: "receive", estimateKbps: 900, kbps: 850, loss: 0, delayMs: 3, rttMs: 120 });
  await sleep(10);
  assert.equal(qualities, ["send", "receive"]);
  assert.is(s.targetKbps, 900);
  assert.ok(s.audioRedundant, "5% loss reported: audio goes twice");
  assert.ok(s.reorderMs > initialWindow + 200, `reorder window ${initialWindow} → ${s.reorderMs} with the publisher's 120 ms RTT`);
  const before = node.sentDatagrams.length;
  s.sendFrame(0, new Uint8Array(80));
  s.sendFrame(0, new Uint8Array(80));
  await sleep(10);
  const audio = node.sentDatagrams.slice(before).map((d) => d[7]);
  assert.equal(audio, [0, 0, 1], "frame 0, then frame 0 again just ahead of frame 1");
  node.send({ t: "quality", slot: 2, direction: "send", estimateKbps: 300, kbps: 280, loss: 0.05, delayMs: 3, targetKbps: 300 });
  await sleep(10);
  assert.not.ok(s.audioRedundant, "not on a thin path");
  await s.leave();
});

test.run();
