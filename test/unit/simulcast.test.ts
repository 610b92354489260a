// Simulcast and encoder steps, without a network: the layer plan for an uplink, the layer a
// path gets for its estimate (tables), each layer's measured rate, the per-subscriber policy
// switching layers only at keyframes, the resolution/frame-rate step function (tables), and the
// relay core serving a thin and a fat subscriber of one publisher from a simulated bottleneck.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { chooseLayer, LayerRates, planSimulcast } from "../../src/quality/layers.ts";
import { bitsPerPixel, nextStep, StepSelector, stepLadder } from "../../src/quality/video-steps.ts";
import { ReceiveMeter } from "../../src/quality/receive-meter.ts";
import { SubscriberPolicy } from "../../media/relay/subscriber.ts";
import { Relay, type GroupSpec, type Membership, type RelayPeer } from "../../media/relay/relay.ts";
import type { NodeMessage } from "../../src/protocol/control.ts";
import type { CloseReason } from "../../src/protocol/codes.ts";
import { Flag, fragmentFrame, layerOf, readHeader, withLayer } from "../../src/protocol/media.ts";
import { DEFAULT_GROUP_ATTRIBUTES } from "../../src/types.ts";

// ── layer choice ──

test("chooseLayer: the highest layer that fits, with room to spare going up (table)", () => {
  const cases: [number, (number | undefined)[], number, number][] = [
    // estimate, rates per layer, current, expected
    [400, [300, 1200], 0, 0],
    [400, [300, 1200], 1, 0], // the big layer no longer fits: down
    [1400, [300, 1200], 0, 0], // 1200 > 0.8 × 1400: not enough room to go up
    [1600, [300, 1200], 0, 1],
    [1250, [300, 1200], 1, 1], // kept while it fits at all
    [1050, [300, 1200], 1, 1], // (with a little slack: its rate includes the keyframe that started it)
    [950, [300, 1200], 1, 0],
    [200, [300, 1200], 1, 0], // nothing fits: the lowest layer
    [5000, [300, 1200, 3000], 0, 2],
    [3000, [300, 1200, 3000], 2, 2],
    [2400, [300, 1200, 3000], 2, 1],
    [5000, [undefined, 1200], 1, 1], // layer 0 not sent
    [100, [undefined, 1200], 1, 1], // the lowest layer there is
    [5000, [300, undefined, 3000], 0, 2],
    [900, [300], 0, 0], // one layer
  ];
  for (const [est, rates, cur, want] of cases) {
    assert.is(chooseLayer(est, rates, cur), want, `estimate ${est}, rates ${JSON.stringify(rates)}, current ${cur}`);
  }
});

test("LayerRates: each layer's rate over the window, liveness", () => {
  const r = new LayerRates(2000, 250);
  // Layer 0: 1875 B every 50 ms (300 kbit/s); layer 1: 7500 B every 50 ms (1.2 Mbit/s), for 3 s.
  for (let t = 0; t <= 3000; t += 50) {
    r.add(0, 1875, t);
    r.add(1, 7500, t);
  }
  assert.ok(Math.abs(r.kbps(0, 3000) - 300) < 30, `layer 0 ${r.kbps(0, 3000)}`);
  assert.ok(Math.abs(r.kbps(1, 3000) - 1200) < 120, `layer 1 ${r.kbps(1, 3000)}`);
  assert.is(r.liveMask(3000), 0b11);
  // Layer 1 stops: not live after a second, its rate decays to 0 within the window.
  for (let t = 3050; t <= 6000; t += 50) r.add(0, 1875, t);
  assert.is(r.liveMask(6000), 0b01);
  assert.is(r.kbps(1, 6000), 0);
  // A layer that just appeared is measured over the time it has been there, not the whole window.
  for (let t = 6050; t <= 6500; t += 50) r.add(2, 2500, t);
  assert.ok(Math.abs(r.kbps(2, 6500) - 400) < 80, `new layer ${r.kbps(2, 6500)}`);
});

