// Simulcast in real Chromium: both terminals publish two layers of the fake camera (720p and
// 360p) once the node's estimate of their uplink allows it. Then the requester's downlink is
// cut to 400 kbit/s by the userspace impairment relay (this kernel has no netem): the node
// moves the requester to the consultant's 360p layer at a keyframe, while the consultant keeps
// decoding the requester's 720p. When the limit lifts, the requester climbs back to 720p. And
// behind a 300 kbit/s uplink a terminal never adds a second layer. The page is pointed at the
// relay by rewriting the node URL in its GET /v1/join answer (a test-only interception, as in
// network.test.ts). HZ_TRACE=1 prints the pages' stats while waiting.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Browser, Page } from "playwright-core";
import { startStack, type Stack } from "../../scripts/stack.ts";
import { ImpairmentRelay, PROFILES } from "../support/impairment-relay.ts";
import { joinUrlOf, launchChromium, newConsultation, newPage, openAndJoin, sleep, stackLog, stats, waitState, routeNodeThrough } from "./support.ts";

const t = suite("browser simulcast");
let stack: Stack;
let browser: Browser;
let relay: ImpairmentRelay;

t.before(async () => {
  stack = await startStack({ log: stackLog });
  browser = await launchChromium();
  relay = await ImpairmentRelay.start({ target: { port: stack.node.port }, profile: PROFILES.clean!, seed: 5 });
});

// The relay's profile applies to every flow through it: each case closes its pages, even on failure.
const open: Page[] = [];
async function twoPages(): Promise<[Page, Page]> {
  const a = await newPage(browser);
  const b = await newPage(browser);
  open.push(a, b);
  return [a, b];
}
t.after.each(async () => {
  await Promise.all(open.splice(0).map((p) => p.context().close().catch(() => undefined)));
  relay.setProfile(PROFILES.clean!);
});

t.after(async () => {
  await browser?.close().catch(() => undefined);
  await relay?.close();
  await stack?.stop();
});

interface Sample { at: number; height: number; layer: number; rendered: number; audio: number; sendLayers: number }

async function sample(page: Page, t0: number): Promise<Sample | undefined> {
  const s = await stats(page);
  if (!s) return undefined;
  return { at: Date.now() - t0, height: s.recv.height, layer: s.recv.layer, rendered: s.recv.framesRendered, audio: s.recv.audioPacketsDecoded, sendLayers: s.send.layers.length };
}

/** Polls until `ok` holds for a page's stats; returns the time it took, ms (or -1 at the deadline). */
async function until(page: Page, ok: (s: any) => boolean, timeoutMs: number): Promise<number> {
  const start = Date.now();
  let shown = 0;
  while (Date.now() - start < timeoutMs) {
    const s = await stats(page);
    if (s && ok(s)) return Date.now() - start;
    if (process.env.HZ_TRACE && s && Date.now() - shown > 2000) {
      shown = Date.now();
      console.log(`    ${((Date.now() - start) / 1000).toFixed(0)} s: node target ${s.send.nodeTargetKbps}, uplink ${s.send.uplinkKbps}, sent ${Math.round(s.send.videoKbps)}+${Math.round(s.send.audioKbps)} kbit/s, layers ${s.send.layers.map((l: any) => `${l.height}@${l.fps}/${l.bitrateKbps}`).join(" ")}; receives ${s.recv.height}p layer ${s.recv.layer} ${s.recv.fps.toFixed(0)} fps (path estimate ${s.recv.nodeEstimateKbps}), rtt ${s.rttMs}`);
    }
    await sleep(250);
  }
  return -1;
}

