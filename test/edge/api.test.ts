// The edge API over HTTP on both runtimes: workerd (wrangler dev, local D1) and Deno (SQLite
// file). Each runtime is started once; the media nodes are FakeNode stand-ins (see
// fake-node.ts for why), the real node is covered by test/integration/flow.deno.test.ts.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { readdir, readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader } from "jose";
import {
  ROOT, generateEdgeSecrets, newNodeCredential, nodeCredentialsJson, startEdge, ensureClinic,
  type EdgeProcess, type EdgeRuntime, type EdgeSecrets,
} from "../../scripts/stack.ts";
import { testPatient } from "../support/clinic-client.ts";
import { nodeAudience, type ConsultationClaims } from "../../src/token/claims.ts";
import { loadKeySet } from "../../src/token/keys.ts";
import { signConsultationToken } from "../../src/token/sign.ts";
import { verifyConsultationToken } from "../../src/token/verify.ts";
import { FakeNode } from "./fake-node.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const IP_LIMIT = 40;

interface Res { status: number; body: any; headers: Headers }

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

for (const runtime of ["workerd", "deno"] as EdgeRuntime[]) {
  const t = suite(`edge API on ${runtime}`);
  let edge: EdgeProcess;
  let secrets: EdgeSecrets;
  let stateDir: string;
  let ipCounter = 0;
  const nodes: FakeNode[] = [];
  const creds = [newNodeCredential("node-eu"), newNodeCredential("node-us"), newNodeCredential("node-slow")];
  let A: { id: string; key: string };
  let B: { id: string; key: string };
  const term: Record<string, { id: string; secret: string }> = {};
  let created: any;
  const patient = testPatient("E");

  async function api(method: string, path: string, o: { key?: string; body?: unknown; raw?: BodyInit; headers?: Record<string, string>; ip?: string } = {}): Promise<Res> {
    const headers: Record<string, string> = {
      // A distinct client address per call keeps the per-IP limit out of the other tests.
      "x-test-client-ip": o.ip ?? `198.51.100.${ipCounter++ % 250}-${ipCounter}`,
      ...(o.key ? { authorization: `Bearer ${o.key}` } : {}),
      ...(o.body !== undefined ? { "content-type": "application/json" } : {}),
      ...o.headers,
    };
    const res = await fetch(`${edge.url}${path}`, { method, headers, body: o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body)) });
    const text = await res.text();
    let body: any = text;
    try { body = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
    return { status: res.status, body, headers: res.headers };
  }
  const admin = (method: string, path: string, body?: unknown) => api(method, path, { key: secrets.ADMIN_KEY, body });
  const consultationBody = (over: Record<string, unknown> = {}) => ({
    patient,
    requester: { terminalId: term.req!.id },
    consultant: { terminalId: term.con!.id },
    reason: "Second opinion on a pigmented lesion",
    scheduledAt: "2027-01-15T09:30:00+01:00",
    region: "eu",
    ...over,
  });
  function isError(r: Res, status: number, field?: string) {
    assert.is(r.status, status, JSON.stringify(r.body));
    assert.type(r.body?.error?.code, "string");
    assert.type(r.body?.error?.message, "string");
    if (field) assert.is(r.body.error.field, field, JSON.stringify(r.body));
  }

  t.before(async () => {
    secrets = await generateEdgeSecrets();
    stateDir = await mkdtemp(join(tmpdir(), "huizhen-edge-test-"));
    edge = await startEdge({
      runtime, secrets, stateDir, nodeCredentials: await nodeCredentialsJson(creds),
      env: { CLIENT_IP_HEADER: "x-test-client-ip", RATE_LIMIT_IP: String(IP_LIMIT), NODE_TIMEOUT_MS: "1500" },
    });
    const a = await ensureClinic(edge.url, secrets.ADMIN_KEY, `clinic-a-${runtime}`, "Clinic A");
    const b = await ensureClinic(edge.url, secrets.ADMIN_KEY, `clinic-b-${runtime}`, "Clinic B");
    A = { id: a.id, key: a.apiKey! };
    B = { id: b.id, key: b.apiKey! };
  });

  t.after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await edge?.stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  t("healthz; JWKS lists public keys only", async () => {
    assert.is((await api("GET", "/healthz")).status, 200);
    const r = await api("GET", "/.well-known/jwks.json");
    assert.is(r.status, 200);
    const want = JSON.parse(secrets.SIGNING_KEYS).keys[0];
    assert.is(r.body.keys.length, 1);
    const k = r.body.keys[0];
    assert.is(k.kid, want.kid);
    assert.is(k.x, want.x);
    for (const priv of ["d", "p", "q", "dp", "dq", "qi", "k"]) assert.not.ok(priv in k, `JWKS carries ${priv}`);
  });

  t("unknown routes are 404 JSON; admin calls need the admin key", async () => {
    isError(await api("GET", "/v1/nothing-here"), 404);
    isError(await api("GET", "/v1/nodes"), 401);
    isError(await api("GET", "/v1/nodes", { key: A.key }), 401);
    isError(await api("PUT", "/v1/admin/clinics/x1", { key: "hza_wrong-wrong-wrong-wrong", body: { name: "x" } }), 401);
    assert.is((await admin("GET", "/v1/nodes")).status, 200);
  });

  t("clinic admin: validation names the field; update keeps the key; a given key works", async () => {
    isError(await admin("PUT", "/v1/admin/clinics/bad%20slug", { name: "x" }), 400, "slug");
    isError(await admin("PUT", "/v1/admin/clinics/okslug", {}), 400, "name");
    isError(await admin("PUT", "/v1/admin/clinics/okslug", { name: 5 }), 400, "name");
    isError(await admin("PUT", "/v1/admin/clinics/okslug", { name: "x", colour: "red" }), 400, "colour");
    isError(await admin("PUT", "/v1/admin/clinics/okslug", { name: "x", apiKey: "short" }), 400, "apiKey");
    const upd = await admin("PUT", `/v1/admin/clinics/clinic-a-${runtime}`, { name: "Clinic A, renamed" });
    assert.is(upd.status, 200);
    assert.is(upd.body.id, A.id);
    assert.not.ok("apiKey" in upd.body, "an update must not hand out a key");
    const chosen = `hzk_chosen_${runtime}_0123456789abcdef`;
    const c = await admin("PUT", `/v1/admin/clinics/chosen-${runtime}`, { name: "Chosen", apiKey: chosen });
    assert.is(c.status, 201);
    assert.is(c.body.apiKey, chosen);
    assert.is((await api("POST", "/v1/terminals", { key: chosen, body: { label: "x", kind: "other" } })).status, 201);
    // Another clinic cannot claim a key in use.
    isError(await admin("PUT", `/v1/admin/clinics/thief-${runtime}`, { name: "Thief", apiKey: chosen }), 409);
  });

  t("API keys rotate and revoke (operator and clinic self-service); revoked keys stop working", async () => {
    const slug = `rotating-${runtime}`;
    const first = (await admin("PUT", `/v1/admin/clinics/${slug}`, { name: "Rotating" })).body.apiKey as string;
    const second = await admin("POST", `/v1/admin/clinics/${slug}/api-keys`);
    assert.is(second.status, 201);
    assert.ok(second.body.apiKey.startsWith("hzk_"));
    const list = await admin("GET", `/v1/admin/clinics/${slug}/api-keys`);
    assert.is(list.body.apiKeys.length, 2);
    assert.not.ok(JSON.stringify(list.body).includes(first), "key list must not show keys");
    const firstId = list.body.apiKeys.find((k: any) => k.id !== second.body.id).id;
    assert.is((await admin("DELETE", `/v1/admin/clinics/${slug}/api-keys/${firstId}`)).status, 200);
    isError(await api("GET", "/v1/api-keys", { key: first }), 401);
    const self = await api("GET", "/v1/api-keys", { key: second.body.apiKey });
    assert.is(self.status, 200);
    const third = await api("POST", "/v1/api-keys", { key: second.body.apiKey });
    assert.is(third.status, 201);
    assert.is((await api("DELETE", `/v1/api-keys/${second.body.id}`, { key: third.body.apiKey })).status, 200);
    isError(await api("GET", "/v1/api-keys", { key: second.body.apiKey }), 401);
    // A clinic cannot revoke another clinic's key.
    isError(await api("DELETE", `/v1/api-keys/${third.body.id}`, { key: A.key }), 404);
    assert.is((await api("GET", "/v1/api-keys", { key: third.body.apiKey })).status, 200);
  });

  t("terminals: register, validation, 401/413/415", async () => {
    for (const [name, kind] of [["req", "doctor"], ["con", "specialist"], ["other", "patient"]] as const) {
      const r = await api("POST", "/v1/terminals", { key: A.key, body: { label: `Terminal ${name}`, kind } });
      assert.is(r.status, 201, JSON.stringify(r.body));
      assert.ok(r.body.secret.startsWith("hzt_"));
      term[name] = r.body;
    }
    const rb = await api("POST", "/v1/terminals", { key: B.key, body: { label: "B's terminal", kind: "doctor" } });
    term.b = rb.body;
    isError(await api("POST", "/v1/terminals", { body: { label: "x", kind: "doctor" } }), 401);
    isError(await api("POST", "/v1/terminals", { key: "hzk_nope", body: { label: "x", kind: "doctor" } }), 401);
    isError(await api("POST", "/v1/terminals", { key: A.key, body: { label: "x" } }), 400, "kind");
    isError(await api("POST", "/v1/terminals", { key: A.key, body: { label: "x", kind: "robot" } }), 400, "kind");
    isError(await api("POST", "/v1/terminals", { key: A.key, body: { label: "", kind: "doctor" } }), 400, "label");
    isError(await api("POST", "/v1/terminals", { key: A.key, body: [1, 2] }), 400, "body");
    isError(await api("POST", "/v1/terminals", { key: A.key, raw: "{not json", headers: { "content-type": "application/json" } }), 400, "body");
    isError(await api("POST", "/v1/terminals", { key: A.key, raw: "label=x", headers: { "content-type": "application/x-www-form-urlencoded" } }), 415);
    isError(await api("POST", "/v1/terminals", { key: A.key, raw: JSON.stringify({ label: "x".repeat(70_000), kind: "doctor" }), headers: { "content-type": "application/json" } }), 413);
    // Without Content-Length (chunked): the bytes read are counted.
    const big = new TextEncoder().encode(JSON.stringify({ label: "y".repeat(100_000), kind: "doctor" }));
    const stream = new ReadableStream({ start(c) { for (let i = 0; i < big.length; i += 8192) c.enqueue(big.subarray(i, i + 8192)); c.close(); } });
    const res = await fetch(`${edge.url}/v1/terminals`, {
      method: "POST", body: stream, duplex: "half",
      headers: { authorization: `Bearer ${A.key}`, "content-type": "application/json", "x-test-client-ip": "192.0.2.77" },
    } as RequestInit);
    assert.is(res.status, 413);
    assert.is((await res.json()).error.code, "payload_too_large");
  });

  t("no live media node: 503 no_media_node and nothing recorded", async () => {
    const r = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody(), headers: { "idempotency-key": "first-try" } });
    isError(r, 503);
    assert.is(r.body.error.code, "no_media_node");
    const inv = await api("GET", `/v1/terminals/${term.req!.id}/invitations`, { key: term.req!.secret });
    assert.equal(inv.body.invitations, []);
  });

  t("nodes register by heartbeat with their own secret only", async () => {
    for (const [i, region] of (["eu", "us", "eu"] as const).entries()) {
      const n = new FakeNode(creds[i]!, edge.url, region);
      await n.start();
      nodes.push(n);
    }
    const [eu, , slow] = nodes as [FakeNode, FakeNode, FakeNode];
    assert.is((await eu.report("heartbeat", eu.heartbeatBody(), creds[1]!.secret)).status, 401);
    const stranger = new FakeNode(newNodeCredential("node-x"), edge.url, "eu");
    assert.is((await stranger.report("heartbeat", stranger.heartbeatBody())).status, 401);
    const bad = await eu.report("heartbeat", eu.heartbeatBody({ capacity: { maxSessions: "many" } }));
    assert.is(bad.status, 400);
    assert.is((await bad.json()).error.field, "capacity.maxSessions");
    // The slow node is far away and busy: it ranks last.
    slow.heartbeatOverrides = { region: "ap", load: { sessions: 70, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0.5, loopLagMs: 1, lossRate: 0 } };
    for (const n of nodes) {
      assert.is((await n.heartbeat()).status, 200);
      n.keepAlive();
    }
    const list = await admin("GET", "/v1/nodes");
    assert.equal(list.body.nodes.map((n: any) => n.id).sort(), ["node-eu", "node-slow", "node-us"]);
    assert.ok(list.body.nodes.every((n: any) => n.live));
  });

  t("placement: a refusing node and a silent node are passed over; the node-API call is authenticated", async () => {
    const [eu, us, slow] = nodes as [FakeNode, FakeNode, FakeNode];
    eu.behaviour = "refuse";
    us.behaviour = "hang";
    slow.behaviour = "accept";
    const started = Date.now();
    const r = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody(), headers: { "idempotency-key": "first-try" } });
    assert.is(r.status, 201, JSON.stringify(r.body));
    assert.ok(Date.now() - started >= 1400, "the silent node was waited for up to its timeout");
    created = r.body;
    assert.is(created.group.node.id, "node-slow");
    assert.equal(nodes.map((n) => n.calls.filter((c) => c.path === "/v1/groups").length), [1, 1, 1]);
    for (const n of nodes) {
      const call = n.calls.find((c) => c.path === "/v1/groups")!;
      assert.ok(call.authorized, call.authError);
      assert.is(call.body.consultationId, created.id);
      assert.is(call.body.groupId, created.group.id);
      assert.is(call.body.clinicId, A.id);
      assert.equal(call.body.members.map((m: any) => m.role), ["requester", "consultant"]);
      assert.not.ok(JSON.stringify(call.body).includes(patient.name), "node request carries PHI");
    }
    eu.behaviour = "accept";
    us.behaviour = "accept";
  });

  t("the created consultation: tokens per terminal, audience-bound, no PHI, verifiable", async () => {
    assert.is(created.status, "pending");
    assert.is(created.tokens.length, 2);
    const jwks = createLocalJWKSet((await api("GET", "/.well-known/jwks.json")).body);
    for (const tok of created.tokens) {
      const header = decodeProtectedHeader(tok.token);
      assert.is(header.typ, "hz-consultation+jwt");
      const claims = await verifyConsultationToken(tok.token, jwks, { issuer: "huizhen-edge", audience: nodeAudience("node-slow") });
      assert.is(claims.sub, tok.terminalId);
      assert.is(claims.cid, created.id);
      assert.is(claims.gid, created.group.id);
      assert.is(claims.ten, A.id);
      assert.is(claims.role, tok.role);
      assert.ok(claims.exp - claims.iat <= 600);
      const text = JSON.stringify(decodeJwt(tok.token));
      for (const v of Object.values(patient)) assert.not.ok(text.includes(v), "token carries PHI");
      assert.is(tok.joinUrl, `${edge.url}/join#token=${tok.token}`);
      assert.ok(!Number.isNaN(Date.parse(tok.expiresAt)));
    }
    assert.equal(created.tokens.map((x: any) => x.terminalId), [term.req!.id, term.con!.id]);
  });

  t("idempotency: same key and body → same consultation; other body → 409; validation names fields", async () => {
    const again = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody(), headers: { "idempotency-key": "first-try" } });
    assert.is(again.status, 201);
    assert.is(again.body.id, created.id);
    assert.equal(again.body.tokens.map((x: any) => x.token), created.tokens.map((x: any) => x.token));
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ reason: "other" }), headers: { "idempotency-key": "first-try" } }), 409);
    // Concurrent retries of a new request: one consultation, every answer the same.
    const burst = await Promise.all(Array.from({ length: 8 }, () => api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ reason: "burst" }), headers: { "idempotency-key": "burst-1" } })));
    assert.equal(burst.map((r) => r.status), Array(8).fill(201), JSON.stringify(burst.map((r) => r.body)));
    assert.is(new Set(burst.map((r) => r.body.id)).size, 1);
    const burstId = burst[0]!.body.id;
    const listed = (await api("GET", "/v1/consultations?limit=200", { key: A.key })).body.consultations.filter((x: any) => x.id === burstId);
    assert.is(listed.length, 1);
    const groupsReserved = nodes.flatMap((n) => n.calls.filter((c) => c.path === "/v1/groups" && c.body.consultationId !== created.id));
    const released = new Set(nodes.flatMap((n) => n.calls.filter((c) => c.method === "DELETE").map((c) => c.path.split("/").pop())));
    for (const g of groupsReserved) {
      if (g.body.groupId !== burst[0]!.body.group.id) assert.ok(released.has(g.body.groupId), "a losing group stayed reserved on its node");
    }
    // The same key at another clinic is that clinic's own key.
    const bSide = await api("POST", "/v1/consultations", { key: B.key, body: consultationBody(), headers: { "idempotency-key": "first-try" } });
    isError(bSide, 400, "requester.terminalId");
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ patient: { name: "x" } }) }), 400, "patient.id");
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ patient: { id: "1", birthDate: "17/04/1961" } }) }), 400, "patient.birthDate");
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ consultant: { terminalId: term.req!.id } }) }), 400, "consultant.terminalId");
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ consultant: {} }) }), 400, "consultant.terminalId");
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ scheduledAt: "tomorrow" }) }), 400, "scheduledAt");
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody(), headers: { "idempotency-key": "x".repeat(300) } }), 400, "Idempotency-Key");
    // Validation errors never echo the input.
    const r = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ patient: { ...patient, name: 42 } }) });
    isError(r, 400, "patient.name");
    assert.not.ok(JSON.stringify(r.body).includes(patient.id));
  });

  t("the owner reads the decrypted record; another clinic gets 404 on every consultation endpoint", async () => {
    const r = await api("GET", `/v1/consultations/${created.id}`, { key: A.key });
    assert.is(r.status, 200);
    assert.equal(r.body.patient, patient);
    assert.is(r.body.reason, "Second opinion on a pigmented lesion");
    assert.is(r.body.scheduledAt, "2027-01-15T09:30:00+01:00");
    assert.is(r.body.status, "pending");
    assert.equal(r.body.participants.map((p: any) => [p.role, p.terminalId, p.joinedAt]), [["requester", term.req!.id, null], ["consultant", term.con!.id, null]]);
    isError(await api("GET", `/v1/consultations/cns_doesnotexist`, { key: A.key }), 404);
    isError(await api("GET", `/v1/consultations/${created.id}`, { key: B.key }), 404);
    isError(await api("GET", `/v1/consultations/${created.id}/audit`, { key: B.key }), 404);
    isError(await api("POST", `/v1/consultations/${created.id}/end`, { key: B.key }), 404);
    isError(await api("GET", `/v1/terminals/${term.req!.id}`, { key: B.key }), 404);
    isError(await api("DELETE", `/v1/terminals/${term.req!.id}`, { key: B.key }), 404);
    // A's terminal ids in B's request are unknown terminals.
    isError(await api("POST", "/v1/consultations", { key: B.key, body: consultationBody({ requester: { terminalId: term.b!.id } }) }), 400, "consultant.terminalId");
    // B's terminal secret cannot read A's terminal's invitations.
    isError(await api("GET", `/v1/terminals/${term.req!.id}/invitations`, { key: term.b!.secret }), 401);
    // Listings are per clinic.
    const listA = await api("GET", "/v1/consultations?limit=200", { key: A.key });
    assert.ok(listA.body.consultations.some((x: any) => x.id === created.id));
    assert.not.ok(JSON.stringify(listA.body).includes(patient.name), "a listing carries no PHI");
    const listB = await api("GET", "/v1/consultations", { key: B.key });
    assert.not.ok(listB.body.consultations.some((x: any) => x.id === created.id));
    isError(await api("GET", `/v1/consultations?before=${created.id}`, { key: B.key }), 400, "before");
    isError(await api("GET", "/v1/consultations?limit=0", { key: A.key }), 400, "limit");
    isError(await api("GET", "/v1/consultations?status=lost", { key: A.key }), 400, "status");
    const termsB = await api("GET", "/v1/terminals", { key: B.key });
    assert.equal(termsB.body.terminals.map((x: any) => x.id), [term.b!.id]);
    const still = await api("GET", `/v1/consultations/${created.id}`, { key: A.key });
    assert.is(still.body.status, "pending", "B's end call must not have ended A's consultation");
  });

  t("invitations: each terminal gets its own token; wait=N long-polls for a new one", async () => {
    const inv = await api("GET", `/v1/terminals/${term.con!.id}/invitations`, { key: term.con!.secret });
    assert.is(inv.status, 200);
    assert.is(inv.body.invitations.length, 2, "the first consultation and the burst one");
    const mine = created.tokens.find((x: any) => x.role === "consultant");
    const first = inv.body.invitations.find((i: any) => i.consultationId === created.id);
    assert.is(first.token, mine.token);
    assert.is(first.role, "consultant");
    assert.is(first.node.id, "node-slow");
    assert.ok(inv.body.invitations.every((i: any) => i.role === "consultant"), "only this terminal's tokens");
    isError(await api("GET", `/v1/terminals/${term.con!.id}/invitations`, { key: term.req!.secret }), 401);
    isError(await api("GET", `/v1/terminals/${term.con!.id}/invitations?wait=31`, { key: term.con!.secret }), 400, "wait");
    isError(await api("GET", `/v1/terminals/${term.con!.id}/invitations?wait=abc`, { key: term.con!.secret }), 400, "wait");
    const cursor = inv.body.cursor;
    const empty = await api("GET", `/v1/terminals/${term.con!.id}/invitations?after=${cursor}`, { key: term.con!.secret });
    assert.equal(empty.body.invitations, []);
    const started = Date.now();
    const poll = api("GET", `/v1/terminals/${term.con!.id}/invitations?wait=10&after=${cursor}`, { key: term.con!.secret });
    await sleep(700);
    const second = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ patient: testPatient("F") }) });
    assert.is(second.status, 201, JSON.stringify(second.body));
    const got = await poll;
    assert.is(got.status, 200);
    assert.is(got.body.invitations.length, 1);
    assert.is(got.body.invitations[0].consultationId, second.body.id);
    assert.ok(Date.now() - started < 6000, "long poll answered soon after the invitation");
    // Not idempotent-keyed: a second identical request is a new consultation.
    const third = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ patient: testPatient("F") }) });
    assert.is.not(third.body.id, second.body.id);
  });

  t("GET /v1/join: the page's view for a token holder, CORS open; bad tokens refused", async () => {
    const tok = created.tokens.find((x: any) => x.role === "requester").token;
    const r = await api("GET", "/v1/join", { key: tok, headers: { origin: "https://elsewhere.example" } });
    assert.is(r.status, 200, JSON.stringify(r.body));
    assert.is(r.headers.get("access-control-allow-origin"), "*");
    assert.is(r.body.consultationId, created.id);
    assert.is(r.body.role, "requester");
    assert.equal(r.body.terminal, { id: term.req!.id, label: "Terminal req", kind: "doctor" });
    assert.equal(r.body.peer, { role: "consultant", label: "Terminal con", kind: "specialist" });
    assert.is(r.body.node.id, "node-slow");
    // The nodes the page probes before joining: the terminal's own candidate list, with probe URLs.
    assert.ok(Array.isArray(r.body.candidates) && r.body.candidates.length >= 1, JSON.stringify(r.body.candidates));
    for (const n of r.body.candidates) {
      assert.ok(creds.some((cr) => cr.nodeId === n.id), n.id);
      assert.is(new URL(n.probeUrl).pathname, "/v1/probe");
      assert.ok(Array.isArray(n.certHashes));
    }
    const offered = await api("GET", `/v1/terminals/${term.req!.id}/candidates`, { key: term.req!.secret });
    assert.is(offered.status, 200, JSON.stringify(offered.body));
    assert.equal(r.body.candidates.map((n: any) => n.id).sort(), offered.body.nodes.map((n: any) => n.id).sort());
    assert.not.ok(JSON.stringify(r.body).includes(patient.name));
    const pre = await fetch(`${edge.url}/v1/join`, { method: "OPTIONS", headers: { origin: "https://x.example", "access-control-request-method": "GET", "access-control-request-headers": "authorization" } });
    assert.ok(pre.status === 204 || pre.status === 200);
    assert.is(pre.headers.get("access-control-allow-origin"), "*");
    const bad = await api("GET", "/v1/join", { key: "garbage" });
    isError(bad, 401);
    assert.is(bad.body.error.code, "token_invalid");
    isError(await api("GET", "/v1/join"), 401);
    // Flip one signature character.
    const forged = tok.slice(0, -4) + (tok.endsWith("AAAA") ? "BBBB" : "AAAA");
    assert.is((await api("GET", "/v1/join", { key: forged })).body.error.code, "token_invalid");
    // Signed with the edge's own key but wrong in a claim: another node, another terminal, expired.
    const keys = await loadKeySet(secrets.SIGNING_KEYS);
    const base = decodeJwt(tok) as unknown as ConsultationClaims;
    const now = Math.floor(Date.now() / 1000);
    const variants: [Partial<ConsultationClaims>, string][] = [
      [{ aud: nodeAudience("node-eu") }, "token_invalid"],
      [{ sub: term.con!.id }, "token_invalid"],
      [{ ten: B.id }, "token_invalid"],
      [{ iat: now - 900, nbf: now - 900, exp: now - 300 }, "token_expired"],
    ];
    for (const [over, code] of variants) {
      const r = await api("GET", "/v1/join", { key: await signConsultationToken({ ...base, ...over }, keys.active) });
      isError(r, 401);
      assert.is(r.body.error.code, code, JSON.stringify(over));
    }
  });

  t("one token can be re-issued and revoked on its own; the node is told", async () => {
    const fresh = await api("POST", `/v1/consultations/${created.id}/tokens`, { key: A.key, body: { terminalId: term.req!.id } });
    assert.is(fresh.status, 201, JSON.stringify(fresh.body));
    assert.is(fresh.body.role, "requester");
    assert.is.not(fresh.body.token, created.tokens[0].token);
    assert.is(decodeJwt(fresh.body.token).jti, fresh.body.jti);
    isError(await api("POST", `/v1/consultations/${created.id}/tokens`, { key: B.key, body: { terminalId: term.req!.id } }), 404);
    isError(await api("POST", `/v1/consultations/${created.id}/tokens`, { key: A.key, body: { terminalId: term.other!.id } }), 400, "terminalId");
    isError(await api("DELETE", `/v1/consultations/${created.id}/tokens/${fresh.body.jti}`, { key: B.key }), 404);
    const r = await api("DELETE", `/v1/consultations/${created.id}/tokens/${fresh.body.jti}`, { key: A.key });
    assert.is(r.status, 200);
    assert.ok(r.body.nodeNotified);
    const call = nodes[2]!.calls.find((c) => c.path === `/v1/groups/${created.group.id}/revocations`);
    assert.ok(call?.authorized);
    assert.equal(call!.body.jtis, [fresh.body.jti]);
    const join = await api("GET", "/v1/join", { key: fresh.body.token });
    isError(join, 403);
    assert.is(join.body.error.code, "revoked");
    // The other tokens are untouched.
    assert.is((await api("GET", "/v1/join", { key: created.tokens[0].token })).status, 200);
  });

  t("node events: join/connected/leave recorded once; another node cannot report on the group", async () => {
    const slow = nodes[2]!;
    const eu = nodes[0]!;
    const at = Date.now();
    const ev = (id: string, type: string, extra: Record<string, unknown> = {}) => ({ id, type, consultationId: created.id, groupId: created.group.id, at, ...extra });
    const [rq, cs] = created.tokens;
    // A node that does not host the group is ignored.
    const foreign = await eu.report("events", { events: [ev("e-foreign", "connected")] });
    assert.is(foreign.status, 200);
    assert.is((await api("GET", `/v1/consultations/${created.id}`, { key: A.key })).body.status, "pending");
    const batch = { events: [
      ev("e1", "joined", { terminalId: rq.terminalId, jti: decodeJwt(rq.token).jti }),
      ev("e2", "joined", { terminalId: cs.terminalId, jti: decodeJwt(cs.token).jti }),
      ev("e3", "connected"),
    ] };
    const first = await slow.report("events", batch);
    assert.is(first.status, 200);
    assert.equal(await first.json(), { accepted: 3, applied: 3 });
    const retry = await slow.report("events", batch);
    assert.equal(await retry.json(), { accepted: 3, applied: 0 });
    // A malformed event is dropped and named, without blocking the others behind it.
    const badEv = await slow.report("events", { events: [ev("e9", "exploded"), ev("e10", "connected")] });
    assert.is(badEv.status, 200);
    assert.equal(await badEv.json(), { accepted: 1, applied: 1, rejected: [{ index: 0, field: "events[0].type" }] });
    // A node's full batch (200), then its retry: every event applied once (D1 binds ≤ 100 values per query).
    const bulk = { events: Array.from({ length: 200 }, (_, i) => ({ ...ev(`bulk-${i}`, "left", { terminalId: cs.terminalId }), consultationId: "cns_gone" })) };
    assert.equal(await (await slow.report("events", bulk)).json(), { accepted: 200, applied: 200 });
    assert.equal(await (await slow.report("events", bulk)).json(), { accepted: 200, applied: 0 });
    const notList = await slow.report("events", { events: "many" });
    assert.is(notList.status, 400);
    assert.is((await notList.json()).error.field, "events");
    const rec = (await api("GET", `/v1/consultations/${created.id}`, { key: A.key })).body;
    assert.is(rec.status, "connected");
    assert.ok(rec.participants.every((p: any) => p.joinedAt));
    const usedJtis = created.tokens.map((x: any) => decodeJwt(x.token).jti);
    assert.equal(rec.tokens.filter((x: any) => x.firstUsedAt).map((x: any) => x.jti), usedJtis, "first use recorded for the joined tokens only");
    assert.is((await slow.report("events", { events: [ev("e4", "left", { terminalId: cs.terminalId, reason: "bye" })] })).status, 200);
    const after = (await api("GET", `/v1/consultations/${created.id}`, { key: A.key })).body;
    assert.ok(after.participants.find((p: any) => p.role === "consultant").leftAt);
    const joins = after.events.filter((e: any) => e.action === "join");
    assert.is(joins.length, 2, "a retried event is recorded once");
  });

  t("ending: the node is told, tokens are revoked, the page sees 410; audit log is complete", async () => {
    const slow = nodes[2]!;
    const r = await api("POST", `/v1/consultations/${created.id}/end`, { key: A.key });
    assert.is(r.status, 200, JSON.stringify(r.body));
    assert.is(r.body.status, "ended");
    assert.ok(r.body.nodeNotified);
    const del = slow.calls.find((c) => c.method === "DELETE");
    assert.ok(del && del.authorized);
    assert.is(del!.path, `/v1/groups/${created.group.id}`);
    assert.is(del!.body.reason, "consultationEnded");
    const again = await api("POST", `/v1/consultations/${created.id}/end`, { key: A.key });
    assert.is(again.status, 200);
    assert.is(again.body.status, "ended");
    const rec = (await api("GET", `/v1/consultations/${created.id}`, { key: A.key })).body;
    assert.is(rec.status, "ended");
    assert.ok(rec.tokens.every((x: any) => x.revokedAt));
    const join = await api("GET", "/v1/join", { key: created.tokens[0].token });
    isError(join, 410);
    assert.is(join.body.error.code, "consultation_ended");
    const inv = await api("GET", `/v1/terminals/${term.req!.id}/invitations`, { key: term.req!.secret });
    assert.not.ok(inv.body.invitations.some((i: any) => i.consultationId === created.id));
    const audit = await api("GET", `/v1/consultations/${created.id}/audit`, { key: A.key });
    assert.is(audit.status, 200);
    const actions = audit.body.entries.map((e: any) => e.action);
    for (const a of ["create", "token.issue", "read", "token.deliver", "join", "connected", "leave", "end", "token.revoke"]) {
      assert.ok(actions.includes(a), `audit lacks ${a}: ${actions.join(",")}`);
    }
    assert.ok(audit.body.entries.some((e: any) => e.action === "read" && e.actor.type === "terminal" && e.terminalId === term.req!.id), "the page's read is audited as the terminal's");
    assert.ok(audit.body.entries.some((e: any) => e.action === "read" && e.actor.type === "clinic"), "the clinic's read is audited");
    assert.is(actions.filter((a: string) => a === "token.issue").length, 3, "two at creation, one re-issued");
    assert.is(actions.filter((a: string) => a === "token.revoke").length, 3, "one by hand, two at the end");
    assert.not.ok(JSON.stringify(audit.body).includes(patient.name));
    assert.ok(audit.body.entries.every((e: any, i: number, all: any[]) => i === 0 || e.id > all[i - 1].id), "entries in order");
  });

  t("revoking a terminal revokes its tokens, tells the node, and locks the terminal out", async () => {
    const c = await api("POST", "/v1/consultations", { key: A.key, body: consultationBody({ patient: testPatient("G") }) });
    assert.is(c.status, 201);
    const node = nodes.find((n) => n.id === c.body.group.node.id)!;
    const r = await api("DELETE", `/v1/terminals/${term.con!.id}`, { key: A.key });
    assert.is(r.status, 200);
    assert.ok(r.body.revokedTokens >= 1);
    const rev = node.calls.find((x) => x.path === `/v1/groups/${c.body.group.id}/revocations`);
    assert.ok(rev && rev.authorized, "node told about the revocation");
    assert.equal(rev!.body.terminalIds, [term.con!.id]);
    const tok = c.body.tokens.find((x: any) => x.role === "consultant").token;
    const join = await api("GET", "/v1/join", { key: tok });
    isError(join, 403);
    assert.is(join.body.error.code, "revoked");
    isError(await api("GET", `/v1/terminals/${term.con!.id}/invitations`, { key: term.con!.secret }), 403);
    isError(await api("POST", "/v1/consultations", { key: A.key, body: consultationBody() }), 400, "consultant.terminalId");
    const t2 = await api("GET", `/v1/terminals/${term.con!.id}`, { key: A.key });
    assert.ok(t2.body.revokedAt);
  });

  t("rate limits: per clinic (set by the operator) and per IP, with Retry-After", async () => {
    const slug = `limited-${runtime}`;
    const lim = await admin("PUT", `/v1/admin/clinics/${slug}`, { name: "Limited", rateLimit: 5 });
    const key = lim.body.apiKey;
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await api("GET", "/v1/api-keys", { key })).status);
    assert.equal(statuses, [200, 200, 200, 200, 200, 429, 429]);
    const limited = await api("GET", "/v1/api-keys", { key });
    isError(limited, 429);
    const retry = Number(limited.headers.get("retry-after"));
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    // Other clinics are not affected.
    assert.is((await api("GET", "/v1/api-keys", { key: A.key })).status, 200);
    const ip = "203.0.113.50";
    let first429 = -1;
    for (let i = 0; i < IP_LIMIT + 3 && first429 < 0; i++) {
      const r = await api("GET", "/.well-known/jwks.json", { ip });
      if (r.status === 429) first429 = i;
    }
    assert.is(first429, IP_LIMIT);
    const r = await api("GET", "/v1/api-keys", { key: A.key, ip });
    isError(r, 429);
    assert.ok(Number(r.headers.get("retry-after")) >= 1);
    assert.is((await api("GET", "/v1/api-keys", { key: A.key, ip: "203.0.113.51" })).status, 200);
  });

  t("page paths come from dist/public; the API and files outside it do not", async () => {
    const page = join(ROOT, "dist", "public", "join.html");
    if (existsSync(page)) {
      const r = await fetch(`${edge.url}/join`);
      assert.is(r.status, 200);
      assert.match(r.headers.get("content-type") ?? "", /text\/html/);
    }
    const sdk = join(ROOT, "dist", "public", "sdk", "huizhen.js");
    if (existsSync(sdk)) {
      const r = await fetch(`${edge.url}/sdk/huizhen.js`);
      assert.is(r.status, 200);
      assert.match(r.headers.get("content-type") ?? "", /javascript/);
      assert.is(await r.text(), await readFile(sdk, "utf8"));
    }
    for (const path of ["/../package.json", "/%2e%2e/package.json", "/..%2fpackage.json", "/no-such-page.js"]) {
      const r = await fetch(`${edge.url}${path}`);
      assert.is(r.status, 404, path);
      assert.not.ok((await r.text()).includes('"name": "huizhen"'), `${path} served a file outside dist/public`);
    }
  });

  t("a restarted edge keeps its records: same database, same secrets, same answers", async () => {
    const before = (await api("GET", `/v1/consultations/${created.id}/audit`, { key: A.key })).body.entries.length;
    const port = Number(new URL(edge.url).port);
    const output = edge.process.output;
    await edge.process.stop();
    edge = await startEdge({
      runtime, secrets, stateDir, port, nodeCredentials: await nodeCredentialsJson(creds),
      env: { CLIENT_IP_HEADER: "x-test-client-ip", RATE_LIMIT_IP: String(IP_LIMIT), NODE_TIMEOUT_MS: "1500" },
    });
    edge.process.output.unshift(...output); // keep the first run's lines for the log scan below
    const rec = await api("GET", `/v1/consultations/${created.id}`, { key: A.key });
    assert.is(rec.status, 200);
    assert.equal(rec.body.patient, patient);
    assert.is(rec.body.status, "ended");
    const audit = (await api("GET", `/v1/consultations/${created.id}/audit`, { key: A.key })).body.entries.length;
    assert.is(audit, before + 1, "the audit log survived (plus this restart's read)");
    assert.is((await api("GET", "/v1/api-keys", { key: B.key })).status, 200);
  });

  t("PHI is not stored in clear; the edge's output holds no PHI, token or secret", async () => {
    const files = await walk(stateDir);
    const stores = files.filter((f) => /\.(sqlite|sqlite-wal|sqlite-shm)$/.test(f));
    assert.ok(stores.length > 0, `no database files under ${stateDir}: ${files.join(", ")}`);
    let sawLabel = false;
    for (const f of stores) {
      const text = (await readFile(f)).toString("latin1");
      if (text.includes("Terminal req")) sawLabel = true; // the scan can see clear text
      for (const v of [patient.name, patient.id, patient.summary, patient.birthDate, "Second opinion on a pigmented", "2027-01-15T09:30"]) {
        assert.not.ok(text.includes(v), `${v} in clear in ${f}`);
      }
      for (const tok of created.tokens) assert.not.ok(text.includes(tok.token.split(".")[2]), "token stored in clear");
      assert.not.ok(text.includes(A.key), "API key stored in clear");
      assert.not.ok(text.includes(term.req!.secret), "terminal secret stored in clear");
    }
    assert.ok(sawLabel, "positive control: a non-PHI label is visible to the scan");
    const out = edge.process.output.join("\n");
    for (const v of [patient.name, patient.id, patient.summary, A.key, B.key, secrets.ADMIN_KEY, term.req!.secret, term.con!.secret, ...created.tokens.map((x: any) => x.token)]) {
      assert.not.ok(out.includes(v), `edge output carries a secret or PHI`);
    }
    assert.ok(/POST \/v1\/consultations 201 \d+ms/.test(out), "one line per request with the route pattern");
    assert.ok(/GET \/v1\/consultations\/:id 404 \d+ms/.test(out), "route patterns, not raw URLs");
  });

  t.run();
}