test("planSimulcast: layers follow the uplink and what is sent, with hysteresis (table)", () => {
  const heights = (p: { height: number }[]) => p.map((l) => l.height).join("+");
  // uplink, sent now, layers now, camera, target → heights
  const cases: [number | undefined, number | undefined, number, number, number | undefined, string][] = [
    [undefined, 500, 1, 720, 2000, "720"], // uplink not known yet: one layer
    [2000, undefined, 1, 720, 2000, "720"], // nothing measured yet
    [300, 280, 1, 720, 280, "720"], // a 300 kbit/s uplink: never a second layer
    [600, 250, 1, 720, 500, "720"], // under the floor
    [860, 480, 1, 720, 800, "360+720"], // a still scene: room for what is sent plus the low layer
    [900, 700, 1, 720, 800, "720"], // what is sent plus the low layer does not fit
    [2500, 1900, 1, 720, 2000, "360+720"],
    [1000, 700, 2, 720, 900, "360+720"], // stays while the uplink carries what is sent
    [600, 700, 2, 720, 500, "720"], // full: the second layer goes
    [450, 300, 2, 720, 400, "720"], // under the lower floor
    [3500, 2000, 2, 1080, 3000, "360+720+1080"],
    [2800, 2000, 2, 1080, 3000, "360+720"], // under the third layer's floor
    [2500, 2200, 3, 1080, 2500, "360+720+1080"],
    [1900, 2200, 3, 1080, 1800, "360+720"],
    [5000, 1000, 1, 480, 5000, "480"], // a small camera: one layer
  ];
  for (const [uplinkKbps, sendKbps, layers, cam, targetKbps, want] of cases) {
    assert.is(heights(planSimulcast(cam, { uplinkKbps, sendKbps, layers, targetKbps })), want, `uplink ${uplinkKbps}, sent ${sendKbps}, ${layers} layers now, camera ${cam}p`);
  }
  const two = planSimulcast(720, { uplinkKbps: 2000, sendKbps: 1500, layers: 2, targetKbps: 2000 });
  assert.is(two[0]!.bitrateKbps, 300);
  assert.ok(two[1]!.bitrateKbps > 900 && two[1]!.bitrateKbps <= 2500, `top ${two[1]!.bitrateKbps}`);
  assert.ok(planSimulcast(720, { uplinkKbps: 2000, sendKbps: 1500, layers: 2, targetKbps: 250 })[0]!.bitrateKbps < 300, "the low layer fits the thinnest receiver");
  assert.is(planSimulcast(720, { uplinkKbps: 2500, sendKbps: 1000, layers: 1, targetKbps: 2000 }, { maxLayers: 1 }).length, 1);
  const one = planSimulcast(720, { uplinkKbps: undefined, sendKbps: 900, layers: 1, targetKbps: 1000 });
  assert.ok(one[0]!.bitrateKbps < 1000, "one layer follows the target");
});

// ── resolution / frame-rate steps ──

test("stepLadder: sizes down to 360p at the camera's rate, then fewer frames", () => {
  const s = (l: { height: number; fps: number }[]) => l.map((x) => `${x.height}@${x.fps}`).join(" ");
  assert.is(s(stepLadder(720, 20)), "720@20 540@20 360@20 360@15 360@10 180@10");
  assert.is(s(stepLadder(1080, 30)), "1080@30 720@30 540@30 360@30 360@15 360@10 180@10");
  assert.is(s(stepLadder(720, 20, 360)), "360@20 360@15 360@10 180@10");
  assert.is(s(stepLadder(360, 10)), "360@10 180@10");
});

