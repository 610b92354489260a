// Sender adaptation in real Chromium: the requester's QUIC path to the media node goes through
// the userspace impairment relay with a 1 Mbit/s uplink (this kernel has no netem). The node's
// estimate of the path (from the consultant's receive reports) reaches the requester as a
// target, which caps its video encoder; the consultant keeps seeing video and hearing audio
// with a short delay. The page is pointed at the relay by rewriting the node URL in its
// GET /v1/join answer (a test-only interception, as in loss.test.ts).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Browser } from "playwright-core";
import { startStack, type Stack } from "../../scripts/stack.ts";
import { ImpairmentRelay, PROFILES } from "../support/impairment-relay.ts";
import { joinUrlOf, launchChromium, newConsultation, newPage, openAndJoin, sleep, stackLog, stats, waitState, routeNodeThrough } from "./support.ts";

const t = suite("browser call with a 1 Mbit/s uplink");
let stack: Stack;
let browser: Browser;
let relay: ImpairmentRelay;

t.before(async () => {
  stack = await startStack({ log: stackLog });
  browser = await launchChromium();
  relay = await ImpairmentRelay.start({ target: { port: stack.node.port }, profile: PROFILES["1 Mbit/s uplink"], seed: 11 });
});

t.after(async () => {
  await browser?.close().catch(() => undefined);
  await relay?.close();
  await stack?.stop();
});

t("the requester's encoder follows the node's target under the bottleneck; the consultant keeps video and audio", async () => {
  const c = await newConsultation(stack.edgeUrl, stack.clinicApiKey);
  const a = await newPage(browser);
  const b = await newPage(browser);
  await routeNodeThrough(a, stack.node.port, relay.port);
  await openAndJoin(a, joinUrlOf(c, "requester"));
  await openAndJoin(b, joinUrlOf(c, "consultant"));
  assert.is(await waitState(a, ["call", "error"], 30_000), "call");
  assert.is(await waitState(b, ["call", "error"], 30_000), "call");
  // The sender adapts within seconds.
  const deadline = Date.now() + 10_000;
  let sa = await stats(a);
  while (Date.now() < deadline && !(sa?.send.nodeTargetKbps !== undefined && sa.send.targetKbps <= 1100)) {
    await sleep(500);
    sa = await stats(a);
  }
  assert.ok(sa?.send.nodeTargetKbps !== undefined, "the node sent a target");
  assert.ok(sa.send.nodeTargetKbps <= 1500, `node target ${sa.send.nodeTargetKbps} kbit/s under a 1 Mbit/s uplink`);
  assert.ok(sa.send.targetKbps <= 1100, `encoder target ${sa.send.targetKbps} kbit/s`);
  let s0 = await stats(b);
  for (let i = 0; !s0 && i < 20; i++) { await sleep(250); s0 = await stats(b); }
  assert.ok(s0, `consultant stats (state ${await b.evaluate(() => (window as any).__huizhen.state)})`);
  await sleep(6000);
  const s1 = await stats(b);
  const fps = (s1.recv.framesRendered - s0.recv.framesRendered) / 6;
  const audio = (s1.recv.audioPacketsDecoded - s0.recv.audioPacketsDecoded) / 6;
  const a1 = await stats(a);
  console.log(`  requester: node target ${a1.send.nodeTargetKbps} kbit/s, encoder ${a1.send.targetKbps} kbit/s, sending ${a1.send.videoKbps} kbit/s video; consultant: ${fps.toFixed(1)} fps, ${audio.toFixed(0)} audio packets/s, latency p95 ${s1.recv.latencyP95Ms} ms, quality "${await b.textContent("#quality-text")}"`);
  assert.ok(a1.send.videoKbps < 1000, `video sent ${a1.send.videoKbps} kbit/s fits the uplink`);
  assert.ok(fps >= 10, `video keeps playing (${fps.toFixed(1)} fps)`);
  assert.ok(audio >= 40, `audio keeps playing (${audio.toFixed(0)} packets/s of 50)`);
  assert.ok((s1.recv.latencyP95Ms ?? Infinity) < 600, `latency p95 ${s1.recv.latencyP95Ms} ms`);
  // Each page shows both directions: what it receives, and (from the node) what the other side receives from it.
  const shown = (await a.textContent("#quality-text")) ?? "";
  assert.match(shown, /they receive you at \d+ kbit\/s, [\d.]+% loss/, shown);
});

t.run();
