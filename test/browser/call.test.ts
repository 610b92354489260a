// End to end in headless Debian Chromium: the real edge (workerd + local D1) and a real media
// node (Deno, QUIC), two consultation pages with Chromium's fake camera (1280×720, 20 fps)
// and microphone. Both reach connection-success, each decodes the other's video and audio,
// a still travels, one leaves and the other sees it; screenshots go to test-artifacts/.
import * as assert from "uvu/assert";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { browserSuite, ensureArtifacts, joinUrlOf, lumaVariance, newConsultation, newPage, openAndJoin, pngVariance, sleep, stats, waitState } from "./support.ts";

const { t, env } = browserSuite("browser call: two Chromium terminals");
let a: Page;
let b: Page;
const logs: string[] = [];

t("both join, see connection-success, and decode each other's video and audio", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  a = await newPage(env.browser, (l) => logs.push(`A ${l}`));
  b = await newPage(env.browser, (l) => logs.push(`B ${l}`));
  await openAndJoin(a, joinUrlOf(c, "requester"));
  assert.is(await waitState(a, ["waiting", "call", "error"]), "waiting", "the first terminal waits for the second");
  // The consultation context: the reason, never the patient's name.
  const text = await a.textContent("#context");
  assert.ok(text?.includes("pigmented lesion"), "reason shown");
  assert.not.ok((await a.content()).includes("Test Patient Name"), "no patient name on the page");

  await openAndJoin(b, joinUrlOf(c, "consultant"));
  assert.is(await waitState(b, ["call", "error"]), "call");
  assert.is(await waitState(a, ["call", "error"]), "call");
  for (const p of [a, b]) {
    const ev = await p.evaluate(() => (window as any).__huizhen.events.map((e: any) => e.type));
    assert.ok(ev.includes("connection-success"), "connection-success event");
    assert.ok(await p.isVisible("#success"), "the connection-success banner is visible");
  }

  // Let the pipeline settle (first keyframe, playout delay), then measure 5 s.
  await sleep(2500);
  const before = await Promise.all([stats(a), stats(b)]);
  const t0 = Date.now();
  await sleep(5000);
  const after = await Promise.all([stats(a), stats(b)]);
  const secs = (Date.now() - t0) / 1000;
  for (const [i, name] of [[0, "requester"], [1, "consultant"]] as const) {
    const s0 = before[i], s1 = after[i];
    const fps = (s1.recv.framesDecoded - s0.recv.framesDecoded) / secs;
    const audio = (s1.recv.audioPacketsDecoded - s0.recv.audioPacketsDecoded) / secs;
    console.log(`  ${name}: decoded ${fps.toFixed(1)} fps at ${s1.recv.width}×${s1.recv.height}, rendered ${s1.recv.fps.toFixed(1)} fps, audio ${audio.toFixed(1)} packets/s, ` +
      `latency p50 ${s1.recv.latencyMs?.toFixed(0)} ms p95 ${s1.recv.latencyP95Ms?.toFixed(0)} ms, loss ${s1.recv.lossPct.toFixed(2)}%, codec ${s1.send.codec}, sent ${s1.send.width}×${s1.send.height}`);
    assert.ok(fps >= 15, `${name} decoded ${fps.toFixed(1)} fps (want ≥ 15)`);
    assert.is(s1.recv.width, 1280, `${name} receives the width sent`);
    assert.is(s1.recv.height, 720, `${name} receives the height sent`);
    assert.is(s1.send.height, 720);
    assert.ok(audio >= 25, `${name} decoded ${audio.toFixed(1)} audio packets/s (20 ms Opus: ~50)`);
  }
  const q = await a.textContent("#quality-text");
  assert.match(q ?? "", /video 720p, \d+ ms behind, [\d.]+% loss/);

  // Screenshots during the call, checked non-blank, plus the remote canvas itself.
  const dir = await ensureArtifacts();
  for (const [p, name] of [[a, "requester"], [b, "consultant"]] as const) {
    const png = await p.screenshot({ path: join(dir, `call-${name}.png`) });
    const v = await pngVariance(p, png);
    assert.ok(v > 100, `${name} screenshot has content (luma variance ${v.toFixed(0)})`);
    const rv = await lumaVariance(p, "#remote");
    assert.ok(rv > 100, `${name} remote video is not blank (luma variance ${rv.toFixed(0)})`);
  }
});