test("nextStep: bits per pixel per frame decide; down at once, up with margin and hold (table)", () => {
  const ladder = stepLadder(720, 20);
  const name = (i: number) => `${ladder[i]!.height}@${ladder[i]!.fps}`;
  // kbps, current step, ms since the last change → expected step
  const cases: [number, string, number, string][] = [
    [2000, "720@20", 10_000, "720@20"],
    [800, "720@20", 10_000, "720@20"], // 0.043 bpp: still above the 0.04 floor
    [700, "720@20", 10_000, "540@20"], // 0.038: one step down
    [400, "720@20", 10_000, "360@20"], // several steps at once
    [150, "720@20", 10_000, "360@15"],
    [100, "720@20", 10_000, "360@10"],
    [30, "720@20", 10_000, "180@10"],
    [400, "720@20", 500, "720@20"], // just changed: wait a moment before going down
    [700, "540@20", 10_000, "540@20"], // 720p would get 0.038 < 0.054: no way up
    [1200, "540@20", 10_000, "720@20"], // 0.065 ≥ 0.054: up one step
    [1200, "540@20", 2000, "540@20"], // too soon after the last change
    [2500, "360@20", 10_000, "540@20"], // one step at a time going up
  ];
  for (const [kbps, cur, since, want] of cases) {
    const i = ladder.findIndex((x) => `${x.height}@${x.fps}` === cur);
    assert.is(name(nextStep(ladder, i, { kbps, sinceChangeMs: since })), want, `${kbps} kbit/s at ${cur}, ${since} ms since last change`);
  }
  // With what the encoder actually used: kbps, used, current → expected (long after the last change).
  const used: [number, number, string, string][] = [
    [560, 540, "720@20", "540@20"], // uses its bitrate and is under the floor: down
    [560, 426, "720@20", "720@20"], // a still scene leaves bits unused: no reason to go down
    [150, 135, "720@20", "360@15"], // but far under the floor it is starved anyway
    [560, 300, "540@20", "720@20"], // bits to spare even for 720p's pixels (≈ 400): up
    [560, 400, "540@20", "540@20"], // 720p would need about 530: not enough spare
    [420, 222, "360@20", "540@20"], // a still scene at 360p: 540p needs ≈ 333
    [300, 219, "360@20", "360@20"], // the top of a 360p layer's ladder
  ];
  for (const [kbps, usedKbps, cur, want] of used) {
    const l = cur.startsWith("360") && kbps === 300 ? stepLadder(720, 20, 360) : ladder;
    const i = l.findIndex((x) => `${x.height}@${x.fps}` === cur);
    assert.is(`${l[nextStep(l, i, { kbps, usedKbps, sinceChangeMs: 10_000 })]!.height}@${l[nextStep(l, i, { kbps, usedKbps, sinceChangeMs: 10_000 })]!.fps}`, want, `${kbps} kbit/s, ${usedKbps} used, at ${cur}`);
  }
  assert.ok(Math.abs(bitsPerPixel(1000, { height: 720, fps: 20 }) - 1e6 / (1280 * 720 * 20)) < 1e-9);
});

test("StepSelector: nothing goes down in the first 6 s (the estimate is still growing)", () => {
  const sel = new StepSelector(stepLadder(720, 20));
  for (let t = 0; t < 5900; t += 300) sel.update(300, t, 300);
  assert.is(sel.step.height, 720);
  for (let t = 6000; t < 9000; t += 300) sel.update(300, t, 300);
  assert.ok(sel.step.height <= 360, `then down to ${sel.step.height}p`);
});

test("StepSelector: a dip of the bitrate shorter than 2 s changes nothing; a lasting one steps down", () => {
  const sel = new StepSelector(stepLadder(720, 20));
  sel.update(2000, -10_000, 1200); // running for a while
  for (let t = 0; t < 1500; t += 300) sel.update(300, t, 300);
  assert.is(sel.step.height, 720, "a 1.5 s dip");
  for (let t = 1500; t < 10_000; t += 300) sel.update(2000, t, 1200);
  assert.is(sel.step.height, 720);
  for (let t = 10_000; t < 12_500; t += 300) sel.update(300, t, 300);
  assert.ok(sel.step.height <= 360, `stepped down to ${sel.step.height}p`);
});

test("StepSelector: a new ladder keeps the step, or the largest no bigger", () => {
  const sel = new StepSelector(stepLadder(720, 20));
  sel.index = 2; // 360@20
  sel.setLadder(stepLadder(720, 20, 360)); // a layer capped at 360p
  assert.equal(sel.step, { height: 360, fps: 20 });
  sel.setLadder(stepLadder(720, 20)); // uncapped again, bitrate unknown
  assert.equal(sel.step, { height: 360, fps: 20 });
  sel.setLadder(stepLadder(720, 20, 360));
  sel.setLadder(stepLadder(720, 20), 900); // uncapped (the layer above went): 900 kbit/s carries 720p@20
  assert.equal(sel.step, { height: 720, fps: 20 }, "the largest step the bitrate carries, at once");
  sel.setLadder(stepLadder(720, 20, 360));
  sel.setLadder(stepLadder(720, 20), 500); // 540p@20 at most
  assert.equal(sel.step, { height: 540, fps: 20 });
  sel.setLadder(stepLadder(720, 20), 2000); // the same ladder again: no jump
  assert.equal(sel.step, { height: 540, fps: 20 });
  const big = new StepSelector(stepLadder(1080, 30));
  big.setLadder(stepLadder(720, 20)); // a smaller camera
  assert.equal(big.step, { height: 720, fps: 20 });
});

