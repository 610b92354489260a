// src/quality: bandwidth estimation, receiver timing, the encoding ladder, the receive meter
// and the decode/freeze model, each on tables of cases. No network.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { BandwidthEstimator, WindowMin, type ReceiveSample } from "../../src/quality/estimator.ts";
import { receiverTiming } from "../../src/quality/timing.ts";
import { chooseEncoding } from "../../src/quality/encoding.ts";
import { ReceiveMeter } from "../../src/quality/receive-meter.ts";
import { DecodeModel, FreezeMeter } from "../../src/quality/decode-model.ts";

const kbpsToBytes = (kbps: number, ms: number) => Math.round((kbps * ms) / 8);

/** Runs an estimator against a path that carries at most `capKbps` while the sender sends the estimate. */
function simulate(capKbps: number, seconds: number, opts: { loss?: number; startKbps?: number; baseDelayMs?: number } = {}) {
  const e = new BandwidthEstimator({ initialKbps: opts.startKbps ?? 1500 });
  let queueMs = 0;
  const history: number[] = [];
  for (let t = 0; t < seconds * 1000; t += 250) {
    const send = e.estimateKbps;
    const carried = Math.min(send, capKbps);
    // The bottleneck queue grows by what does not fit, up to 150 ms (drop-tail beyond).
    queueMs = Math.min(150, Math.max(0, queueMs + ((send - capKbps) / capKbps) * 250));
    const overflow = send > capKbps && queueMs >= 150 ? (send - capKbps) / send : 0;
    const s: ReceiveSample = { intervalMs: 250, bytes: kbpsToBytes(carried, 250), loss: Math.min(1, overflow + (opts.loss ?? 0)), delayMs: queueMs };
    history.push(e.update(s));
  }
  return { e, history };
}

test("estimator: converges under a bottleneck, climbs when it lifts, holds under random loss", () => {
  const cases: { name: string; cap: number; secs: number; start?: number; loss?: number; lo: number; hi: number }[] = [
    { name: "1 Mbit/s bottleneck from 1.5 Mbit/s", cap: 1000, secs: 10, lo: 600, hi: 1150 },
    { name: "300 kbit/s bottleneck", cap: 300, secs: 10, lo: 150, hi: 360 },
    { name: "no bottleneck climbs from 500 kbit/s", cap: 50_000, secs: 10, start: 500, lo: 1500, hi: 8000 },
    { name: "3% random loss on a wide path keeps climbing", cap: 50_000, secs: 10, start: 800, loss: 0.03, lo: 1200, hi: 8000 },
    { name: "10% random loss holds (no collapse)", cap: 50_000, secs: 10, start: 1500, loss: 0.1, lo: 1400, hi: 1600 },
    { name: "40% loss backs off", cap: 50_000, secs: 5, start: 1500, loss: 0.4, lo: 100, hi: 600 },
  ];
  for (const c of cases) {
    const { e } = simulate(c.cap, c.secs, { loss: c.loss, startKbps: c.start });
    assert.ok(e.estimateKbps >= c.lo && e.estimateKbps <= c.hi, `${c.name}: ${Math.round(e.estimateKbps)} not in [${c.lo}, ${c.hi}]`);
  }
});

test("estimator: reacts to a drop within 2 s and recovers within 12 s after it ends", () => {
  const e = new BandwidthEstimator({ initialKbps: 2000 });
  let queue = 0;
  const step = (cap: number) => {
    const send = e.estimateKbps;
    queue = Math.min(150, Math.max(0, queue + ((send - cap) / cap) * 250));
    return e.update({ intervalMs: 250, bytes: kbpsToBytes(Math.min(send, cap), 250), loss: 0, delayMs: queue });
  };
  for (let i = 0; i < 20; i++) step(3000);
  const before = e.estimateKbps;
  let reactedAt = -1;
  for (let i = 0; i < 40; i++) if (step(500) <= 600 && reactedAt < 0) reactedAt = i;
  assert.ok(reactedAt >= 0 && reactedAt * 250 <= 2000, `reacted after ${reactedAt * 250} ms`);
  let recoveredAt = -1;
  for (let i = 0; i < 60; i++) if (step(3000) >= 0.8 * Math.min(before, 3000) && recoveredAt < 0) recoveredAt = i;
  assert.ok(recoveredAt >= 0 && recoveredAt * 250 <= 12_000, `recovered after ${recoveredAt * 250} ms (before ${before})`);
});

