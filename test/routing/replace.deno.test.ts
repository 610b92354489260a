// The edge's move of a live consultation (POST /v1/join/replace, edge/failover.ts) in process:
// the real app and SQLite store with a recording stand-in for the nodes' control API (the
// edge's own logic — races, refusals, records — cannot be driven on demand with real nodes;
// test/routing/failover.deno.test.ts does the move end to end on real nodes).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeJwt } from "jose";
import { nodeAudience } from "../../src/token/claims.ts";
import { makeEdge } from "../edge/harness.ts";

const e = await makeEdge({ nodes: ["node-a", "node-b", "node-c"] });
for (const id of ["node-a", "node-b", "node-c"]) assert.is((await e.heartbeat(id)).status, 200);

const replace = (token: string, body: Record<string, unknown>) => e.call("POST", "/v1/join/replace", token, body);
const failovers = async (id: string) => (await e.call("GET", `/v1/consultations/${id}`, e.clinic.apiKey)).body.events.filter((x: { action: string }) => x.action === "failover");

const created = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
const from = created.group.node.id as string;
const tokenOf = (role: string) => created.tokens.find((t: { role: string }) => t.role === role).token as string;
let to = "";

test("both terminals asking at once get the same new node; one move recorded", async () => {
  const before = await e.count("consultations");
  const [x, y] = await Promise.all([
    replace(tokenOf("requester"), { consultationId: created.id, failedNodeId: from, reason: "nodeLost" }),
    replace(tokenOf("consultant"), { consultationId: created.id, failedNodeId: from, reason: "nodeLost" }),
  ]);
  assert.is(x.status, 200, JSON.stringify(x.body));
  assert.is(y.status, 200, JSON.stringify(y.body));
  to = x.body.node.id;
  assert.is.not(to, from);
  assert.is(y.body.node.id, to);
  assert.is([x.body.moved, y.body.moved].filter(Boolean).length, 1, "exactly one request moved the record");
  assert.is(decodeJwt(x.body.token).aud, nodeAudience(to));
  assert.is(decodeJwt(y.body.token).sub, created.tokens.find((t: { role: string }) => t.role === "consultant").terminalId);
  assert.is(decodeJwt(y.body.token).gid, created.group.id, "same group, new node");
  assert.is(await e.count("consultations"), before, "never a second consultation");
  const moves = await failovers(created.id);
  assert.is(moves.length, 1);
  assert.equal([moves[0].detail.fromNodeId, moves[0].detail.toNodeId, moves[0].detail.reason], [from, to, "nodeLost"]);
  const rec = (await e.call("GET", `/v1/consultations/${created.id}`, e.clinic.apiKey)).body;
  assert.is(rec.group.node.id, to);
  // Reservations on a node other than the winner's were released.
  const stray = e.nodeApi.reserved.filter((r) => r.req.groupId === created.group.id && r.nodeId !== to && r.nodeId !== from).map((r) => r.nodeId);
  for (const n of stray) assert.ok(e.nodeApi.closed.some((c) => c.nodeId === n && c.groupId === created.group.id), `reservation on ${n} released`);
});

test("a late request naming the old node gets the current placement, no second move", async () => {
  const r = await replace(tokenOf("requester"), { consultationId: created.id, failedNodeId: from, reason: "nodeLost" });
  assert.is(r.status, 200);
  assert.is(r.body.node.id, to);
  assert.is(r.body.moved, false);
  assert.is((await failovers(created.id)).length, 1);
});

test("a draining or degraded node is released, and measurements sent with the move are used", async () => {
  const other = ["node-a", "node-b", "node-c"].find((n) => n !== from && n !== to)!;
  // The requester measured the old node `from` as far better than `other`; `from` is excluded
  // only while it is the failed node — here the failed one is `to`.
  const ms = [{ nodeId: other, rttMs: 300, jitterMs: 5, loss: 0.02 }, { nodeId: from, rttMs: 5, jitterMs: 1, loss: 0 }];
  const r = await replace(tokenOf("requester"), { consultationId: created.id, failedNodeId: to, reason: "pathDegraded", measurements: ms });
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.is(r.body.node.id, from, "the better measured node wins");
  await new Promise((res) => setTimeout(res, 20));
  assert.ok(e.nodeApi.closed.some((c) => c.nodeId === to && c.groupId === created.group.id && c.reason === "nodeDraining"), "old node told to let the other member go");
  to = from;
});

test("an expired token still moves the call; bad tokens, other consultations and bad bodies are refused", async () => {
  e.clock.t += 700_000; // past the token's 600 s, within the group's life
  for (const id of ["node-a", "node-b", "node-c"]) await e.heartbeat(id);
  const r = await replace(tokenOf("consultant"), { consultationId: created.id, failedNodeId: "node-x", reason: "nodeLost" });
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.is(r.body.node.id, to);
  assert.is((await replace("garbage", { consultationId: created.id, failedNodeId: to, reason: "nodeLost" })).status, 401);
  const second = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  assert.is((await replace(tokenOf("requester"), { consultationId: second.id, failedNodeId: to, reason: "nodeLost" })).status, 401);
  const bad = await replace(tokenOf("requester"), { consultationId: created.id, failedNodeId: to, reason: "whim" });
  assert.is(bad.status, 400);
  assert.is(bad.body.error.field, "reason");
});

test("no other node: 503 and the record stays where it was", async () => {
  for (const n of ["node-a", "node-b", "node-c"]) if (n !== to) e.nodeApi.refuse.add(n);
  const r = await replace(tokenOf("requester"), { consultationId: created.id, failedNodeId: to, reason: "nodeLost" });
  assert.is(r.status, 503);
  assert.is(r.body.error.code, "no_media_node");
  assert.is((await e.call("GET", `/v1/consultations/${created.id}`, e.clinic.apiKey)).body.group.node.id, to);
  e.nodeApi.refuse.clear();
});

test("a revoked token or an ended consultation cannot move", async () => {
  const rec = (await e.call("GET", `/v1/consultations/${created.id}`, e.clinic.apiKey)).body;
  const jti = rec.tokens.find((t: { terminalId: string }) => t.terminalId === e.requester.id).jti;
  assert.is((await e.call("DELETE", `/v1/consultations/${created.id}/tokens/${jti}`, e.clinic.apiKey)).status, 200);
  assert.is((await replace(tokenOf("requester"), { consultationId: created.id, failedNodeId: to, reason: "nodeLost" })).status, 403);
  assert.is((await e.call("POST", `/v1/consultations/${created.id}/end`, e.clinic.apiKey)).status, 200);
  assert.is((await replace(tokenOf("consultant"), { consultationId: created.id, failedNodeId: to, reason: "nodeLost" })).status, 410);
});

test.run();