test("StepSelector: does not flap around a threshold", () => {
  const sel = new StepSelector(stepLadder(720, 20));
  sel.update(2000, -10_000); // running for a while
  let changes = 0;
  // A bitrate wobbling around the 720p floor (≈ 740 kbit/s) every 300 ms for a minute.
  for (let t = 0; t < 60_000; t += 300) if (sel.update(t % 600 === 0 ? 700 : 780, t)) changes++;
  assert.ok(changes <= 1, `${changes} step changes`);
  // Wobbling a little lower (both values under the floor, then one a little over 540p's way up):
  const low = new StepSelector(stepLadder(720, 20));
  low.update(2000, -10_000);
  let lowChanges = 0;
  for (let t = 0; t < 60_000; t += 300) if (low.update(t % 600 === 0 ? 650 : 720, t)) lowChanges++;
  assert.is(low.step.height, 540);
  assert.is(lowChanges, 1, "one step down, then still");
});

test("ReceiveMeter: switching to a slower encoder's layer is not queueing; a queue on every stream is", () => {
  const m = new ReceiveMeter(0);
  const seq = [0, 0, 0];
  const send = (t: number, owdByStream: [number, number][]) => {
    for (const [stream, owd] of owdByStream) m.onDatagram(stream, seq[stream >> 8 === 1 ? 2 : stream]!++, 1, 1000, (t - owd) * 1000, t);
  };
  // 5 s of audio (20 ms of latency from capture) and 360p video (8 ms).
  for (let t = 0; t < 5000; t += 20) send(t, t % 40 === 0 ? [[0, 20], [1, 8]] : [[0, 20]]);
  m.report(5000);
  // The node moves us to 720p (layer 1: 35 ms from capture): the smallest delay over the interval rises, no queue.
  for (let t = 5000; t < 5300; t += 20) send(t, t % 40 === 0 ? [[0, 20], [1 | (1 << 8), 35]] : [[0, 20]]);
  assert.is(m.report(5300).delayMs, 0, "a slower encoder is not a queue");
  // A queue of 60 ms on the path: every stream is later.
  for (let t = 5300; t < 5600; t += 20) send(t, t % 40 === 0 ? [[0, 80], [1 | (1 << 8), 95]] : [[0, 80]]);
  assert.ok(Math.abs(m.report(5600).delayMs - 60) < 1, "a queue is");
});

test("ReceiveMeter: a layer the node stops and later forwards again is not loss", () => {
  const m = new ReceiveMeter(0);
  let t = 0;
  // Layer 1 for 2 s, then layer 0 for 5 s (layer 1 not forwarded), then layer 1 again, 100 frames further on.
  for (let seq = 0; seq < 40; seq++, t += 50) m.onDatagram(1 | (1 << 8), seq, 1, 1000, t * 1000, t);
  for (let seq = 0; seq < 100; seq++, t += 50) m.onDatagram(1, seq, 1, 1000, t * 1000, t);
  m.report(t);
  for (let seq = 140; seq < 146; seq++, t += 50) m.onDatagram(1 | (1 << 8), seq, 1, 1000, t * 1000, t);
  assert.is(m.report(t + 500).loss, 0);
  // A gap within a stream that keeps flowing is loss.
  for (let seq = 146; seq < 156; seq++, t += 50) if (seq !== 150) m.onDatagram(1 | (1 << 8), seq, 1, 1000, t * 1000, t);
  assert.ok(m.report(t + 500).loss > 0.05);
});

// ── the forwarding policy with layers ──

const video = (seq: number, size: number, layer: number, key = false, source = 1) =>
  fragmentFrame({ flags: withLayer(key ? Flag.keyframe : 0, layer), track: 1, source, sequence: seq, timestamp: 1 }, new Uint8Array(size), 1200);

