// Failover in headless Chromium: the real edge and four real media nodes (Deno, QUIC), two
// consultation pages in a call; the node carrying the call is killed (SIGKILL, no goodbye), then the next one drains (SIGTERM),
// then the next one freezes (SIGSTOP).
// Both pages must notice, show "reconnecting", ask the edge for the group's new node, rejoin
// it and decode the other's video again within a few seconds — without the peer counting as
// gone and without a second connection-success. Also checks the pre-join probe of the nodes
// the edge offers (GET /v1/join `candidates`).
import * as assert from "uvu/assert";
import type { Page } from "playwright-core";
import { ClinicClient } from "../support/clinic-client.ts";
import { browserSuite, joinUrlOf, newConsultation, newPage, openAndJoin, sleep, waitState } from "./support.ts";

const { t, env } = browserSuite("browser failover: the node in use dies mid-call", { stack: { nodes: [{}, {}, {}, {}] } });
const logs: string[] = [];

/**
 * Runs `act` on the node in use and waits until both pages have moved to one of `to` and decode
 * the peer's video again; prints and returns the time from `act` to that.
 */
async function interruption(a: Page, b: Page, what: string, from: string, act: () => Promise<void>, reason: string, to: string[]): Promise<number[]> {
  const startedAt = Date.now();
  void act();
  const resumedAt: (number | undefined)[] = [undefined, undefined];
  const decodedAtMove = [0, 0];
  const sawReconnecting = [false, false];
  const deadline = startedAt + 12_000;
  while (Date.now() < deadline && resumedAt.some((x) => x === undefined)) {
    const now = await Promise.all([hz(a), hz(b)]);
    for (const i of [0, 1]) {
      const h = now[i]!;
      if (h.state === "reconnecting") sawReconnecting[i] = true;
      const moved = h.events.find((e) => e.type === "moved" && e.at >= startedAt);
      if (!moved) { decodedAtMove[i] = h.decoded; continue; }
      if (resumedAt[i] === undefined && h.decoded > decodedAtMove[i]! + 2 && h.nodeId !== from) resumedAt[i] = Date.now();
    }
    await sleep(50);
  }
  const after = await Promise.all([hz(a), hz(b)]);
  const out: number[] = [];
  for (const [i, name] of [[0, "requester"], [1, "consultant"]] as const) {
    const h = after[i]!;
    const ev = h.events.filter((e) => e.at >= startedAt);
    const moved = ev.find((e) => e.type === "moved")?.detail;
    const recon = ev.find((e) => e.type === "reconnecting");
    const ms = resumedAt[i] !== undefined ? resumedAt[i]! - startedAt : undefined;
    console.log(`  ${what} ${from}: ${name} reconnecting after ${recon ? recon.at - startedAt : "?"} ms, rejoined ${moved ? moved.to : "?"} after ${moved?.rejoinMs ?? "?"} ms of moving, video decoding again ${ms ?? "never"} ms after the ${what}`);
    assert.ok(recon, `${name} went into reconnecting`);
    assert.is(recon!.detail.reason, reason);
    assert.ok(sawReconnecting[i] || ev.some((e) => e.type === "state:reconnecting"), `${name} showed the reconnecting state`);
    assert.ok(to.includes(moved?.to), `${name} moved to a live node (${moved?.to})`);
    assert.ok(ms !== undefined && ms < 5000, `${name} decodes video again within 5 s of the ${what} (${ms} ms)`);
    assert.ok(!ev.some((e) => e.type === "ended" || e.type === "error" || e.type === "connection-success" || e.type === "peer-left"), `${name}: no end, error, peer-left or second connection-success (${ev.map((e) => e.type).join(", ")})`);
    assert.is(h.state, "call");
    out.push(ms!);
  }
  assert.is(after[0]!.nodeId, after[1]!.nodeId, "both on the same node again");
  assert.not.ok(await a.isVisible("#reconnecting"), "the reconnecting banner is gone");
  return out;
}

const hzNode = (p: Page) => p.evaluate(() => (window as any).__huizhen.nodeId as string);

const hz = (p: Page) => p.evaluate(() => {
  const h = (window as any).__huizhen;
  return { state: h.state as string, nodeId: h.nodeId as string, decoded: h.framesDecoded() as number, events: h.events.map((e: any) => ({ at: e.at, type: e.type, detail: e.detail })) as { at: number; type: string; detail: any }[] };
});

