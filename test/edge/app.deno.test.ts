// The edge app without a network: built from its parts over an in-memory/temp SQLite store
// (node:sqlite, hence Deno), a recording node client and a hand-driven clock (harness.ts).
// Covers what HTTP tests cannot force: a store write failing halfway, concurrent retries,
// migrations racing, the audit log refusing changes, measurements steering placement, key
// rotation over time.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { MIGRATIONS, migrate } from "../../edge/db/migrations.ts";
import { sqliteStore } from "../../edge/db/sqlite.ts";
import { generateSigningJwk } from "../../src/token/keys.ts";
import { testPatient } from "../support/clinic-client.ts";
import { ADMIN, DatabaseSync, makeEdge } from "./harness.ts";

const t = suite("edge app (in-process, SQLite)");

t("a write failing halfway leaves nothing, answers 500, and the same Idempotency-Key then succeeds once", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  e.state.failNext = true;
  const failed = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), { "idempotency-key": "k-1" });
  assert.is(failed.status, 500);
  assert.is(failed.body.error.code, "store_failed");
  for (const table of ["consultations", "participants", "tokens", "audit_log"] as const) assert.is(await e.count(table), 0, `${table} half-written`);
  assert.is(e.nodeApi.closed.length, 1, "the reserved group was released");
  assert.is(e.nodeApi.closed[0]!.groupId, e.nodeApi.reserved[0]!.req.groupId);
  const ok = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), { "idempotency-key": "k-1" });
  assert.is(ok.status, 201);
  const again = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), { "idempotency-key": "k-1" });
  assert.is(again.body.id, ok.body.id);
  assert.is(await e.count("consultations"), 1);
  assert.is(await e.count("tokens"), 2);
});

t("a write that landed but reported failure stands: 201, one record, the group kept", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  e.state.loseAnswerNext = true;
  const r = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  assert.is(r.status, 201, JSON.stringify(r.body));
  assert.is(await e.count("consultations"), 1);
  assert.is(e.nodeApi.closed.length, 0);
  assert.is(r.body.tokens.length, 2);
});

t("concurrent retries with one Idempotency-Key make one consultation; extra groups are released", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  const results = await Promise.all(Array.from({ length: 12 }, () => e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), { "idempotency-key": "same" })));
  assert.ok(results.every((r) => r.status === 201), JSON.stringify(results.map((r) => r.status)));
  assert.is(new Set(results.map((r) => r.body.id)).size, 1);
  assert.is(await e.count("consultations"), 1);
  const groupId = results[0]!.body.group.id;
  const released = new Set(e.nodeApi.closed.map((c) => c.groupId));
  for (const r of e.nodeApi.reserved) {
    if (r.req.groupId !== groupId) assert.ok(released.has(r.req.groupId), "a losing group stayed reserved");
  }
  assert.not.ok(released.has(groupId));
});

t("migrations racing from two connections apply once; the audit log refuses UPDATE and DELETE", async () => {
  // Two runners on one store interleave at every await, as isolates sharing one D1 would.
  const dir = mkdtempSync(join(tmpdir(), "huizhen-migrate-"));
  const path = join(dir, "edge.sqlite");
  const a = sqliteStore(new DatabaseSync(path));
  const [x, y, z] = await Promise.all([migrate(a), migrate(a), migrate(a)]);
  assert.equal([...x, ...y, ...z].sort((p, q) => p - q), MIGRATIONS.map((m) => m.id)); // each applied once
  // A second process opening the file later finds it migrated.
  const b = sqliteStore(new DatabaseSync(path));
  assert.equal(await migrate(b), []);
  rmSync(dir, { recursive: true, force: true });

  const e = await makeEdge();
  await e.heartbeat("node-a");
  assert.is((await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).status, 201);
  assert.throws(() => e.raw.exec("UPDATE audit_log SET action = 'nothing'"), /append-only/);
  assert.throws(() => e.raw.exec("DELETE FROM audit_log"), /append-only/);
  assert.ok((await e.count("audit_log")) >= 3);
});