function layeredPolicy(opts = {}) {
  const skips: [number, number, number, boolean, number | undefined][] = [];
  const keyframes: [number, number, number | undefined][] = [];
  const p = new SubscriberPolicy({
    skip: (pub, track, seq, disc, layer) => skips.push([pub, track, seq, disc, layer]),
    needKeyframe: (pub, track, layer) => keyframes.push([pub, track, layer]),
  }, opts);
  return { p, skips, keyframes };
}

/** A simulcast publisher's frames over time: layer 0 of 1.9 kB and layer 1 of 7.5 kB every 50 ms. */
class Source {
  seq = [0, 0];
  key = [true, true];
  now = 0;
  constructor(readonly p: SubscriberPolicy, readonly sizes = [1875, 7500]) {}
  /** Sends one frame of each layer; returns the layers forwarded (whole frames). */
  step(): number[] {
    this.now += 50;
    const out: number[] = [];
    for (let l = 0; l < this.sizes.length; l++) {
      const size = this.key[l] ? this.sizes[l]! * 4 : this.sizes[l]!;
      const v = video(this.seq[l]!++, size, l, this.key[l]).map((d) => this.p.decide(1, d, size, this.now));
      assert.ok(v.every((x) => x === v[0]), "a frame is forwarded whole or not at all");
      this.key[l] = false;
      if (v[0] === "forward") out.push(l);
    }
    return out;
  }
}

const report = (p: SubscriberPolicy, kbps: number, delayMs = 0, loss = 0) =>
  p.onReport({ t: "receive-report", slot: 1, intervalMs: 250, bytes: (kbps * 250) / 8, loss, delayMs });

test("policy: a simulcast path starts on layer 0, switches up only at a keyframe of layer 1 (asked for)", () => {
  const { p, keyframes } = layeredPolicy();
  const src = new Source(p);
  for (let i = 0; i < 10; i++) assert.equal(src.step(), [0], "before any report: layer 0 only");
  for (let i = 0; i < 10; i++) { report(p, 3000); src.step(); }
  assert.is(p.path(1).target, 1, "a fat path targets layer 1");
  assert.ok(keyframes.some(([, t, l]) => t === 1 && l === 1), "a keyframe of layer 1 was asked for");
  assert.is(p.path(1).layer, 0, "still layer 0: no keyframe of layer 1 yet");
  assert.equal(src.step(), [0]);
  src.key[1] = true; // the publisher answers (its layer 0 frame of the same instant still goes)
  assert.equal(src.step(), [0, 1], "switched at the keyframe");
  for (let i = 0; i < 5; i++) assert.equal(src.step(), [1]);
  assert.is(p.path(1).switches, 1);
});

test("policy: switch down at the estimate's fall, at the next keyframe of the lower layer", () => {
  const { p, keyframes } = layeredPolicy();
  const src = new Source(p);
  for (let i = 0; i < 10; i++) { report(p, 3000); src.step(); }
  src.key[1] = true;
  src.step();
  assert.is(p.path(1).layer, 1);
  keyframes.length = 0;
  // The path narrows: the queue grows and the estimate falls under layer 1's rate.
  for (let i = 0; i < 4; i++) { report(p, 500, 80 + i * 20); src.step(); }
  assert.is(p.path(1).target, 0);
  assert.ok(keyframes.some(([, , l]) => l === 0), "a keyframe of layer 0 was asked for");
  const before = src.step();
  assert.ok(!before.includes(0), "layer 0 only from its keyframe");
  src.key[0] = true;
  assert.equal(src.step(), [0], "switched down at layer 0's keyframe");
  assert.equal(src.step(), [0]);
});

