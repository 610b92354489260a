// TerminalSession with simulcast layers, without a network: a scripted stand-in for
// WebTransport (a mock, as Node 20 has no WebTransport) plays the node. Each layer has its own
// sequence space on both sides; a switch to another layer happens at its keyframe; gaps are
// asked for in the right layer; the node's padding copies are never media.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TerminalSession, type FrameEvent } from "../../src/terminal/session.ts";
import type { TerminalMessage } from "../../src/protocol/control.ts";
import { frame } from "../../src/protocol/framing.ts";
import { encodeObject, Flag, fragmentFrame, layerOf, readHeader, withLayer } from "../../src/protocol/media.ts";
import { ScriptedNode } from "../support/scripted-node.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class FakeNode extends ScriptedNode {
  /** A video frame of slot 2 in `layer`, as a reliable object (how a big keyframe travels). */
  videoObject(layer: number, seq: number, key: boolean, size: number) {
    const flags = withLayer((key ? Flag.keyframe : 0) | Flag.reliable, layer);
    this.pushObject(frame(encodeObject({ flags, track: 1, source: 2, sequence: seq, timestamp: 1000 + seq }, new Uint8Array(size))));
  }

  /** A video frame of slot 2 in `layer`, as datagrams. */
  video(layer: number, seq: number, opts: { key?: boolean; size?: number; padding?: boolean } = {}) {
    let flags = withLayer(opts.key ? Flag.keyframe : 0, layer);
    if (opts.padding) flags |= Flag.padding;
    for (const d of fragmentFrame({ flags, track: 1, source: 2, sequence: seq, timestamp: 1000 + seq }, new Uint8Array(opts.size ?? 300), 1200)) {
      this.datagrams.push(d);
    }
  }
}

async function open(opts: { reorderMs?: number; nackDelayMs?: number } = {}) {
  const node = new FakeNode();
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "a.b.c", WebTransport: node.WebTransport, reportIntervalMs: 0, ...opts });
  const got: string[] = [];
  s.on("frame", (f: FrameEvent) => { if (f.header.track === 1) got.push(`${layerOf(f.header.flags)}:${f.header.sequence}`); });
  await sleep(5);
  return { node, s, got };
}

test("a switch to another layer starts at its keyframe; the old layer's late frames are not played", async () => {
  const { node, s, got } = await open({ reorderMs: 500, nackDelayMs: 200 });
  for (let i = 0; i < 3; i++) node.video(0, i, { key: i === 0 });
  await sleep(10);
  assert.equal(got, ["0:0", "0:1", "0:2"]);
  // The node switches to layer 1: its deltas overtake its keyframe, which is big and comes on
  // the reliable stream.
  node.video(1, 41);
  node.video(1, 42);
  await sleep(10);
  assert.equal(got.length, 3, "layer 1 waits for its keyframe");
  node.videoObject(1, 40, true, 40_000);
  await sleep(10);
  assert.equal(got, ["0:0", "0:1", "0:2", "1:40", "1:41", "1:42"]);
  node.video(0, 3); // a late frame of the layer left
  node.video(1, 43);
  await sleep(10);
  assert.equal(got.slice(6), ["1:43"]);
  assert.is(s.counters.lost, 0);
  // Back down to layer 0 later, at its keyframe, 50 frames further on: no gap to wait out.
  node.video(0, 53, { key: true });
  node.video(0, 54);
  await sleep(10);
  assert.equal(got.slice(7), ["0:53", "0:54"]);
  assert.not.ok(node.fromTerminal.some((m) => m.t === "nack"), "nothing asked for across a switch");
  await s.leave();
});

test("a switch whose keyframe was lost asks for one, again while it is missing, then plays", async () => {
  const { node, s, got } = await open({ reorderMs: 60, nackDelayMs: 20 });
  node.video(0, 0, { key: true });
  node.video(0, 1);
  await sleep(10);
  // The node moved us to layer 1; its keyframe (seq 40) never arrives, only its deltas.
  for (let seq = 41; seq < 47; seq++) {
    node.video(1, seq);
    await sleep(30);
  }
  const asks = node.fromTerminal.filter((m) => m.t === "keyframe-request") as Extract<TerminalMessage, { t: "keyframe-request" }>[];
  assert.ok(asks.length >= 2, `asked for a keyframe and asked again (${asks.length})`);
  assert.equal({ track: asks[0]!.track, slot: asks[0]!.slot }, { track: 1, slot: 2 });
  assert.equal(got, ["0:0", "0:1"], "nothing of layer 1 played without its keyframe");
  node.video(1, 47, { key: true });
  node.video(1, 48);
  await sleep(10);
  assert.equal(got.slice(2), ["1:47", "1:48"]);
  const n = node.fromTerminal.filter((m) => m.t === "keyframe-request").length;
  await sleep(150);
  assert.is(node.fromTerminal.filter((m) => m.t === "keyframe-request").length, n, "no more asking once it plays");
  await s.leave();
});

test("a gap within a layer is asked for in that layer; a skip of that layer passes it", async () => {
  const { node, s, got } = await open({ reorderMs: 1000, nackDelayMs: 10 });
  node.video(1, 0, { key: true });
  node.video(1, 2);
  await sleep(40);
  const nack = node.fromTerminal.find((m) => m.t === "nack") as Extract<TerminalMessage, { t: "nack" }> | undefined;
  assert.ok(nack, "nack sent");
  assert.equal({ seq: nack.sequences, layer: nack.layer, slot: nack.slot }, { seq: [1], layer: 1, slot: 2 });
  node.send({ t: "skip", slot: 2, track: 1, sequences: [1], discardable: true, layer: 1 });
  await sleep(10);
  assert.equal(got, ["1:0", "1:2"]);
  await s.leave();
});

test("padding copies count for the receive report but are never delivered", async () => {
  const { node, s, got } = await open();
  node.video(0, 0, { key: true });
  node.video(0, 0, { key: true, padding: true });
  node.video(0, 1);
  node.video(0, 1, { padding: true });
  await sleep(10);
  assert.equal(got, ["0:0", "0:1"]);
  assert.is(s.counters.late, 0, "not even counted late");
  await s.leave();
});

test("sending: each layer numbers its frames; a nack names the layer it wants again", async () => {
  const { node, s } = await open();
  assert.is(s.sendFrame(1, new Uint8Array(100), { keyframe: true }), 0);
  assert.is(s.sendFrame(1, new Uint8Array(100), { keyframe: true, layer: 1 }), 0);
  assert.is(s.sendFrame(1, new Uint8Array(100), { layer: 1 }), 1);
  assert.is(s.sendFrame(1, new Uint8Array(100)), 1);
  assert.throws(() => s.sendFrame(1, new Uint8Array(10), { layer: 4 }), /layer/);
  await sleep(10);
  const before = node.sentDatagrams.length;
  node.send({ t: "nack", track: 1, sequences: [1], slot: 3, layer: 1 });
  await sleep(10);
  const resent = node.sentDatagrams.slice(before).map(readHeader);
  assert.is(resent.length, 1);
  assert.is(layerOf(resent[0]!.flags), 1);
  assert.ok(resent[0]!.flags & Flag.retransmission);
  const events: { layer?: number }[] = [];
  s.on("keyframe-request", (k) => events.push(k));
  node.send({ t: "keyframe-request", track: 1, slot: 3, layer: 1 });
  node.send({ t: "keyframe-request", track: 1, slot: 3 });
  await sleep(10);
  assert.equal(events.map((e) => e.layer), [1, undefined]);
  await s.leave();
});

test.run();
