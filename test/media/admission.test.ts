// Admission on a real media node process over QUIC: who gets in, who is refused and why,
// the resume path, revocation and group deletion. The edge is stood in for by FakeEdge
// (support.ts): it serves the JWKS the node verifies with and records the node's reports.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { generateEdgeSecrets } from "../../scripts/stack.ts";
import { loadKeySet } from "../../src/token/keys.ts";
import { signConsultationToken } from "../../src/token/sign.ts";
import { nodeAudience } from "../../src/token/claims.ts";
import { decodeJwt } from "jose";
import { NodeHarness, once, RawClient, refusal, sleep } from "./support.ts";

const t = suite("media node admission");
let h: NodeHarness;

t.before(async () => {
  h = await NodeHarness.start({ MEDIA_JOIN_TIMEOUT_MS: "1500" });
});
t.after(async () => {
  await h?.stop();
});

t("both members join, get welcome with their slot, then connected; the edge hears of it", async () => {
  const g = await h.group();
  const a = await h.connect(await h.token(g, 0));
  assert.is(a.self.slot, 1);
  assert.is(a.self.terminalId, g.members[0]!.terminalId);
  assert.ok(a.maxDatagramSize >= 1000 && a.maxDatagramSize <= 1500, String(a.maxDatagramSize));
  assert.ok(a.resume);
  const aConnected = once<any[]>(a, "connected");
  const aPeer = once<any>(a, "peer-joined");
  const b = await h.connect(await h.token(g, 1));
  const bConnected = once<any[]>(b, "connected");
  assert.is(b.self.slot, 2);
  assert.is((await aPeer).slot, 2);
  assert.is((await aConnected).length, 2);
  assert.is((await bConnected).length, 2);
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !h.edge.events.some((e) => e.type === "connected" && e.groupId === g.groupId)) await sleep(50);
  const evs = h.edge.events.filter((e) => e.groupId === g.groupId);
  assert.equal(evs.map((e) => e.type), ["joined", "joined", "connected"]);
  assert.ok(new Set(evs.map((e) => e.id)).size === 3, "event ids are unique");
  const left = once<any>(a, "peer-left");
  await b.leave();
  assert.is((await left).reason, "bye");
  await a.leave();
});

t("bad tokens are refused with the right reason", async () => {
  const g = await h.group();
  const now = Math.floor(Date.now() / 1000);
  assert.is(await refusal(h.connect("not-a-jwt")), "tokenInvalid");
  assert.is(await refusal(h.connect(await h.token(g, 0, { iat: now - 900, nbf: now - 900, exp: now - 300 }))), "tokenExpired");
  assert.is(await refusal(h.connect(await h.token(g, 0, { aud: nodeAudience("node-elsewhere") }))), "wrongNode");
  assert.is(await refusal(h.connect(await h.token(g, 0, { gid: "grp_unknown" }))), "groupUnknown");
  assert.is(await refusal(h.connect(await h.token(g, 0, { cid: "cns_other" }))), "groupUnknown");
  assert.is(await refusal(h.connect(await h.token(g, 0, { sub: "trm_not_a_member" }))), "tokenInvalid");
  assert.is(await refusal(h.connect(await h.token(g, 0, { iss: "someone-else" }))), "tokenInvalid");
  const foreign = await loadKeySet((await generateEdgeSecrets()).SIGNING_KEYS);
  const claims = decodeJwt(await h.token(g, 0)) as any;
  assert.is(await refusal(h.connect(await signConsultationToken(claims, foreign.active))), "tokenInvalid", "signed by a key the edge does not publish");
});

t("a token in use is refused; after leaving it needs the resume secret, which replaces a live session", async () => {
  const g = await h.group();
  const tok = await h.token(g, 0);
  const a = await h.connect(tok);
  assert.is(await refusal(h.connect(tok)), "tokenInUse");
  const replaced = once<string>(a, "closed", 3000);
  const resumed = await h.connect(tok, { resume: a.resume });
  assert.is(await replaced, "replaced");
  await resumed.leave();
  await sleep(100);
  assert.is(await refusal(h.connect(tok)), "tokenInUse", "single use without the secret");
  const again = await h.connect(tok, { resume: resumed.resume });
  assert.ok(again.sessionId);
  await again.leave();
});

t("a session that never joins is closed; a first message other than join is refused", async () => {
  // The control stream exists for the node only once bytes flow on it, so this one learns
  // why from the close code alone.
  const raw = await RawClient.open(h);
  const info = await raw.waitClosed(4000);
  assert.is(info.closeCode, 4001);
  const raw2 = await RawClient.open(h);
  await raw2.send({ t: "ping", n: 1 });
  assert.is((await raw2.waitFor("error")).code, "tokenMissing");
  const raw3 = await RawClient.open(h);
  await raw3.control.write(new Uint8Array([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]));
  assert.is((await raw3.waitFor("error")).code, "protocolError");
  const raw4 = await RawClient.open(h, "/elsewhere");
  assert.is((await raw4.waitClosed()).closeCode, 4009, "a session on another path is closed with protocolError");
});

