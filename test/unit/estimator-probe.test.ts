// How far the bandwidth estimate probes past what arrives (src/quality/estimator.ts), on
// simulated feedback: a sender that fills only ~70% of the estimate (video share) cannot show a
// bottleneck by its rate, so once the path has shown congestion the estimate may run only a
// step ahead of what arrives unless the path stays clean (before that, start-up probes freely); near the rate at which the path last filled up it probes slowly; and one
// near-empty interval behind a queue does not crash it; a cut made for heavy loss (no proof of a
// smaller path) is regained fast. Pure, no network.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { BandwidthEstimator } from "../../src/quality/estimator.ts";

const bytes = (kbps: number, ms: number) => Math.round((kbps * ms) / 8);

/** An app-limited sender (70% of the estimate + 40 kbit/s audio) on a path of `capKbps`, with interval loss from `lossAt`. */
function run(e: BandwidthEstimator, secs: number, capKbps: number, lossAt: (i: number) => number) {
  const out: number[] = [];
  let queue = 0;
  for (let i = 0; i < (secs * 1000) / 300; i++) {
    const send = 0.7 * e.estimateKbps + 40;
    queue = Math.max(0, Math.min(150, queue + ((send - capKbps) / capKbps) * 300));
    out.push(e.update({ intervalMs: 300, bytes: bytes(Math.min(send, capKbps), 300), loss: lossAt(i), delayMs: queue }));
  }
  return out;
}

test("on a lossy path an app-limited sender's estimate stays within a step of what arrives (after start-up)", () => {
  const e = new BandwidthEstimator({ initialKbps: 800 });
  e.update({ intervalMs: 300, bytes: bytes(600, 300), loss: 0, delayMs: 0 });
  e.update({ intervalMs: 300, bytes: bytes(600, 300), loss: 0, delayMs: 60 }); // the path has shown a queue once
  // Every third interval shows 10% loss (3% random loss measured over short intervals).
  const est = run(e, 10, 50_000, (i) => (i % 3 === 0 ? 0.1 : 0));
  const last = est[est.length - 1]!;
  assert.ok(last <= 1.25 * (0.7 * last + 40) + 100 + 1, `estimate ${Math.round(last)} ran past 1.25× what arrives + 100`);
  assert.ok(last < 1400, `estimate ${Math.round(last)}`);
});

test("start-up probes freely; once congested, a path that stays clean earns room to climb past that step", () => {
  const start = new BandwidthEstimator({ initialKbps: 300 });
  const up = run(start, 6, 50_000, () => 0);
  // The first report sets it to what arrived + a step; then the full 20% a second, not the step.
  assert.ok(up[up.length - 1]! >= 0.9 * up[0]! * 1.2 ** 5.7, `start-up: ${up.map(Math.round)}`);
  const e = new BandwidthEstimator({ initialKbps: 800 });
  e.update({ intervalMs: 300, bytes: bytes(600, 300), loss: 0, delayMs: 0 });
  e.update({ intervalMs: 300, bytes: bytes(600, 300), loss: 0, delayMs: 60 });
  const est = run(e, 10, 50_000, () => 0);
  const last = est[est.length - 1]!;
  assert.ok(last > 1.25 * (0.7 * last + 40) + 100, `estimate ${Math.round(last)} stayed at the step`);
  assert.ok(last >= 1500, `estimate ${Math.round(last)}`);
});

test("near the rate at which the path last filled up, the estimate probes at most 10% a second", () => {
  const e = new BandwidthEstimator({ initialKbps: 1000 });
  e.update({ intervalMs: 300, bytes: bytes(900, 300), loss: 0, delayMs: 0 });
  e.update({ intervalMs: 300, bytes: bytes(900, 300), loss: 0, delayMs: 60 }); // a queue: overuse
  assert.is(e.state, "decrease");
  const link = e.linkKbps!;
  assert.ok(link > 800 && link <= 900, `link ${link}`);
  const start = e.estimateKbps;
  // Clean feedback at what the path carries: after the hold, slow probing up to 1.1× the link.
  let ms = 0;
  let probingMs = 0;
  while (e.estimateKbps < 1.1 * link && ms < 20_000) {
    e.update({ intervalMs: 300, bytes: bytes(900, 300), loss: 0, delayMs: 0 });
    ms += 300;
    if (e.state === "increase") probingMs += 300;
  }
  const perSec = (1.1 * link / start) ** (1000 / probingMs);
  assert.ok(perSec <= 1.11, `probed ×${perSec.toFixed(3)} a second from ${Math.round(start)} to 1.1× the link ${Math.round(link)}`);
  assert.ok(ms < 20_000, "it still gets there");
});

test("an overuse seen in one near-empty interval backs off to the smoothed rate, not to that interval", () => {
  const e = new BandwidthEstimator({ initialKbps: 1000 });
  for (let i = 0; i < 5; i++) e.update({ intervalMs: 300, bytes: bytes(900, 300), loss: 0, delayMs: 0 });
  // Behind a burst's queue only 100 kbit/s arrived in this interval.
  e.update({ intervalMs: 300, bytes: bytes(100, 300), loss: 0, delayMs: 80 });
  assert.ok(e.estimateKbps >= 0.85 * 500 - 1, `estimate ${Math.round(e.estimateKbps)} (the smoothed rate is ~500)`);
  assert.ok(e.estimateKbps < 900);
});

test("after 2 s of heavy loss, a clean path gets its estimate back within ~3 s, sender app-limited or not", () => {
  const e = new BandwidthEstimator({ initialKbps: 800 });
  run(e, 3, 50_000, () => 0.02);
  const before = e.estimateKbps;
  run(e, 2, 50_000, () => 0.35);
  assert.ok(e.estimateKbps < 0.5 * before, `cut by the loss: ${Math.round(e.estimateKbps)} from ${Math.round(before)}`);
  const after = run(e, 3.3, 50_000, () => 0);
  assert.ok(after[after.length - 1]! >= 0.95 * before, `back to ${Math.round(after[after.length - 1]!)} of ${Math.round(before)}: ${after.map(Math.round)}`);
});

test("a queue seen during heavy loss and in the repair burst after it does not erase the estimate from before the loss", () => {
  const e = new BandwidthEstimator({ initialKbps: 800 });
  run(e, 3, 50_000, () => 0.02);
  const before = e.estimateKbps;
  // 2 s of 35% loss, every other interval with a growing queue (retransmissions, a repair
  // keyframe); then the first second clean of loss still shows the repair's queue.
  for (let i = 0; i < 7; i++) e.update({ intervalMs: 300, bytes: bytes(300, 300), loss: 0.35, delayMs: i % 2 ? 80 : 10 });
  for (let i = 0; i < 3; i++) e.update({ intervalMs: 300, bytes: bytes(200, 300), loss: 0, delayMs: 60 + 20 * i });
  assert.ok(e.estimateKbps >= 0.15 * before, `not cut to the floor by the repair's queue: ${Math.round(e.estimateKbps)}`);
  const after = run(e, 3.3, 50_000, () => 0);
  assert.ok(after[after.length - 1]! >= 0.95 * before, `back to ${Math.round(after[after.length - 1]!)} of ${Math.round(before)}: ${after.map(Math.round)}`);
  // A queue that stays once the repair is over is the path's size again: the estimate follows it.
  for (let i = 0; i < 4; i++) e.update({ intervalMs: 300, bytes: bytes(400, 300), loss: 0, delayMs: 60 + 20 * i });
  assert.ok(e.estimateKbps < 400, `a lasting queue still backs off under what arrives: ${Math.round(e.estimateKbps)}`);
});

test.run();
