// The edge's record of a cascade, in process (real app and SQLite store; the nodes' control API
// is the recording stand-in of test/edge/harness.ts, given a `cascade` call that accepts, so
// refusals and the record can be driven on demand; test/routing/cascade-edge.deno.test.ts runs
// a cascade on real nodes).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeJwt } from "jose";
import { nodeAudience } from "../../src/token/claims.ts";
import { makeEdge } from "../edge/harness.ts";

const e = await makeEdge({ nodes: ["node-a", "node-b", "node-c"] });
const cascades: { nodeId: string; groupId: string; peerNodeId: string; token: string }[] = [];
let linkOk = true;
(e.nodeApi as unknown as { cascade: unknown }).cascade = async (node: { id: string }, groupId: string, spec: { peerNodeId: string; token: string }) => {
  cascades.push({ nodeId: node.id, groupId, peerNodeId: spec.peerNodeId, token: spec.token });
  return { ok: linkOk };
};
for (const id of ["node-a", "node-b", "node-c"]) await e.heartbeat(id);
const far = { rttMs: 200, jitterMs: 10, loss: 0.05 };
const measure = (term: { id: string; secret: string }, ms: unknown[]) => e.call("POST", `/v1/terminals/${term.id}/measurements`, term.secret, { measurements: ms });
await measure(e.requester, [{ nodeId: "node-a", rttMs: 5, jitterMs: 1, loss: 0 }, { nodeId: "node-b", ...far }, { nodeId: "node-c", ...far }]);
await measure(e.consultant, [{ nodeId: "node-a", ...far }, { nodeId: "node-b", rttMs: 5, jitterMs: 1, loss: 0 }, { nodeId: "node-c", ...far }]);

const tokenOf = (c: any, role: string) => c.tokens.find((t: { role: string }) => t.role === role);

test("a cascade: each token names its terminal's node; the leg node is told to link up, with a token for that pair and group", async () => {
  const r = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  assert.is(r.status, 201, JSON.stringify(r.body));
  assert.is(decodeJwt(tokenOf(r.body, "requester").token).aud, nodeAudience("node-a"));
  assert.is(decodeJwt(tokenOf(r.body, "consultant").token).aud, nodeAudience("node-b"));
  assert.is(tokenOf(r.body, "consultant").node.id, "node-b");
  const link = cascades.at(-1)!;
  assert.equal([link.nodeId, link.peerNodeId, link.groupId], ["node-b", "node-a", r.body.group.id]);
  const claims = decodeJwt(link.token);
  assert.equal([claims.sub, claims.aud, claims.gid], ["node-b", nodeAudience("node-a"), r.body.group.id]);
  // The consultant's invitation points at its own node; a replay of the create answers the same.
  const inv = await e.call("GET", `/v1/terminals/${e.consultant.id}/invitations`, e.consultant.secret);
  assert.is(inv.body.invitations.find((i: { consultationId: string }) => i.consultationId === r.body.id).node.id, "node-b");

  // The leg node speaks for its terminal only, and cannot end the consultation.
  const ev = (type: string, terminalId?: string) => ({ id: `ev-${Math.random()}`, type, consultationId: r.body.id, groupId: r.body.group.id, terminalId, at: Date.now() });
  const post = (events: unknown[]) => e.call("POST", "/v1/nodes/node-b/events", e.nodeSecrets["node-b"], { events });
  assert.is((await post([ev("joined", e.consultant.id), ev("joined", e.requester.id), ev("group-closed")])).status, 200);
  const rec = (await e.call("GET", `/v1/consultations/${r.body.id}`, e.clinic.apiKey)).body;
  assert.is(rec.status, "pending");
  const joined = Object.fromEntries(rec.participants.map((p: { terminalId: string; joinedAt: string | null }) => [p.terminalId, p.joinedAt]));
  assert.ok(joined[e.consultant.id], "the leg node's join of its terminal counts");
  assert.is(joined[e.requester.id], null, "it cannot speak for the other node's terminal");

  // Ending closes the group on both nodes.
  e.nodeApi.closed.length = 0;
  assert.is((await e.call("POST", `/v1/consultations/${r.body.id}/end`, e.clinic.apiKey)).status, 200);
  assert.equal(e.nodeApi.closed.filter((c) => c.groupId === r.body.group.id).map((c) => c.nodeId).sort(), ["node-a", "node-b"]);
});

test("the leg node failing: its terminal is sent to the consultation's node, once", async () => {
  const r = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  const x = await e.call("POST", "/v1/join/replace", tokenOf(r, "consultant").token, { consultationId: r.id, failedNodeId: "node-b", reason: "nodeLost" });
  assert.is(x.status, 200, JSON.stringify(x.body));
  assert.equal([x.body.node.id, x.body.moved], ["node-a", true]);
  assert.is(decodeJwt(x.body.token).aud, nodeAudience("node-a"));
  const again = await e.call("POST", "/v1/join/replace", tokenOf(r, "consultant").token, { consultationId: r.id, failedNodeId: "node-b", reason: "nodeLost" });
  assert.equal([again.body.node.id, again.body.moved], ["node-a", false]);
  const rec = (await e.call("GET", `/v1/consultations/${r.id}`, e.clinic.apiKey)).body;
  assert.is(rec.events.filter((ev: { action: string }) => ev.action === "failover").length, 1);
});

test("a pair that cannot link up gets one node", async () => {
  linkOk = false;
  const r = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  linkOk = true;
  assert.is(r.status, 201);
  assert.is(tokenOf(r.body, "requester").node.id, tokenOf(r.body, "consultant").node.id);
  assert.is(decodeJwt(tokenOf(r.body, "consultant").token).aud, nodeAudience(tokenOf(r.body, "consultant").node.id));
});

test.run();
