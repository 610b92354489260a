// A cascade placed by the real edge (Deno + SQLite) on real media nodes: when the two
// terminals' measurements say each is best served by its own node, the consultation spans two
// nodes — each terminal's token names its own node, the nodes link up, media flows, both joins
// are recorded, ending closes both parts; killing the consultation's node brings both
// terminals onto one node with media flowing again.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { startStack, type Stack } from "../../scripts/stack.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import { interruptionAfter, now, startCall, type Call } from "./support.ts";
import { loadKeySet } from "../../src/token/keys.ts";
import { signNodeApiToken } from "../../src/token/sign.ts";
import { nodeApiAudience } from "../../src/token/claims.ts";
import { randomId } from "../../src/bytes.ts";

const t = suite("routing: cascade placed by the edge");
let stack: Stack;
let clinic: ClinicClient;
let a: { id: string; secret: string };
let b: { id: string; secret: string };
let call: Call | undefined;

type Created = Omit<CreatedConsultation, "tokens"> & { tokens: (CreatedConsultation["tokens"][number] & { node: { id: string; url: string; certHashes?: string[] } })[] };

async function measure(term: { id: string; secret: string }, measurements: { nodeId: string; rttMs: number; jitterMs: number; loss: number }[]) {
  const res = await fetch(`${stack.edgeUrl}/v1/terminals/${term.id}/measurements`, {
    method: "POST", headers: { authorization: `Bearer ${term.secret}`, "content-type": "application/json" },
    body: JSON.stringify({ measurements }),
  });
  assert.is(res.status, 200);
  await res.body?.cancel();
}

async function createCascaded(tag: string): Promise<Created> {
  const r = await clinic.createConsultation({ patient: testPatient(tag), requester: { terminalId: a.id }, consultant: { terminalId: b.id } });
  assert.is(r.status, 201, JSON.stringify(r.body));
  const c = r.body as unknown as Created;
  assert.is(c.tokens.find((x) => x.role === "requester")!.node.id, "node-1");
  assert.is(c.tokens.find((x) => x.role === "consultant")!.node.id, "node-2");
  assert.is(c.group.node.id, "node-1");
  return c;
}

t.before(async () => {
  const fast = { MEDIA_HEARTBEAT_MS: "400", MEDIA_PING_INTERVAL_MS: "500" };
  stack = await startStack({ edge: "deno", edgeEnv: { NODE_STALE_MS: "2000" }, nodes: [{ id: "node-1", env: fast }, { id: "node-2", env: fast }, { id: "node-3", env: fast }] });
  clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  a = await clinic.registerTerminal("Clinic, Lyon", "doctor");
  b = await clinic.registerTerminal("Specialist, Shanghai", "specialist");
  // Each is near its own node; the long public paths (and node-3, in between) are lossy.
  const far = { rttMs: 200, jitterMs: 10, loss: 0.05 };
  await measure(a, [{ nodeId: "node-1", rttMs: 5, jitterMs: 1, loss: 0 }, { nodeId: "node-2", ...far }, { nodeId: "node-3", rttMs: 150, jitterMs: 5, loss: 0.05 }]);
  await measure(b, [{ nodeId: "node-1", ...far }, { nodeId: "node-2", rttMs: 5, jitterMs: 1, loss: 0 }, { nodeId: "node-3", rttMs: 150, jitterMs: 5, loss: 0.05 }]);
});

t.after(async () => {
  call?.a.stop();
  call?.b.stop();
  await call?.stop().catch(() => {});
  await stack?.stop();
});

t("measurements that favour a node each build a cascade: joined, connected, media both ways, ended on both nodes", async () => {
  const c = await createCascaded("C1");
  const join = await fetch(`${stack.edgeUrl}/v1/join`, { headers: { authorization: `Bearer ${c.tokens.find((x) => x.role === "consultant")!.token}` } });
  assert.is(join.status, 200);
  assert.is(((await join.json()) as { node: { id: string } }).node.id, "node-2");
  call = await startCall(stack.edgeUrl, c as CreatedConsultation); // resolves once media flows both ways
  const rec = await clinic.waitForConsultation(c.id, (x) => x.status === "connected" && x.participants.every((p: { joinedAt: string | null }) => p.joinedAt));
  assert.is(rec.group.node.id, "node-1");
  // node-2 (the consultant's) dialed node-1 and carries the group over that one link.
  const keys = await loadKeySet(stack.secrets.SIGNING_KEYS);
  const apiToken = await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeApiAudience("node-2"), jti: randomId("napi", 8) }, keys.active);
  const stats = await (await fetch(`${stack.nodes[1]!.apiUrl}/v1/stats`, { headers: { authorization: `Bearer ${apiToken}` } })).json();
  assert.is(stats.cascade.links.length, 1);
  assert.equal([stats.cascade.links[0].peer, stats.cascade.links[0].role, stats.cascade.links[0].groups], ["node-1", "dialer", 1]);
  assert.ok(stats.cascade.links[0].datagramsIn > 0 && stats.cascade.links[0].datagramsOut > 0);
  const endedA = new Promise((r) => call!.a.session.on("closed", r));
  const endedB = new Promise((r) => call!.b.session.on("closed", r));
  assert.is((await clinic.endConsultation(c.id)).status, 200);
  const reasons = await Promise.race([Promise.all([endedA, endedB]), new Promise((r) => setTimeout(() => r("timeout"), 5000))]);
  assert.equal(reasons, ["consultationEnded", "consultationEnded"], "both nodes closed their part");
  call.a.stop();
  call.b.stop();
  call = undefined;
});

t("killing the consultation's node brings both terminals onto one node", async () => {
  const c = await createCascaded("C2");
  call = await startCall(stack.edgeUrl, c as CreatedConsultation);
  const killedAt = now();
  await stack.nodes[0]!.kill();
  const ms = await interruptionAfter(call, killedAt, 12_000);
  const a1 = call.a.session.placement.nodeId;
  const b1 = call.b.session.placement.nodeId;
  console.log(`  cascade's node killed → both on ${a1}/${b1}; media back both ways ${Math.round(ms)} ms`);
  assert.is(a1, b1, "one node");
  assert.is.not(a1, "node-1");
  assert.ok(ms < 8000, `interruption ${ms} ms`);
  const rec = await clinic.waitForConsultation(c.id, (x) => x.group.node.id === a1);
  assert.is(rec.events.filter((e: { action: string }) => e.action === "failover").length >= 1, true);
});

t.run();