t("path measurements steer placement; refusal moves to the next node", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  await e.heartbeat("node-b");
  const first = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  assert.is(first.body.group.node.id, "node-a", "equal nodes: ties go by id");
  for (const term of [e.requester, e.consultant]) {
    const r = await e.call("POST", `/v1/terminals/${term.id}/measurements`, term.secret, {
      measurements: [{ nodeId: "node-a", rttMs: 180, jitterMs: 20, loss: 0.02 }, { nodeId: "node-b", rttMs: 12, jitterMs: 1, loss: 0 }],
    });
    assert.is(r.status, 200);
  }
  const second = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  assert.is(second.body.group.node.id, "node-b");
  e.nodeApi.refuse.add("node-b");
  const third = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  assert.is(third.body.group.node.id, "node-a");
  e.nodeApi.refuse.add("node-a");
  const none = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body());
  assert.is(none.status, 503);
  // A node silent for longer than 15 s is out of placement.
  e.nodeApi.refuse.clear();
  e.clock.t += 16_000;
  assert.is((await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).status, 503);
});

t("group-closed from the node ends the consultation and revokes its tokens", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  const c = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  const r = await e.call("POST", "/v1/nodes/node-a/events", e.nodeSecrets["node-a"], {
    events: [{ id: "x1", type: "group-closed", consultationId: c.id, groupId: c.group.id, at: e.clock.now(), reason: "expired" }],
  });
  assert.equal(r.body, { accepted: 1, applied: 1 });
  const rec = (await e.call("GET", `/v1/consultations/${c.id}`, e.clinic.apiKey)).body;
  assert.is(rec.status, "ended");
  assert.is(rec.endReason, "expired");
  assert.ok(rec.tokens.every((x: { revokedAt: string | null }) => x.revokedAt));
  const inv = await e.call("GET", `/v1/terminals/${e.requester.id}/invitations`, e.requester.secret);
  assert.equal(inv.body.invitations, []);
});

t("a node re-checks revocations of its own groups since a time", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  const since = e.clock.now();
  const one = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  const two = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  e.clock.t += 1000;
  assert.is((await e.call("POST", `/v1/consultations/${one.id}/end`, e.clinic.apiKey)).status, 200);
  const jtiOf = (token: string) => decodeJwt(token).jti as string;
  const jti = jtiOf(two.tokens[1].token);
  assert.is((await e.call("DELETE", `/v1/consultations/${two.id}/tokens/${jti}`, e.clinic.apiKey)).status, 200);
  const r = await e.call("GET", `/v1/nodes/node-a/revocations?since=${since}`, e.nodeSecrets["node-a"]);
  assert.is(r.status, 200);
  assert.equal(r.body.groups.map((g: { groupId: string }) => g.groupId), [one.group.id]);
  assert.equal(r.body.tokens.map((t: { jti: string }) => t.jti).sort(), [...one.tokens.map((t: { token: string }) => jtiOf(t.token)), jti].sort());
  const later = await e.call("GET", `/v1/nodes/node-a/revocations?since=${e.clock.now() + 1}`, e.nodeSecrets["node-a"]);
  assert.equal([later.body.groups, later.body.tokens], [[], []]);
  const other = await e.call("GET", `/v1/nodes/node-b/revocations?since=0`, e.nodeSecrets["node-b"]);
  assert.equal([other.body.groups, other.body.tokens], [[], []], "a node sees only its own groups");
  assert.is((await e.call("GET", `/v1/nodes/node-a/revocations`, e.nodeSecrets["node-b"])).status, 401);

  // A cascade: the consultant of `two` sits on node-b (a leg), so node-b re-checks `two` too.
  await e.base.db.insertInto("consultation_legs").values({
    consultation_id: two.id, clinic_id: e.clinic.id, terminal_id: e.consultant.id, node_id: "node-b",
    node_url: "https://node-b.test:4433/v1/session", node_api_url: "http://node-b.test:4434", cert_hashes: "[]",
  }).execute();
  const leg = await e.call("GET", `/v1/nodes/node-b/revocations?since=${since}`, e.nodeSecrets["node-b"]);
  assert.equal(leg.body.tokens.map((t: { jti: string }) => t.jti), [jti], "the leg's node learns of the revoked token");
  assert.equal(leg.body.groups, []);
  e.clock.t += 1000;
  assert.is((await e.call("POST", `/v1/consultations/${two.id}/end`, e.clinic.apiKey)).status, 200);
  const legEnded = await e.call("GET", `/v1/nodes/node-b/revocations?since=${e.clock.now()}`, e.nodeSecrets["node-b"]);
  assert.equal(legEnded.body.groups.map((g: { groupId: string }) => g.groupId), [two.group.id], "and of the end");
});