t("a clinical still travels losslessly at full camera resolution", async () => {
  await a.evaluate(() => (window as any).__huizhen.requestStill());
  await a.waitForFunction(() => (window as any).__huizhen.stills.length > 0, undefined, { timeout: 20_000 });
  const still = await a.evaluate(() => (window as any).__huizhen.stills[0]);
  console.log(`  still: ${still.width}×${still.height} ${still.mime} ${still.bytes} bytes`);
  assert.ok(still.width >= 1280 && still.height >= 720, "full resolution");
  assert.ok(still.bytes > 1000, "an image, not an empty blob");
  await b.waitForFunction(() => (window as any).__huizhen.stillsSent.length > 0, undefined, { timeout: 10_000 });
  const sent = await b.evaluate(() => (window as any).__huizhen.stillsSent[0]);
  assert.is(still.sha256, sent.sha256, "bit for bit the image the other side took");
  assert.is(still.bytes, sent.bytes);
  assert.ok(await a.isVisible("#still-save"), "save button shown");
  await a.screenshot({ path: join(await ensureArtifacts(), "still-requester.png") });
});

t("camera off and mute reach the other side; video comes back after", async () => {
  await a.click("#cam-btn");
  await a.click("#mic-btn");
  assert.is(await a.getAttribute("#cam-btn", "aria-pressed"), "true");
  await b.waitForSelector("#remote-placeholder:not([hidden])", { timeout: 5000 });
  assert.match((await b.textContent("#peer-name")) ?? "", /microphone off/);
  await b.waitForFunction(() => /paused its camera/.test(document.querySelector("#quality-text")?.textContent ?? ""), undefined, { timeout: 5000 });
  const frozen = (await stats(b)).recv.framesRendered;
  await a.click("#cam-btn");
  await a.click("#mic-btn");
  await b.waitForSelector("#remote-placeholder", { state: "hidden", timeout: 5000 });
  await sleep(2000);
  assert.ok((await stats(b)).recv.framesRendered > frozen + 20, "video flows again");
});

t("one leaves, the other sees it", async () => {
  await b.click("#leave-btn");
  const state = await waitState(b, ["ended", "error"]);
  assert.is(state, "ended", `leaving shows the end screen (got ${state}: ${await b.textContent("#message-text")})`);
  assert.is(await waitState(a, ["waiting", "ended", "error"], 15_000), "waiting");
  const ev = await a.evaluate(() => (window as any).__huizhen.events.map((e: any) => e.type));
  assert.ok(ev.includes("peer-left"));
  assert.match((await a.textContent("#waiting-note")) ?? "", /left the consultation/);
});

t("codec negotiation: a terminal that cannot decode H.264 gets another codec", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const p = await newPage(env.browser);
  const q = await newPage(env.browser);
  // Simulates a browser without an H.264 decoder (the page announces what it can decode).
  await q.addInitScript(`{
    const orig = VideoDecoder.isConfigSupported.bind(VideoDecoder);
    VideoDecoder.isConfigSupported = (cfg) => cfg.codec.startsWith("avc1") ? Promise.resolve({ supported: false, config: cfg }) : orig(cfg);
  }`);
  await openAndJoin(p, joinUrlOf(c, "requester"));
  await openAndJoin(q, joinUrlOf(c, "consultant"));
  assert.is(await waitState(q, ["call", "error"]), "call");
  await sleep(3000);
  const sp = await stats(p);
  const sq0 = await stats(q);
  await sleep(2000);
  const sq = await stats(q);
  console.log(`  requester sends ${sp.send.codec} to the consultant, which sends ${sq.send.codec}; consultant decodes ${sq.recv.width}×${sq.recv.height}, ${sq.recv.framesDecoded - sq0.recv.framesDecoded} frames in 2 s`);
  assert.not.ok(sp.send.codec.startsWith("avc1"), `the requester switched away from H.264 (${sp.send.codec})`);
  assert.ok(sq.send.codec.startsWith("avc1"), "the other direction keeps H.264");
  // Software VP8 is far slower than H.264 on this machine: the point here is that it decodes.
  assert.ok(sq.recv.framesDecoded - sq0.recv.framesDecoded >= 4, "the consultant decodes the other codec");
  assert.ok(sq.recv.height > 0);
  await p.context().close();
  await q.context().close();
});

t.run();