t("revocation closes the live session within 1 s and the token cannot rejoin", async () => {
  const g = await h.group();
  const tok = await h.token(g, 0);
  const a = await h.connect(tok);
  const b = await h.connect(await h.token(g, 1));
  const closed = once<string>(a, "closed", 2000);
  const left = once<any>(b, "peer-left", 2000);
  const t0 = Date.now();
  const r = await h.api("POST", `/v1/groups/${g.groupId}/revocations`, { jtis: [(decodeJwt(tok) as any).jti] });
  assert.is(r.status, 200);
  assert.is(r.body.closedSessions, 1);
  assert.is(await closed, "revoked");
  assert.ok(Date.now() - t0 < 1000, `closed after ${Date.now() - t0} ms`);
  assert.is((await left).reason, "revoked");
  assert.is(await refusal(h.connect(tok, { resume: a.resume })), "revoked");
  // Revoking a terminal refuses its fresh tokens too.
  const bClosed = once<string>(b, "closed", 2000);
  await h.api("POST", `/v1/groups/${g.groupId}/revocations`, { terminalIds: [g.members[1]!.terminalId] });
  assert.is(await bClosed, "revoked");
  assert.is(await refusal(h.connect(await h.token(g, 1))), "revoked");
});

t("deleting the group sends ended to both; rejoining is refused", async () => {
  const g = await h.group();
  const tokB = await h.token(g, 1);
  const a = await h.connect(await h.token(g, 0));
  const b = await h.connect(tokB);
  const ea = once<string>(a, "ended");
  const eb = once<string>(b, "ended");
  const ca = once<string>(a, "closed");
  const r = await h.api("DELETE", `/v1/groups/${g.groupId}`, { reason: "consultationEnded" });
  assert.is(r.status, 200);
  assert.is(r.body.closedSessions, 2);
  assert.is(await ea, "consultationEnded");
  assert.is(await eb, "consultationEnded");
  assert.is(await ca, "consultationEnded");
  assert.is(await refusal(h.connect(tokB, { resume: b.resume })), "consultationEnded");
  const again = await h.api("DELETE", `/v1/groups/${g.groupId}`);
  assert.equal([again.status, again.body.closedSessions], [200, 0], "a repeated delete is answered, not 404");
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !h.edge.events.some((e) => e.type === "group-closed" && e.groupId === g.groupId)) await sleep(50);
  assert.ok(h.edge.events.some((e) => e.type === "group-closed" && e.groupId === g.groupId));
});

t("control API: node-API JWT required and not replayable; validation; idempotent reserve; conflicts; 404s", async () => {
  const noAuth = await fetch(`${h.node.apiUrl}/v1/groups`, { method: "POST", body: "{}" });
  assert.is(noAuth.status, 401);
  assert.is((await noAuth.json()).error.code, "unauthorized");
  const tok = await h.apiToken();
  const g = { groupId: "grp_api1", consultationId: "cns_api1", clinicId: "cln_1", attributes: { maxParticipants: 2, maxVideoKbps: 6000, maxAudioKbps: 128, maxHeight: 1080 }, members: [{ terminalId: "trm_1", role: "requester" }, { terminalId: "trm_2", role: "consultant" }], expiresAt: Date.now() + 60_000 };
  assert.is((await h.api("POST", "/v1/groups", g, tok)).status, 201);
  assert.is((await h.api("POST", "/v1/groups", g, tok)).status, 401, "a node-API token is single use");
  assert.is((await h.api("POST", "/v1/groups", g)).status, 200, "the same group again");
  const conflict = await h.api("POST", "/v1/groups", { ...g, consultationId: "cns_other" });
  assert.is(conflict.status, 409);
  const bad = await h.api("POST", "/v1/groups", { ...g, members: [{ terminalId: "trm_1", role: "boss" }] });
  assert.is(bad.status, 400);
  assert.match(bad.body.error.message, "members[0].role");
  assert.is((await h.api("DELETE", "/v1/groups/grp_nope")).status, 404);
  assert.is((await h.api("POST", "/v1/groups/grp_nope/revocations", { jtis: ["x"] })).status, 404);
  const health = await (await fetch(`${h.node.apiUrl}/health`)).json();
  assert.is(health.nodeId, h.nodeId);
  const hashes = await (await fetch(`${h.node.apiUrl}/cert-hashes`)).json();
  assert.is(hashes.certHashes.length, 2, "current and next certificate");
});

t("heartbeats carry capacity and load; events are retried while the edge is down", async () => {
  const hb = h.edge.heartbeats.at(-1);
  assert.ok(hb, "a heartbeat arrived");
  assert.equal(Object.keys(hb.load).sort(), ["cpu", "groups", "kbpsIn", "kbpsOut", "loopLagMs", "lossRate", "sessions"]);
  assert.is(hb.url, h.node.url);
  assert.equal(hb.certHashes, h.node.certHashes);
  h.edge.up = false;
  const g = await h.group();
  const a = await h.connect(await h.token(g, 0));
  await sleep(1200);
  assert.not.ok(h.edge.events.some((e) => e.groupId === g.groupId), "edge down: nothing delivered yet");
  h.edge.up = true;
  const deadline = Date.now() + 12_000;
  while (Date.now() < deadline && !h.edge.events.some((e) => e.groupId === g.groupId)) await sleep(100);
  assert.ok(h.edge.events.some((e) => e.type === "joined" && e.groupId === g.groupId), "delivered once the edge is back");
  await a.leave();
});

t.run();
