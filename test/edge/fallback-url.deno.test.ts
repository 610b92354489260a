// The nodes' TCP fallback URL in the edge (migration 4, edge/routes/nodes.ts): a node's
// heartbeat carries it, and every placement the edge hands a terminal includes it — GET
// /v1/join (`node` and `candidates`) and a move's answer (POST /v1/join/replace). In process:
// the real app and SQLite store, with the recording stand-in for the nodes' control API.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { makeEdge } from "./harness.ts";

const e = await makeEdge({ nodes: ["node-a", "node-b"] });
const fallbackOf = (id: string) => `https://${id}.test:443/v1/session`;
const beat = (id: string, extra: Record<string, unknown> = {}) =>
  e.call("POST", `/v1/nodes/${id}/heartbeat`, e.nodeSecrets[id], {
    region: "eu", url: `https://${id}.test:4433/v1/session`, apiUrl: `http://${id}.test:4434`, certHashes: ["aGFzaA=="],
    capacity: { maxSessions: 100, maxGroups: 50, maxKbpsOut: 100000 },
    load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0 }, draining: false, ...extra,
  });

test("a heartbeat's fallback URL must be https; a node may have none", async () => {
  assert.is((await beat("node-a", { fallbackUrl: "http://node-a.test/v1/session" })).status, 400);
  assert.is((await beat("node-a", { fallbackUrl: fallbackOf("node-a") })).status, 200);
  assert.is((await beat("node-b")).status, 200);
  const row = await e.base.db.selectFrom("nodes").select(["id", "fallback_url"]).orderBy("id").execute();
  assert.equal(row.map((r) => ({ ...r })), [{ id: "node-a", fallback_url: fallbackOf("node-a") }, { id: "node-b", fallback_url: null }]);
});

test("GET /v1/join and a move's answer carry the node's fallback URL", async () => {
  e.nodeApi.refuse.add("node-b"); // place the group on node-a
  const created = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  e.nodeApi.refuse.clear();
  assert.is(created.group.node.id, "node-a");
  const token = created.tokens[0].token as string;
  const join = await e.call("GET", "/v1/join", token);
  assert.is(join.status, 200, JSON.stringify(join.body));
  assert.equal(join.body.node, { id: "node-a", url: "https://node-a.test:4433/v1/session", certHashes: ["aGFzaA=="], fallbackUrl: fallbackOf("node-a") });
  const cand = Object.fromEntries(join.body.candidates.map((c: { id: string; fallbackUrl?: string }) => [c.id, c.fallbackUrl]));
  assert.equal(cand, { "node-a": fallbackOf("node-a"), "node-b": undefined });

  // node-b now serves a fallback too; the group moves there.
  assert.is((await beat("node-b", { fallbackUrl: fallbackOf("node-b") })).status, 200);
  const moved = await e.call("POST", "/v1/join/replace", token, { consultationId: created.id, failedNodeId: "node-a", reason: "nodeLost" });
  assert.is(moved.status, 200, JSON.stringify(moved.body));
  assert.equal(moved.body.node, { id: "node-b", url: "https://node-b.test:4433/v1/session", certHashes: ["aGFzaA=="], fallbackUrl: fallbackOf("node-b") });
  // A node that stops serving one stops being offered with one.
  assert.is((await beat("node-b")).status, 200);
  const again = await e.call("GET", "/v1/join", moved.body.token);
  assert.is(again.body.node.fallbackUrl, undefined);
});

test.run();