t("the thin side decodes the 360p layer while the other decodes 720p, and climbs back when the limit lifts", async () => {
  const c = await newConsultation(stack.edgeUrl, stack.clinicApiKey);
  const [a, b] = await twoPages();
  await routeNodeThrough(a, stack.node.port, relay.port);
  await openAndJoin(a, joinUrlOf(c, "requester"));
  await openAndJoin(b, joinUrlOf(c, "consultant"));
  assert.is(await waitState(a, ["call", "error"], 30_000), "call");
  assert.is(await waitState(b, ["call", "error"], 30_000), "call");
  const t0 = Date.now();

  // 1. A clean path: both publish two layers and each decodes the other's 720p.
  const twoLayers = (s: any) => s.send.layers.length === 2 && s.send.layers[0].height === 360 && s.send.layers[1].height === 720;
  const upA = await until(a, twoLayers, 30_000);
  const upB = await until(b, twoLayers, 30_000);
  const sb = await stats(b);
  console.log(`  simulcast on after ${((Date.now() - t0) / 1000).toFixed(1)} s: consultant uplink estimate ${sb.send.uplinkKbps} kbit/s, layers ${JSON.stringify(sb.send.layers)}`);
  assert.ok(upA >= 0 && upB >= 0, "both terminals publish 360p + 720p");
  const hdA = await until(a, (s) => s.recv.height === 720 && s.recv.layer === 1, 20_000);
  const hdB = await until(b, (s) => s.recv.height === 720 && s.recv.layer === 1, 20_000);
  assert.ok(hdA >= 0 && hdB >= 0, `both decode the 720p layer (requester ${hdA} ms, consultant ${hdB} ms)`);

  // 2. The requester's downlink drops to 400 kbit/s.
  relay.setProfile({ name: "400 kbit/s downlink", down: { rateKbps: 400, queueMs: 200 } });
  const downMs = await until(a, (s) => s.recv.height === 360 && s.recv.layer === 0, 15_000);
  console.log(`  requester moved to 360p ${downMs} ms after its downlink fell to 400 kbit/s`);
  assert.ok(downMs >= 0, "the thin side is moved to the 360p layer");
  await sleep(2000);
  const samplesA: Sample[] = [];
  const samplesB: Sample[] = [];
  for (let i = 0; i < 24; i++) { // 12 s
    const [x, y] = await Promise.all([sample(a, t0), sample(b, t0)]);
    if (x) samplesA.push(x);
    if (y) samplesB.push(y);
    await sleep(500);
  }
  const share = (xs: Sample[], h: number) => xs.filter((x) => x.height === h).length / Math.max(1, xs.length);
  const fps = (xs: Sample[]) => (xs[xs.length - 1]!.rendered - xs[0]!.rendered) / ((xs[xs.length - 1]!.at - xs[0]!.at) / 1000);
  const audio = (xs: Sample[]) => (xs[xs.length - 1]!.audio - xs[0]!.audio) / ((xs[xs.length - 1]!.at - xs[0]!.at) / 1000);
  const sa = await stats(a);
  console.log(`  thin phase (12 s): requester at 360p ${(share(samplesA, 360) * 100).toFixed(0)}% of samples, ${fps(samplesA).toFixed(1)} fps, ${audio(samplesA).toFixed(0)} audio packets/s, layer switches ${sa.recv.layerSwitches}; consultant at 720p ${(share(samplesB, 720) * 100).toFixed(0)}%, ${fps(samplesB).toFixed(1)} fps; quality "${await a.textContent("#quality-text")}"`);
  assert.ok(share(samplesA, 360) >= 0.6, "the thin side mostly decodes 360p");
  assert.ok(share(samplesB, 720) >= 0.9, "the other side keeps 720p");
  assert.ok(fps(samplesA) >= 8, `the thin side's video keeps playing (${fps(samplesA).toFixed(1)} fps)`);
  assert.ok(audio(samplesA) >= 40, `the thin side's audio keeps playing (${audio(samplesA).toFixed(0)} packets/s of 50)`);
  assert.ok(fps(samplesB) >= 12, `the other side's video keeps playing (${fps(samplesB).toFixed(1)} fps)`);
  assert.match((await a.textContent("#quality-text")) ?? "", /video 360p, \d+ ms behind, [\d.]+% loss, layer 0 of their simulcast/);

  // 3. The limit lifts: back to 720p within seconds.
  relay.setProfile(PROFILES.clean!);
  const backMs = await until(a, (s) => s.recv.height === 720 && s.recv.layer === 1, 30_000);
  console.log(`  requester back on 720p ${backMs} ms after the limit lifted`);
  assert.ok(backMs >= 0, "the thin side climbs back to 720p");
  const after: Sample[] = [];
  for (let i = 0; i < 12; i++) { // 6 s
    const x = await sample(a, t0);
    if (x) after.push(x);
    await sleep(500);
  }
  console.log(`  after the climb (6 s): requester at 720p ${(share(after, 720) * 100).toFixed(0)}% of samples, ${fps(after).toFixed(1)} fps`);
  assert.ok(share(after, 720) >= 0.75, "it stays on 720p");
  assert.ok(fps(after) >= 12, `${fps(after).toFixed(1)} fps`);
});

t("a 300 kbit/s uplink publishes one layer only; the other side still gets video", async () => {
  relay.setProfile(PROFILES["300 kbit/s uplink"]!);
  const c = await newConsultation(stack.edgeUrl, stack.clinicApiKey);
  const [a, b] = await twoPages();
  await routeNodeThrough(a, stack.node.port, relay.port);
  await openAndJoin(a, joinUrlOf(c, "requester"));
  await openAndJoin(b, joinUrlOf(c, "consultant"));
  assert.is(await waitState(a, ["call", "error"], 30_000), "call");
  assert.is(await waitState(b, ["call", "error"], 30_000), "call");
  const layers = new Set<number>();
  let s0: any;
  for (let i = 0; i < 30; i++) { // 15 s
    const s = await stats(a);
    if (s) layers.add(s.send.layers.length);
    if (process.env.HZ_TRACE && s && i % 4 === 0) console.log(`    ${i / 2} s: node target ${s.send.nodeTargetKbps}, uplink ${s.send.uplinkKbps}, layers ${JSON.stringify(s.send.layers)}`);
    if (i === 10) s0 = await stats(b);
    await sleep(500);
  }
  const sa = await stats(a);
  const sb = await stats(b);
  const fpsB = (sb.recv.framesRendered - s0.recv.framesRendered) / 10;
  console.log(`  300 kbit/s uplink: requester's uplink estimate ${sa.send.uplinkKbps} kbit/s, layers seen ${JSON.stringify([...layers])}, sending ${sa.send.layers.map((l: any) => `${l.height}p@${l.fps}`).join("+")} at ${Math.round(sa.send.videoKbps)} kbit/s; consultant ${sb.recv.height}p at ${fpsB.toFixed(1)} fps`);
  assert.equal([...layers], [1], "never a second layer");
  assert.ok(sa.send.layers[0].height <= 540, `${sa.send.layers[0].height}p fits 300 kbit/s`);
  assert.ok(fpsB >= 5, `the consultant still gets video (${fpsB.toFixed(1)} fps)`);
});

t.run();