test("policy: a quiet path is probed with padding, not by switching; a thin one stays on layer 0 and waits longer each time", () => {
  const { p } = layeredPolicy();
  const src = new Source(p);
  const cap = 450;
  let padded = 0;
  for (let i = 0; i < 160; i++) { // 40 s of reports every 250 ms, 5 frames of each layer in between
    const path = p.path(1);
    // What reached the subscriber: layer 0 (~350 kbit/s with audio) plus any padding, through a 450 kbit/s bottleneck.
    const offered = (path.layer === 1 ? 1300 : 350) + (path.padBytes * 8) / 250;
    padded += path.padBytes;
    path.padBytes = 0;
    report(p, Math.min(cap, offered), offered > cap ? 60 : 0, offered > cap ? 0.1 : 0);
    for (let k = 0; k < 5; k++) {
      if (path.target !== path.layer) src.key[path.target] = true;
      src.step();
      p.padding(1, 940); // one call per forwarded datagram: layer 0's frames are 2 of them
      p.padding(1, 940);
    }
  }
  const path = p.path(1);
  assert.ok(path.probes >= 2 && path.probes <= 8, `${path.probes} probes in 40 s`);
  assert.ok(padded > 0, "padding was sent");
  assert.is(path.switches, 0, "never switched to the layer the path cannot carry");
  assert.ok(path.probeBackoffMs >= 4000, `backoff ${path.probeBackoffMs} ms`);
  // The bottleneck goes: the next probe passes and the path moves up.
  let upAfter = -1;
  for (let i = 0; i < 80 && upAfter < 0; i++) {
    const offered = (path.layer === 1 ? 1300 : 350) + (path.padBytes * 8) / 250;
    path.padBytes = 0;
    report(p, offered);
    for (let k = 0; k < 5; k++) {
      if (path.target !== path.layer) src.key[path.target] = true;
      src.step();
      p.padding(1, 940); // one call per forwarded datagram: layer 0's frames are 2 of them
      p.padding(1, 940);
    }
    if (path.layer === 1) upAfter = (i + 1) * 250;
  }
  assert.ok(upAfter > 0 && upAfter <= 12_000, `up after ${upAfter} ms`);
});

test("policy: a move up that failed is not tried again on an estimate grown only by what arrives", () => {
  const { p } = layeredPolicy();
  const src = new Source(p, [1875, 3000]); // layers of ~300 and ~480 kbit/s: close together
  const cap = 420;
  let ups = 0;
  let was = 0;
  for (let i = 0; i < 120; i++) { // 30 s
    const path = p.path(1);
    const offered = (path.layer === 1 ? 540 : 360) + (path.padBytes * 8) / 250;
    path.padBytes = 0;
    report(p, Math.min(cap, offered), offered > cap ? 80 : 0, offered > cap ? 0.08 : 0);
    for (let k = 0; k < 5; k++) {
      if (path.target !== path.layer) src.key[path.target] = true;
      src.step();
      p.padding(1, 940);
      p.padding(1, 940);
    }
    if (path.layer === 1 && was === 0) ups++;
    was = path.layer;
  }
  assert.ok(ups <= 1, `${ups} moves up on a path that cannot carry the layer`);
  assert.ok(p.path(1).upFailedKbps[1]! > 0 || ups === 0);
});

test("policy: a single-layer publisher is forwarded as before; requests and skips carry no layer", () => {
  const { p, skips, keyframes } = layeredPolicy();
  for (let i = 0; i < 30; i++) report(p, 300);
  let now = 10_000;
  for (let seq = 0; seq < 200; seq++, now += 33) {
    const size = seq % 50 === 0 ? 30_000 : 6000;
    for (const d of video(seq, size, 0, seq % 50 === 0)) p.decide(1, d, size, now);
    if (seq % 10 === 0) report(p, 300, 60);
  }
  assert.is(p.path(1).simulcast, false);
  assert.is(p.path(1).switches, 0);
  assert.ok(keyframes.length > 0 && skips.length > 0, "over budget: drops and keyframe requests");
  assert.ok(keyframes.every(([, , l]) => l === undefined), "no layer in keyframe requests");
  assert.ok(skips.every(([, , , , l]) => l === undefined), "no layer in skips");
  assert.is(p.keyframeLayer(1), undefined);
});

test("policy: a member standing for a node (no layer selection) gets every layer", () => {
  const { p } = layeredPolicy({ selectLayers: false });
  const src = new Source(p);
  for (let i = 0; i < 10; i++) { report(p, 300); assert.equal(src.step(), [0, 1]); }
});

// ── the relay core: one publisher, a thin and a fat subscriber ──

