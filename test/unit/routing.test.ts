import { test } from "uvu";
import * as assert from "uvu/assert";
import { rankNodes, scoreNode, utilisation, isEligible } from "../../src/routing.ts";
import type { MediaNodeInfo, PathMeasurement } from "../../src/types.ts";

const NOW = 1_800_000_000_000;

function node(id: string, over: Partial<MediaNodeInfo> = {}, load: Partial<MediaNodeInfo["load"]> = {}): MediaNodeInfo {
  return {
    id, region: "eu", url: `https://${id}/v1/session`, apiUrl: `http://${id}`, certHashes: [],
    capacity: { maxSessions: 100, maxGroups: 50, maxKbpsOut: 100_000 },
    load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0, ...load },
    lastSeenAt: NOW - 1000, draining: false, ...over,
  };
}
const m = (nodeId: string, rttMs: number, jitterMs = 0, loss = 0, age = 0): PathMeasurement =>
  ({ nodeId, rttMs, jitterMs, loss, measuredAt: NOW - age });

const ids = (r: ReturnType<typeof rankNodes>) => r.map((s) => s.node.id);

// Each case: nodes, context, expected order (ids of eligible nodes, best first).
const cases: { name: string; nodes: MediaNodeInfo[]; ctx: Parameters<typeof rankNodes>[1]; want: string[] }[] = [
  {
    name: "no measurements: the requested region wins",
    nodes: [node("a", { region: "us" }), node("b", { region: "eu" })],
    ctx: { now: NOW, region: "eu" }, want: ["b", "a"],
  },
  {
    name: "no region, no measurements: fewer groups first",
    nodes: [node("a", {}, { groups: 3, sessions: 6 }), node("b", {}, { groups: 1, sessions: 2 })],
    ctx: { now: NOW }, want: ["b", "a"],
  },
  {
    name: "measured path beats region",
    nodes: [node("a", { region: "eu" }), node("b", { region: "us" })],
    ctx: { now: NOW, region: "eu", measurements: { t1: [m("a", 180), m("b", 20)], t2: [m("a", 170), m("b", 30)] } },
    want: ["b", "a"],
  },
  {
    name: "loss counts: 3% loss outweighs 20 ms of RTT",
    nodes: [node("a"), node("b")],
    ctx: { now: NOW, measurements: { t1: [m("a", 20, 0, 0.03), m("b", 40, 0, 0)] } },
    want: ["b", "a"],
  },
  {
    name: "the worst-served terminal matters",
    nodes: [node("a"), node("b")],
    ctx: { now: NOW, measurements: { t1: [m("a", 5), m("b", 40)], t2: [m("a", 150), m("b", 45)] } },
    want: ["b", "a"],
  },
  {
    name: "a loaded node loses to an equally near idle one",
    nodes: [node("a", {}, { sessions: 80 }), node("b")],
    ctx: { now: NOW, measurements: { t1: [m("a", 20), m("b", 22)] } },
    want: ["b", "a"],
  },
  {
    name: "overloaded, draining and silent nodes are not eligible",
    nodes: [node("a", {}, { sessions: 95 }), node("b", { draining: true }), node("c", { lastSeenAt: NOW - 60_000 }), node("d")],
    ctx: { now: NOW }, want: ["d"],
  },
  {
    name: "stale measurements are ignored",
    nodes: [node("a", { region: "us" }), node("b", { region: "eu" })],
    ctx: { now: NOW, region: "eu", measurements: { t1: [m("a", 5, 0, 0, 3_600_000)] } },
    want: ["b", "a"],
  },
  {
    name: "event-loop lag is a load signal",
    nodes: [node("a", {}, { loopLagMs: 120 }), node("b")],
    ctx: { now: NOW }, want: ["b", "a"],
  },
  { name: "no nodes", nodes: [], ctx: { now: NOW }, want: [] },
];

for (const c of cases) {
  test(c.name, () => assert.equal(ids(rankNodes(c.nodes, c.ctx)), c.want));
}

test("utilisation takes the tightest resource", () => {
  assert.is(utilisation(node("a", {}, { sessions: 10, groups: 40, cpu: 0.2 })), 0.8);
  assert.is(utilisation(node("a", {}, { kbpsOut: 50_000 })), 0.5);
  assert.not.ok(isEligible(node("a", {}, { cpu: 0.95 }), { now: NOW }));
});

test("score parts add up", () => {
  const s = scoreNode(node("a", {}, { sessions: 50 }), { now: NOW, measurements: { t: [m("a", 30, 5, 0.01)] } });
  assert.is(s.pathCost, (30 + 10 + 10) * 1.5);
  assert.is(s.loadCost, 25);
  assert.is(s.score, s.pathCost + s.loadCost);
});

test.run();