t("both pages move to another node when theirs is killed, then when the next drains, and decode video again", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const a = await newPage(env.browser, (l) => logs.push(`A ${l}`));
  const b = await newPage(env.browser, (l) => logs.push(`B ${l}`));
  try {
    await openAndJoin(a, joinUrlOf(c, "requester"));
    await waitState(a, ["waiting", "call", "error"]);
    await openAndJoin(b, joinUrlOf(c, "consultant"));
    assert.is(await waitState(b, ["call", "error"]), "call");
    assert.is(await waitState(a, ["call", "error"]), "call");

    // Pre-join: every node was offered and probed; the one in use answered every probe.
    const pre = await hz(a);
    const m = pre.events.find((e) => e.type === "path-measurements")?.detail as { nodeId: string; rttMs: number; jitterMs: number; loss: number }[];
    assert.ok(m, "the page measured its paths before joining");
    assert.equal(new Set(m.map((x) => x.nodeId)), new Set(env.stack.nodes.map((n) => n.id)), "every offered node probed");
    for (const x of m) assert.ok(x.loss < 0.5 && x.rttMs < 500, `path to ${x.nodeId}: ${JSON.stringify(x)}`);
    console.log(`  pre-join probe: ${m.map((x) => `${x.nodeId} rtt ${x.rttMs} ms jitter ${x.jitterMs} ms loss ${x.loss}`).join("; ")}`);
    const note = await a.textContent("#chk-network");
    assert.match(note ?? "", /round trip \d+ ms, jitter [\d.]+ ms, loss [\d.]+%/);

    // Video decodes both ways before anything happens to the node.
    for (const p of [a, b]) await p.waitForFunction(() => (window as any).__huizhen.framesDecoded() > 20, undefined, { timeout: 15_000, polling: 100 });

    const before = await Promise.all([hz(a), hz(b)]);
    assert.is(before[0].nodeId, before[1].nodeId, "both on one node");
    const victim = env.stack.nodes.find((n) => n.id === before[0].nodeId)!;
    assert.ok(victim, "the node in use is one of the stack's");
    await interruption(a, b, "kill", victim.id, () => victim.kill(), "nodeLost", env.stack.nodes.filter((n) => n !== victim).map((n) => n.id));

    // Then the node the call moved to drains (SIGTERM: it closes its groups with nodeDraining).
    const now = await hz(a);
    const drained = env.stack.nodes.find((n) => n.id === now.nodeId)!;
    const [last, frozenLater] = env.stack.nodes.filter((n) => n !== victim && n !== drained) as [typeof victim, typeof victim];
    await interruption(a, b, "drain", drained.id, () => drained.stop(), "nodeDraining", [last.id, frozenLater.id]);

    // Then the next node freezes (SIGSTOP: no close, no ICMP, just silence, as when a machine or
    // its link goes away): only the pages' silence watchdog can notice.
    const frozenId = await hzNode(a);
    const frozen = env.stack.nodes.find((n) => n.id === frozenId)!;
    const survivor = env.stack.nodes.find((n) => n !== victim && n !== drained && n !== frozen)!;
    await interruption(a, b, "freeze", frozen.id, async () => { process.kill(-frozen.process.child.pid!, "SIGSTOP"); }, "nodeLost", [survivor.id]);
    await frozen.kill();

    // One consultation, now on the last node, with the three moves recorded.
    const clinic = new ClinicClient(env.stack.edgeUrl, env.stack.clinicApiKey);
    const rec = await clinic.waitForConsultation(c.id, (x) => x.group.node.id === survivor.id);
    assert.is(rec.status, "connected");
    const moves = rec.events.filter((e: { action: string }) => e.action === "failover").map((e: any) => [e.detail.fromNodeId, e.detail.toNodeId, e.detail.reason]);
    assert.equal(moves, [[victim.id, drained.id, "nodeLost"], [drained.id, frozen.id, "nodeDraining"], [frozen.id, survivor.id, "nodeLost"]], JSON.stringify(rec.events));

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
    console.log(env.stack.output().slice(-40).join("\n"));
    throw err;
  } finally {
    await a.close().catch(() => undefined);
    await b.close().catch(() => undefined);
  }
});

t.run();