test("estimator: bounds and ignores empty intervals", () => {
  const e = new BandwidthEstimator({ initialKbps: 50_000, maxKbps: 4000, minKbps: 100 });
  assert.is(e.estimateKbps, 4000);
  assert.is(e.update({ intervalMs: 0, bytes: 0, loss: 0, delayMs: 0 }), 4000);
  for (let i = 0; i < 50; i++) e.update({ intervalMs: 250, bytes: 10, loss: 0.9, delayMs: 500 });
  assert.is(e.estimateKbps, 100);
});

test("WindowMin keeps the minimum over its window", () => {
  const w = new WindowMin(1000);
  const rows: [number, number, number][] = [[0, 50, 50], [100, 40, 40], [500, 60, 40], [1200, 70, 60], [1600, 80, 70], [2700, 90, 90]];
  for (const [at, v, want] of rows) {
    w.push(at, v);
    assert.is(w.value, want, `at ${at}`);
  }
});

test("receiver timing follows the RTT within the budget", () => {
  const rows: { rtt: number; peer?: number; jitter?: number; budget?: number; reorder: [number, number]; nack: [number, number] }[] = [
    { rtt: 1, reorder: [80, 80], nack: [15, 15] },
    { rtt: 200, jitter: 10, reorder: [480, 600], nack: [25, 25] },
    { rtt: 200, jitter: 10, budget: 300, reorder: [300, 300], nack: [25, 25] },
    { rtt: 40, peer: 100, reorder: [340, 370], nack: [15, 15] },
    { rtt: 5, jitter: 100, reorder: [440, 480], nack: [80, 80] },
  ];
  for (const r of rows) {
    const t = receiverTiming({ rttMs: r.rtt, peerRttMs: r.peer, jitterMs: r.jitter, budgetMs: r.budget ?? 600 });
    assert.ok(t.reorderMs >= r.reorder[0] && t.reorderMs <= r.reorder[1], `rtt ${r.rtt}: reorder ${t.reorderMs}`);
    assert.ok(t.nackDelayMs >= r.nack[0] && t.nackDelayMs <= r.nack[1], `rtt ${r.rtt}: nack ${t.nackDelayMs}`);
    // A second ask waits at least one retransmission round across both paths.
    assert.ok(t.nackRetryMs >= Math.max(20, r.rtt + (r.peer ?? r.rtt)), `rtt ${r.rtt}: retry ${t.nackRetryMs}`);
  }
});

test("encoding ladder: rung per estimate, capped by the camera", () => {
  const rows: [number, object, string, number][] = [
    [5000, {}, "1080p", 30],
    [3000, { maxHeight: 720 }, "720p", 30],
    [1900, {}, "720p", 30],
    [1100, {}, "540p", 30],
    [600, {}, "360p", 30],
    [380, {}, "360p15", 15],
    [150, {}, "180p", 15],
    [40, {}, "180p", 15],
    [5000, { maxFps: 20 }, "1080p", 20],
  ];
  for (const [kbps, limits, name, fps] of rows) {
    const e = chooseEncoding(kbps, limits);
    assert.is(e.name, name, `${kbps} kbit/s`);
    assert.is(e.fps, fps, `${kbps} kbit/s fps`);
    if (kbps > 100) assert.ok(e.bitrateKbps < kbps, "video leaves room for audio");
  }
});