t("a patient ciphertext moved to another record does not open there (AAD binds clinic and record)", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  const one = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  const two = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body({ patient: testPatient("other") }))).body;
  e.raw.exec(`UPDATE consultations SET patient_enc = (SELECT patient_enc FROM consultations WHERE id = '${one.id}') WHERE id = '${two.id}'`);
  const r = await e.call("GET", `/v1/consultations/${two.id}`, e.clinic.apiKey);
  assert.is(r.status, 500);
  assert.is(r.body.error.code, "record_unreadable");
  assert.not.ok(JSON.stringify(r.body).includes(testPatient().name));
  assert.is((await e.call("GET", `/v1/consultations/${one.id}`, e.clinic.apiKey)).body.patient.name, testPatient().name);
});

t("long-poll with a clock: an empty wait ends at its deadline", async () => {
  const e = await makeEdge();
  const started = e.clock.now();
  const r = await e.call("GET", `/v1/terminals/${e.requester.id}/invitations?wait=3`, e.requester.secret);
  assert.equal(r.body.invitations, []);
  assert.ok(e.clock.now() - started >= 3000 && e.clock.now() - started < 4500);
});

t("rate-limit windows reset with time", async () => {
  const e = await makeEdge();
  assert.is((await e.call("PUT", "/v1/admin/clinics/app-test", ADMIN, { name: "App test", rateLimit: 2 })).status, 200);
  e.clock.t = Math.floor(e.clock.t / 60_000) * 60_000 + 61_000; // early in the next window
  const s = [];
  for (let i = 0; i < 3; i++) s.push((await e.call("GET", "/v1/api-keys", e.clinic.apiKey)).status);
  assert.equal(s, [200, 200, 429]);
  e.clock.t += 60_000;
  assert.is((await e.call("GET", "/v1/api-keys", e.clinic.apiKey)).status, 200);
});

t("key rotation: the new key is published first and signs once its time comes", async () => {
  const old = await generateSigningJwk("EdDSA");
  const fresh = await generateSigningJwk("EdDSA");
  const now = Math.floor(Date.UTC(2026, 10, 26, 12) / 1000);
  const e = await makeEdge({ signingKeys: JSON.stringify({ keys: [{ ...fresh, activeFrom: now + 300 }, old] }) });
  await e.heartbeat("node-a");
  const jwks = (await e.call("GET", "/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid);
  assert.equal(jwks.sort(), [old.kid, fresh.kid].sort());
  const before = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  assert.is(decodeProtectedHeader(before.tokens[0].token).kid, old.kid);
  e.clock.t += 400_000;
  await e.heartbeat("node-a");
  const after = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  assert.is(decodeProtectedHeader(after.tokens[0].token).kid, fresh.kid);
});

t("log lines carry route patterns, never ids, PHI or keys", async () => {
  const e = await makeEdge();
  await e.heartbeat("node-a");
  const c = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  await e.call("GET", `/v1/consultations/${c.id}`, e.clinic.apiKey);
  const text = e.lines.join("\n");
  assert.ok(text.includes("GET /v1/consultations/:id 200"));
  for (const v of [c.id, e.clinic.apiKey, testPatient().name, c.tokens[0].token, e.requester.secret]) assert.not.ok(text.includes(v));
});

t.run();
