// `npm run bench:glass`: capture → render ("glass to glass") latency in one headless Chromium
// run against the real edge and media node on loopback. Two call pages; the sender stamps the
// capture time into each frame's media header, the receiver notes when the decoded frame is
// drawn. Both pages run on this machine's clock, so no clock offset enters the numbers.
// Prints a table; the last line is one JSON object.
import { cpus, loadavg } from "node:os";
import type { Browser } from "playwright-core";
import { startStack, type Stack } from "../scripts/stack.ts";
import { buildClient } from "../scripts/build-client.ts";
import { joinUrlOf, launchChromium, newConsultation, newPage, openAndJoin, sleep, stats, waitState } from "../test/browser/support.ts";

// The encoder starts low and climbs to the named resolution as the node's estimate grows (on a
// clean loopback path about 10–20 s): the rows measure the steady state after that climb.
const WARMUP_MS = Number(process.env.GLASS_WARMUP_MS ?? 20_000);
const MEASURE_MS = Number(process.env.GLASS_MEASURE_MS ?? 10_000);

/** Page options: the height, no CPU step-down and one layer (the row must measure what it names), a codec if set. */
function query(height: number): string {
  return `?height=${height}&adapt=0&simulcast=0${process.env.GLASS_CODEC ? `&codec=${encodeURIComponent(process.env.GLASS_CODEC)}` : ""}`;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

interface Row { label: string; height: number; width: number; fps: number; samples: number; p50: number; p95: number; p99: number; codec: string; bufferMs: number; transitP95Ms: number; encodeMs: number }

async function measure(browser: Browser, stack: Stack, height: 720 | 1080): Promise<Row> {
  const c = await newConsultation(stack.edgeUrl, stack.clinicApiKey, "Benchmark");
  const a = await newPage(browser);
  const b = await newPage(browser);
  try {
    await openAndJoin(a, joinUrlOf(c, "requester", query(height)));
    await openAndJoin(b, joinUrlOf(c, "consultant", query(height)));
    for (const p of [a, b]) {
      if ((await waitState(p, ["call", "error"], 30_000)) !== "call") throw new Error(`page did not reach the call: ${await p.textContent("#message-text")}`);
    }
    await sleep(WARMUP_MS);
    await a.evaluate(() => (window as any).__huizhen.resetLatencySamples());
    await b.evaluate(() => (window as any).__huizhen.resetLatencySamples());
    const s0 = await stats(a);
    const t0 = Date.now();
    await sleep(MEASURE_MS);
    const s1 = await stats(a);
    const secs = (Date.now() - t0) / 1000;
    const samples = [
      ...(await a.evaluate(() => (window as any).__huizhen.latencySamples() as number[])),
      ...(await b.evaluate(() => (window as any).__huizhen.latencySamples() as number[])),
    ].sort((x, y) => x - y);
    return {
      label: `${height}p`, height: s1.recv.height, width: s1.recv.width,
      fps: (s1.recv.framesRendered - s0.recv.framesRendered) / secs,
      samples: samples.length, p50: quantile(samples, 0.5), p95: quantile(samples, 0.95), p99: quantile(samples, 0.99),
      codec: s1.send.codec, bufferMs: s1.recv.jitterBufferMs, transitP95Ms: s1.recv.transitP95Ms ?? NaN, encodeMs: s1.send.encodeMs,
    };
  } finally {
    await a.context().close();
    await b.context().close();
  }
}

async function main() {
  await buildClient();
  const loadAtStart = loadavg()[0]!;
  const stack = await startStack();
  const browser = await launchChromium();
  const rows: Row[] = [];
  try {
    rows.push(await measure(browser, stack, 720));
    rows.push(await measure(browser, stack, 1080));
  } finally {
    await browser.close().catch(() => undefined);
    await stack.stop();
  }
  console.log("capture → render latency, loopback, one Chromium (two pages, software codecs), both directions pooled");
  console.log(`machine load (1 min) at start ${loadAtStart.toFixed(1)}, at end ${loadavg()[0]!.toFixed(1)}, on ${cpus().length} cores (other work on the machine shows up as latency)`);
  console.log("| target | received | codec | rendered fps | samples | p50 ms | p95 ms | p99 ms | encode ms | capture→arrival p95 ms | playout buffer ms |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| ${r.label} | ${r.width}×${r.height} | ${r.codec} | ${r.fps.toFixed(1)} | ${r.samples} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.encodeMs.toFixed(1)} | ${r.transitP95Ms.toFixed(1)} | ${r.bufferMs.toFixed(1)} |`);
  }
  const out: Record<string, { p50Ms: number; p95Ms: number }> = {};
  for (const r of rows) out[r.label] = { p50Ms: Math.round(r.p50 * 10) / 10, p95Ms: Math.round(r.p95 * 10) / 10 };
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