test("receive meter: loss from fragments and gaps, skips are not loss, queueing delay above the minimum", () => {
  const m = new ReceiveMeter(0);
  // Frames 0..9 of 4 fragments each; frame 3 loses 2 fragments, frame 5 never comes, frame 7 was skipped by the node.
  m.onSkip(1, [7]);
  for (let seq = 0; seq < 10; seq++) {
    if (seq === 5 || seq === 7) continue;
    for (let i = 0; i < 4; i++) {
      if (seq === 3 && i < 2) continue;
      m.onDatagram(1, seq, 4, 1000, seq * 33_000, seq * 33 + 20); // 20 ms one-way
    }
  }
  const r = m.report(1000, 0);
  // expected 8×4 + 1 (frame 5, size unknown) = 33, received 30
  assert.is(r.datagrams, 30);
  assert.ok(Math.abs(r.loss - 3 / 33) < 1e-9, `loss ${r.loss}`);
  assert.is(r.delayMs, 0);
  // Next interval: one-way delay 80 ms more (a queue).
  for (let seq = 10; seq < 20; seq++) m.onDatagram(1, seq, 1, 500, seq * 33_000, seq * 33 + 100);
  const r2 = m.report(2000, 0);
  assert.is(r2.loss, 0);
  assert.is(r2.delayMs, 80);
  assert.is(r2.bytes, 5000);
  // A duplicate (audio redundancy) is not counted twice.
  m.onDatagram(0, 0, 1, 100, 2_000_000, 2100);
  m.onDatagram(0, 0, 1, 100, 2_000_000, 2120);
  assert.is(m.report(3000, 0).loss, 0);
});

test("decode model: a gap breaks the chain until a keyframe; skipped discardable frames do not", () => {
  const d = new DecodeModel();
  const run: [number, boolean, boolean, string][] = [
    [0, false, false, "undecodable"], // no keyframe yet
    [1, true, false, "decoded"],
    [2, false, true, "decoded"],
    [3, false, false, "decoded"],
    [5, false, false, "undecodable"], // 4 missing, not known to be harmless
    [6, true, false, "decoded"],
  ];
  for (const [seq, key, disc, want] of run) assert.is(d.frame(seq, key, disc), want, `seq ${seq}`);
  d.skipped(7, true);
  assert.is(d.frame(8, false, false), "decoded");
  d.skipped(9, false);
  assert.is(d.frame(10, false, false), "undecodable");
  assert.ok(d.needsKeyframe);
});

test("decode model with chain indices: a lost discardable frame is harmless, a lost chain frame is not", () => {
  const d = new DecodeModel();
  // seq, key, discardable, chain index, verdict
  const run: [number, boolean, boolean, number, string][] = [
    [0, true, false, 0, "decoded"],
    [1, false, true, 0, "decoded"],
    [2, false, false, 1, "decoded"],
    // 3 (discardable, refers to 1) lost
    [4, false, false, 2, "decoded"],
    [5, false, true, 2, "decoded"],
    // 6 (chain frame 3) lost
    [7, false, true, 3, "undecodable"],
    [8, false, false, 4, "undecodable"],
    [9, true, false, 5, "decoded"],
    [10, false, true, 4, "undecodable"], // refers to a frame before the keyframe: does not decode…
    [11, false, false, 6, "decoded"], // …and breaks nothing
  ];
  for (const [seq, key, disc, idx, want] of run) assert.is(d.frame(seq, key, disc, idx), want, `seq ${seq}`);
});

test("freeze meter: WebRTC's freeze rule", () => {
  const f = new FreezeMeter(50); // threshold max(150, 200) = 200 ms
  const times = [0, 50, 100, 300, 350, 700, 750];
  for (const t of times) f.render(t);
  f.finish(800);
  assert.is(f.freezes, 1); // 350 → 700 is 350 ms; 100 → 300 is exactly 200, not above
  assert.is(f.maxFreezeMs, 350);
  assert.is(Math.round(f.freezePct(800)), 44);
  const none = new FreezeMeter(50, 0);
  none.finish(1000);
  assert.is(none.freezes, 1, "nothing ever rendered is a freeze");
  assert.is(none.maxFreezeMs, 1000);
  const late = new FreezeMeter(50, 0);
  late.render(700);
  late.finish(750);
  assert.is(late.maxFreezeMs, 700, "the wait for the first frame counts from the start");
});

test.run();
