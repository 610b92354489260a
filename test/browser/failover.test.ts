// Failover in headless Chromium: the real edge and two real media nodes (Deno, QUIC), two
// consultation pages in a call; the node carrying the call is killed (SIGKILL, no goodbye).
// Both pages must notice, show "reconnecting", ask the edge for the group's new node, rejoin
// it and decode the other's video again within a few seconds — without the peer counting as
// gone and without a second connection-success. Also checks the pre-join probe of the nodes
// the edge offers (GET /v1/join `candidates`).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Browser, Page } from "playwright-core";
import { startStack, type Stack } from "../../scripts/stack.ts";
import { joinUrlOf, launchChromium, newConsultation, newPage, openAndJoin, sleep, stackLog, stats, waitState } from "./support.ts";

const t = suite("browser failover: the node in use dies mid-call");
let stack: Stack;
let browser: Browser;
const logs: string[] = [];

t.before(async () => {
  stack = await startStack({ nodes: [{}, {}], log: stackLog });
  browser = await launchChromium();
});

t.after(async () => {
  await browser?.close().catch(() => undefined);
  await stack?.stop();
});

const hz = (p: Page) => p.evaluate(() => {
  const h = (window as any).__huizhen;
  return { state: h.state as string, nodeId: h.nodeId as string, decoded: h.framesDecoded() as number, events: h.events.map((e: any) => ({ at: e.at, type: e.type, detail: e.detail })) as { at: number; type: string; detail: any }[] };
});

t("both pages move to the other node and decode video again", async () => {
  const c = await newConsultation(stack.edgeUrl, stack.clinicApiKey);
  const a = await newPage(browser, (l) => logs.push(`A ${l}`));
  const b = await newPage(browser, (l) => logs.push(`B ${l}`));
  try {
    await openAndJoin(a, joinUrlOf(c, "requester"));
    await waitState(a, ["waiting", "call", "error"]);
    await openAndJoin(b, joinUrlOf(c, "consultant"));
    assert.is(await waitState(b, ["call", "error"]), "call");
    assert.is(await waitState(a, ["call", "error"]), "call");

    // Pre-join: both nodes were offered and probed; the one in use answered every probe.
    const pre = await hz(a);
    const m = pre.events.find((e) => e.type === "path-measurements")?.detail as { nodeId: string; rttMs: number; jitterMs: number; loss: number }[];
    assert.ok(m, "the page measured its paths before joining");
    assert.equal(new Set(m.map((x) => x.nodeId)), new Set(stack.nodes.map((n) => n.id)), "both nodes probed");
    for (const x of m) assert.ok(x.loss < 0.5 && x.rttMs < 500, `path to ${x.nodeId}: ${JSON.stringify(x)}`);
    console.log(`  pre-join probe: ${m.map((x) => `${x.nodeId} rtt ${x.rttMs} ms jitter ${x.jitterMs} ms loss ${x.loss}`).join("; ")}`);
    const note = await a.textContent("#chk-network");
    assert.match(note ?? "", /round trip \d+ ms, jitter [\d.]+ ms, loss [\d.]+%/);

    await sleep(2500);
    const s0 = await Promise.all([stats(a), stats(b)]);
    for (const s of s0) assert.ok(s.recv.framesDecoded > 10, "video decodes before the kill");

    const before = await Promise.all([hz(a), hz(b)]);
    assert.is(before[0].nodeId, before[1].nodeId, "both on one node");
    const victim = stack.nodes.find((n) => n.id === before[0].nodeId)!;
    const other = stack.nodes.find((n) => n !== victim)!;
    assert.ok(victim, "the node in use is one of the stack's");
    const killedAt = Date.now();
    await victim.kill();

    // Each page: the first moment after the move its decoder counts new frames.
    const resumedAt: (number | undefined)[] = [undefined, undefined];
    const movedCount: number[] = [0, 0];
    const sawReconnecting = [false, false];
    const deadline = killedAt + 12_000;
    while (Date.now() < deadline && resumedAt.some((x) => x === undefined)) {
      const now = await Promise.all([hz(a), hz(b)]);
      for (const i of [0, 1]) {
        const h = now[i]!;
        if (h.state === "reconnecting") sawReconnecting[i] = true;
        const moved = h.events.find((e) => e.type === "moved" && e.at >= killedAt);
        if (!moved) { movedCount[i] = h.decoded; continue; }
        if (resumedAt[i] === undefined && h.decoded > movedCount[i]! + 2 && h.nodeId === other.id) resumedAt[i] = Date.now();
      }
      await sleep(50);
    }
    const after = await Promise.all([hz(a), hz(b)]);
    for (const [i, name] of [[0, "requester"], [1, "consultant"]] as const) {
      const h = after[i]!;
      const ev = h.events.filter((e) => e.at >= killedAt);
      const moved = ev.find((e) => e.type === "moved")?.detail;
      const recon = ev.find((e) => e.type === "reconnecting");
      const ms = resumedAt[i] !== undefined ? resumedAt[i]! - killedAt : undefined;
      console.log(`  ${name}: reconnecting after ${recon ? recon.at - killedAt : "?"} ms, rejoined ${moved ? moved.to : "?"} after ${moved?.rejoinMs ?? "?"} ms of moving, video decoding again ${ms ?? "never"} ms after the kill`);
      assert.ok(recon, `${name} went into reconnecting`);
      assert.is(recon!.detail.reason, "nodeLost");
      assert.ok(sawReconnecting[i] || ev.some((e) => e.type === "state:reconnecting"), `${name} showed the reconnecting state`);
      assert.is(moved?.to, other.id, `${name} moved to the surviving node`);
      assert.ok(ms !== undefined && ms < 5000, `${name} decodes video again within 5 s of the kill (${ms} ms)`);
      assert.ok(!ev.some((e) => e.type === "ended" || e.type === "error" || e.type === "connection-success"), `${name}: no end, error or second connection-success (${ev.map((e) => e.type).join(", ")})`);
      assert.is(h.state, "call");
    }
    assert.not.ok(await a.isVisible("#reconnecting"), "the reconnecting banner is gone");

    // Media keeps flowing on the new node, both ways.
    const m0 = await Promise.all([hz(a), hz(b)]);
    await sleep(2000);
    const m1 = await Promise.all([hz(a), hz(b)]);
    for (const i of [0, 1]) {
      const fps = (m1[i]!.decoded - m0[i]!.decoded) / 2;
      assert.ok(fps >= 10, `decoding ${fps} fps after the move`);
    }
  } catch (err) {
    console.log(logs.slice(-30).join("\n"));
    console.log(stack.output().slice(-40).join("\n"));
    throw err;
  } finally {
    await a.close().catch(() => undefined);
    await b.close().catch(() => undefined);
  }
});

t.run();
