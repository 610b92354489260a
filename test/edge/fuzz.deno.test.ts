// Fuzzing the edge's JSON endpoints in-process (fixed seeds, bounded count): mutated bytes of
// valid bodies, structurally mangled values, random bytes, mangled tokens and query strings.
// Every input must get an answer with the JSON error shape and a 4xx (or success) — never a
// 500, a crash or a hang.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mangle, mutate, prng, randomBytesFrom, randomValue } from "../support/prng.ts";
import { ADMIN, makeEdge } from "./harness.ts";

const PER_ENDPOINT = 250;
const ALLOWED = new Set([200, 201, 400, 401, 403, 404, 409, 410, 413, 415, 429, 503]);

test("fuzzed requests to every JSON endpoint are answered with 4xx/2xx and the error shape", async () => {
  const e = await makeEdge();
  await e.call("PUT", "/v1/admin/clinics/app-test", ADMIN, { name: "App test", rateLimit: 1_000_000 });
  await e.heartbeat("node-a");
  const created = (await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body())).body;
  const token = created.tokens[0].token as string;
  const heartbeat = {
    region: "eu", url: "https://node-a.test:4433/v1/session", apiUrl: "http://node-a.test:4434", certHashes: [],
    capacity: { maxSessions: 100, maxGroups: 50, maxKbpsOut: 100000 },
    load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0 }, draining: false,
  };
  const endpoints: { method: string; path: string; key: string; body: unknown }[] = [
    { method: "PUT", path: "/v1/admin/clinics/fuzzed", key: ADMIN, body: { name: "Fuzzed", rateLimit: 5000 } },
    { method: "POST", path: "/v1/terminals", key: e.clinic.apiKey, body: { label: "Room", kind: "doctor" } },
    { method: "POST", path: "/v1/consultations", key: e.clinic.apiKey, body: e.body() },
    { method: "POST", path: `/v1/consultations/${created.id}/tokens`, key: e.clinic.apiKey, body: { terminalId: e.requester.id } },
    { method: "POST", path: `/v1/terminals/${e.requester.id}/measurements`, key: e.requester.secret, body: { measurements: [{ nodeId: "node-a", rttMs: 10, jitterMs: 1, loss: 0 }] } },
    { method: "POST", path: "/v1/nodes/node-a/heartbeat", key: e.nodeSecrets["node-a"]!, body: heartbeat },
    { method: "POST", path: "/v1/nodes/node-a/events", key: e.nodeSecrets["node-a"]!, body: { events: [{ id: "ev1", type: "joined", consultationId: created.id, groupId: created.group.id, terminalId: e.requester.id, at: e.clock.now() }] } },
  ];
  let tried = 0;
  const statuses = new Map<number, number>();
  const failures: string[] = [];
  const check = async (label: string, run: () => Promise<Response> | Response) => {
    tried++;
    const res = await Promise.race([Promise.resolve(run()), new Promise<"hang">((r) => setTimeout(() => r("hang"), 3000))]);
    if (res === "hang") return void failures.push(`${label}: no answer`);
    const text = await res.text();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (!ALLOWED.has(res.status)) return void failures.push(`${label}: status ${res.status} ${text.slice(0, 120)}`);
    let body: any;
    try { body = JSON.parse(text); } catch { return void failures.push(`${label}: not JSON`); }
    if (res.status >= 400 && (typeof body?.error?.code !== "string" || typeof body?.error?.message !== "string")) {
      failures.push(`${label}: error shape ${text.slice(0, 120)}`);
    }
  };
  const send = (method: string, path: string, key: string, payload: BodyInit | undefined, type = "application/json") =>
    e.app.request(path, { method, headers: { authorization: `Bearer ${key}`, "content-type": type }, body: payload }, { clientIp: "127.0.0.1" });

  for (const [n, ep] of endpoints.entries()) {
    const rand = prng(0xed9e + n);
    const valid = new TextEncoder().encode(JSON.stringify(ep.body));
    for (let i = 0; i < PER_ENDPOINT; i++) {
      const kind = i % 4;
      let payload: Uint8Array | string;
      if (kind === 0) payload = mutate(rand, valid);
      else if (kind === 1 || kind === 2) payload = JSON.stringify(mangle(rand, kind === 2 ? mangle(rand, ep.body) : ep.body));
      else payload = randomBytesFrom(rand, Math.floor(rand() * 300));
      await check(`${ep.method} ${ep.path} #${i}`, () => send(ep.method, ep.path, ep.key, payload as BodyInit));
    }
  }
  // Tokens and query strings.
  const rand = prng(0x70c3);
  const tokenBytes = new TextEncoder().encode(token);
  for (let i = 0; i < PER_ENDPOINT; i++) {
    const bad = new TextDecoder().decode(mutate(rand, tokenBytes)).replace(/[\s\u0000-\u001f\u007f-\uffff]/g, "");
    await check(`GET /v1/join #${i}`, () => send("GET", "/v1/join", bad || "x", undefined));
    const enc = (v: unknown) => encodeURIComponent(String(v).replace(/[\ud800-\udfff]/g, "?"));
    const q = enc(randomValue(rand));
    await check(`GET invitations #${i}`, () => send("GET", `/v1/terminals/${e.requester.id}/invitations?wait=${q.slice(0, 20)}&after=${q.slice(0, 20)}`, e.requester.secret, undefined));
    const id = enc(String(randomValue(rand)).slice(0, 200)) || "x";
    await check(`GET consultation by odd id #${i}`, () => send("GET", `/v1/consultations/${id}`, e.clinic.apiKey, undefined));
  }
  console.log(`fuzz: ${tried} inputs, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  assert.ok((statuses.get(400) ?? 0) > tried / 4, "most inputs should reach validation");
  assert.ok(tried >= PER_ENDPOINT * (endpoints.length + 3), `tried ${tried}`);
  assert.equal(failures.slice(0, 10), [], `${failures.length} of ${tried} inputs mishandled`);
  // The store is still consistent and serving.
  assert.is((await e.call("GET", `/v1/consultations/${created.id}`, e.clinic.apiKey)).status, 200);
});

test.run();