class FakePeer implements RelayPeer {
  control: NodeMessage[] = [];
  datagrams: Uint8Array[] = [];
  objects: Uint8Array[] = [];
  closed?: CloseReason;
  readonly maxDatagramSize = 1200;
  sendControl(msg: NodeMessage) { this.control.push(msg); }
  sendDatagram(b: Uint8Array) { this.datagrams.push(b.slice()); return true; }
  sendObject(b: Uint8Array) { this.objects.push(b.slice()); return true; }
  close(reason: CloseReason) { this.closed = reason; }
  of<T extends NodeMessage["t"]>(t: T) { return this.control.filter((m) => m.t === t) as Extract<NodeMessage, { t: T }>[]; }
}

/** A subscriber's downlink: a bottleneck of `kbps` with a queue; its reports say what came through. */
class Downlink {
  backlog = 0;
  taken = 0;
  constructor(public kbps: number, readonly peer: FakePeer) {}
  /** The receive report for the last `ms`. */
  report(slot: number, ms: number): Extract<NodeMessage, { t: "quality" }> | any {
    const sent = this.peer.datagrams.slice(this.taken).reduce((s, d) => s + d.length, 0);
    this.taken = this.peer.datagrams.length;
    const room = (this.kbps * ms) / 8;
    this.backlog += sent;
    const delivered = Math.min(this.backlog, room);
    this.backlog -= delivered;
    const maxQueue = (this.kbps * 200) / 8; // 200 ms of queue, drop-tail
    const lost = Math.max(0, this.backlog - maxQueue);
    this.backlog -= lost;
    const delayMs = (this.backlog * 8) / this.kbps;
    return { t: "receive-report", slot, intervalMs: ms, bytes: Math.round(delivered), loss: sent ? Math.min(1, lost / sent) : 0, delayMs };
  }
}

