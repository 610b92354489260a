// Forward error correction for video: one XOR parity datagram per group of up to six fragments
// lets a receiver rebuild one lost fragment per group without a round trip. Pure: fragmenting,
// parity and the reassembler, no network; then a TerminalSession (over the scripted node stand-in,
// Node 20 has no WebTransport) sending parity that fits the datagram size.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Flag, fragmentFrame, parityFor, parityGroupSize, Reassembler, streamKeyOf, type MediaHeader } from "../../src/protocol/media.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { ScriptedNode } from "../support/scripted-node.ts";

const base: Omit<MediaHeader, "fragmentIndex" | "fragmentCount"> = { flags: Flag.keyframe, track: 1, source: 2, sequence: 7, timestamp: 1 };
const payload = (n: number) => new Uint8Array(n).map((_, i) => (i * 13 + (i >> 8)) & 0xff);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("groups are balanced and never of one fragment", () => {
  assert.equal([2, 6, 7, 12, 13, 24].map(parityGroupSize), [2, 6, 4, 6, 5, 6]);
  const frags = fragmentFrame(base, payload(7 * 1000), 1020);
  const par = parityFor(frags);
  assert.is(par.length, 2, "7 fragments: groups of 4 and 3");
  assert.equal(par.map((d) => (d[8]! << 8) | d[9]!), [0, 4], "each names its group's first fragment");
  for (const d of par) {
    assert.is(d[1]! & Flag.parity, Flag.parity);
    assert.is(d[1]! & Flag.keyframe, Flag.keyframe, "the frame's flags go with it");
    assert.ok(d.length <= 1020 + 2, "two bytes over the cut at most");
  }
  assert.equal(parityFor(fragmentFrame(base, payload(500), 1020)), [], "a one-datagram frame gets none");
});

test("one lost fragment per group is rebuilt, the short last one included, bit for bit", () => {
  const p = payload(6500); // 7 fragments of 980 bytes, the last one 620
  const frags = fragmentFrame(base, p, 1000);
  const par = parityFor(frags);
  const r = new Reassembler();
  let done;
  frags.forEach((d, i) => { if (i !== 1 && i !== 6) done = r.push(d); });
  assert.is(done, undefined, "two fragments missing");
  assert.is(r.push(par[0]!), undefined, "the first group is repaired, the second still lacks one");
  done = r.push(par[1]!);
  assert.ok(done, "complete without a retransmission");
  assert.equal(done!.payload, p);
  assert.is(done!.header.flags & Flag.parity, 0, "the frame delivered carries no parity flag");
  assert.is(r.repaired, 2);
  assert.is(r.lost, 0);
});

test("parity arriving first waits for the fragments; two losses in a group wait for a retransmission", () => {
  const p = payload(5000); // 6 fragments: one group
  const frags = fragmentFrame(base, p, 1000);
  const [par] = parityFor(frags);
  const r = new Reassembler();
  assert.is(r.push(par!), undefined);
  frags.forEach((d, i) => { if (i !== 2 && i !== 3) assert.is(r.push(d), undefined); });
  assert.equal(r.missingFragments(streamKeyOf({ ...base }), 7), [2, 3], "a nack would name both");
  const again = fragmentFrame({ ...base, flags: base.flags | Flag.retransmission }, p, 1000);
  const done = r.push(again[3]!);
  assert.ok(done, "one re-sent fragment and the parity complete it");
  assert.equal(done!.payload, p);
  assert.is(r.repaired, 1);
});

test("parity for a frame already delivered is dropped without counting it late", () => {
  const frags = fragmentFrame(base, payload(3000), 1000);
  const par = parityFor(frags);
  const r = new Reassembler();
  let done;
  for (const d of frags) done = r.push(d);
  assert.ok(done);
  assert.is(r.push(par[0]!), undefined);
  assert.is(r.late, 0);
});

test("a session with parity on cuts video two bytes short so parity fits, and sends one per group", async () => {
  const node = new ScriptedNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "t", WebTransport: node.WebTransport, fec: "on" });
  await sleep(5);
  s.sendFrame(1, payload(7000), { reliable: false }); // 6 fragments at a 1198-byte cut
  s.sendFrame(0, payload(100)); // audio: never parity
  await sleep(20);
  const video = node.sentDatagrams.filter((d) => d[2] === 1);
  const parity = video.filter((d) => (d[1]! & Flag.parity) !== 0);
  assert.is(parity.length, 1);
  assert.is(video.length - parity.length, 6);
  for (const d of video) assert.ok(d.length <= 1200, `datagram of ${d.length} bytes fits 1200`);
  assert.ok(node.sentDatagrams.filter((d) => d[2] === 0).every((d) => (d[1]! & Flag.parity) === 0));
  assert.is(s.counters.paritySent, 1);
  // The receiving end rebuilds a lost fragment from what was sent.
  const r = new Reassembler();
  let done;
  for (const d of video) if (((d[8]! << 8) | d[9]!) !== 4 || (d[1]! & Flag.parity)) done = r.push(d) ?? done;
  assert.ok(done);
  assert.equal(done!.payload, payload(7000));
  await s.leave();
});

test("by default keyframes carry parity from the start, other frames only once a receiver reports loss", async () => {
  const node = new ScriptedNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "t", WebTransport: node.WebTransport });
  await sleep(5);
  assert.is(s.parityOn(), false);
  assert.is(s.parityOn(true), true);
  s.sendFrame(1, payload(7000), { reliable: false });
  await sleep(20);
  assert.is(node.sentDatagrams.filter((d) => (d[1]! & Flag.parity) !== 0).length, 0, "a delta frame: none");
  s.sendFrame(1, payload(7000), { reliable: false, keyframe: true });
  await sleep(20);
  const parity = node.sentDatagrams.filter((d) => (d[1]! & Flag.parity) !== 0);
  assert.is(parity.length, 1, "a keyframe: one per group");
  assert.is(parity[0]![1]! & Flag.keyframe, Flag.keyframe);
  await s.leave();
});

test.run();