test("relay: from one simulcast publisher, the thin subscriber gets layer 0 and the fat one layer 1; the thin one climbs back when its path widens", () => {
  let now = 1_000_000;
  const relay = new Relay({ now: () => now, limits: { keyframeRequestSpacingMs: 100 } });
  const spec: GroupSpec = {
    groupId: "g", consultationId: "c", clinicId: "cl", attributes: { ...DEFAULT_GROUP_ATTRIBUTES, maxParticipants: 3 },
    members: [{ terminalId: "pub", role: "requester" }, { terminalId: "thin", role: "consultant" }, { terminalId: "fat", role: "consultant" }],
    expiresAt: now + 3600_000,
  };
  relay.reserve(spec);
  const peers = [new FakePeer(), new FakePeer(), new FakePeer()];
  const members: Membership[] = spec.members.map((m, i) => {
    const r = relay.admit({ claims: { sub: m.terminalId, role: m.role, jti: `j${i}`, cid: "c", gid: "g", exp: 2e9 }, peer: peers[i]! });
    if (!r.ok) throw new Error(r.reason);
    return r.membership;
  });
  const [pub, thin, fat] = members as [Membership, Membership, Membership];
  const links = [new Downlink(400, peers[1]!), new Downlink(20_000, peers[2]!)];
  // The publisher: layer 0 at ~300 kbit/s, layer 1 at ~1.2 Mbit/s, 20 fps, answering keyframe requests per layer.
  const seq = [0, 0];
  let audioSeq = 0;
  const forceKey = [true, true];
  let asked = 0;
  const received = (peer: FakePeer, from: number) => {
    const layers = new Map<number, number>();
    for (const d of peer.datagrams.slice(from)) {
      const h = readHeader(d);
      if (h.track === 1 && h.fragmentIndex === 0 && !(h.flags & Flag.padding)) layers.set(layerOf(h.flags), (layers.get(layerOf(h.flags)) ?? 0) + 1);
    }
    return layers;
  };
  const layerAt = (peer: FakePeer) => {
    for (let i = peer.datagrams.length - 1; i >= 0; i--) {
      const h = readHeader(peer.datagrams[i]!);
      if (h.track === 1) return layerOf(h.flags);
    }
    return -1;
  };
  const run = (ms: number) => {
    for (let t = 0; t < ms; t += 50) {
      now += 50;
      relay.tick();
      for (const k of peers[0]!.of("keyframe-request").slice(asked)) {
        if (k.layer === undefined) forceKey.fill(true);
        else forceKey[k.layer] = true;
      }
      asked = peers[0]!.of("keyframe-request").length;
      for (let l = 0; l < 2; l++) {
        const size = (l === 0 ? 1875 : 7500) * (forceKey[l] ? 4 : 1);
        const flags = withLayer(forceKey[l] ? Flag.keyframe : 0, l);
        forceKey[l] = false;
        for (const d of fragmentFrame({ flags, track: 1, source: 0, sequence: seq[l]!++, timestamp: now * 1000 }, new Uint8Array(size), 1200)) {
          relay.forwardDatagram(pub, d);
        }
      }
      relay.forwardDatagram(pub, fragmentFrame({ flags: 0, track: 0, source: 0, sequence: audioSeq++, timestamp: now * 1000 }, new Uint8Array(120), 1200)[0]!);
      if ((now / 50) % 20 === 0) for (const m of members) relay.onControl(m, { t: "ping", n: 0 }); // keep-alive
      if ((now / 50) % 6 === 0) {
        relay.onControl(thin, links[0]!.report(pub.slot, 300));
        relay.onControl(fat, links[1]!.report(pub.slot, 300));
      }
    }
  };
  run(15_000);
  const mark = [peers[1]!.datagrams.length, peers[2]!.datagrams.length];
  run(5_000);
  const thinLayers = received(peers[1]!, mark[0]!);
  const fatLayers = received(peers[2]!, mark[1]!);
  console.log(`  thin (400 kbit/s): frames per layer ${JSON.stringify([...thinLayers])}, estimate ${Math.round(thin.policy.path(pub.slot).estimateKbps)} kbit/s; fat: ${JSON.stringify([...fatLayers])}, estimate ${Math.round(fat.policy.path(pub.slot).estimateKbps)} kbit/s`);
  assert.ok((thinLayers.get(0) ?? 0) > 3 * (thinLayers.get(1) ?? 0), "the thin subscriber gets mostly layer 0");
  assert.is(fatLayers.get(0) ?? 0, 0, "the fat subscriber gets no layer 0");
  assert.ok((fatLayers.get(1) ?? 0) >= 90, "the fat subscriber gets layer 1 throughout");
  // Every forwarded video frame is whole.
  for (const peer of [peers[1]!, peers[2]!]) {
    const frags = new Map<string, { n: number; of: number }>();
    for (const d of peer.datagrams) {
      const h = readHeader(d);
      if (h.flags & Flag.padding) continue;
      const k = `${layerOf(h.flags)}:${h.track}:${h.sequence}`;
      const f = frags.get(k) ?? { n: 0, of: h.fragmentCount };
      f.n++;
      frags.set(k, f);
    }
    for (const [k, f] of frags) assert.is(f.n, f.of, `frame ${k} whole`);
  }
  // The thin path widens: it climbs back to layer 1 within seconds.
  links[0]!.kbps = 20_000;
  let climbMs = -1;
  for (let t = 0; t < 20_000; t += 250) {
    run(250);
    if (layerAt(peers[1]!) === 1) { climbMs = t + 250; break; }
  }
  const padding = peers[1]!.datagrams.filter((d) => d[1]! & Flag.padding).length;
  console.log(`  after the thin path widened: layer 1 after ${climbMs} ms; thin path probes ${thin.policy.path(pub.slot).probes}, ${padding} padding datagrams in all, layer switches ${thin.policy.path(pub.slot).switches}`);
  assert.ok(climbMs > 0 && climbMs <= 12_000, `climbed back in ${climbMs} ms`);
  const m2 = peers[1]!.datagrams.length;
  run(3000);
  const after = received(peers[1]!, m2);
  assert.ok((after.get(1) ?? 0) >= 50 && (after.get(0) ?? 0) === 0, `stays on layer 1: ${JSON.stringify([...after])}`);
  // The publisher learns its uplink estimate and each subscriber's layer.
  const q = peers[0]!.of("quality").filter((x) => x.direction === "send");
  assert.ok(q.some((x) => x.uplinkKbps !== undefined && x.uplinkKbps > 1000), "uplink estimate reaches the publisher");
  assert.ok(peers[2]!.of("quality").some((x) => x.direction === "receive" && x.layer === 1), "the fat subscriber is told its layer");
});

test.run();
