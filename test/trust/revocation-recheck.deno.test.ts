// Revocation reaches live sessions even when the edge's call to the node is lost: the edge →
// node control API goes through a proxy that cuts revocation and group-delete calls, so only
// the node's own timer (GET /v1/nodes/:id/revocations?since=, media/revocations.ts) can close
// the sessions. Real edge (Deno/SQLite) and real media node (QUIC); runs under Deno.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { decodeJwt } from "jose";
import { TerminalSession } from "../../src/terminal/session.ts";
import { ClinicClient, type CreatedConsultation } from "../support/clinic-client.ts";
import { once } from "../media/support.ts";
import { TrustStack } from "./stack.ts";

const CHECK_MS = 300;
const t = suite("revocation re-checked by the node on a timer");
let stack: TrustStack;
let clinic: ClinicClient;
let created: CreatedConsultation;
const open: TerminalSession[] = [];

const join = async (token: string, resume?: string) => {
  const s = await TerminalSession.connect({ url: created.group.node.url, certHashes: created.group.node.certHashes, token, resume, sdk: "trust-test" });
  open.push(s);
  return s;
};
async function refusal(token: string, resume?: string): Promise<string> {
  try {
    const s = await join(token, resume);
    await s.leave();
    return "admitted";
  } catch (err) {
    return (err as { reason?: string }).reason ?? String(err);
  }
}

t.before(async () => {
  stack = await TrustStack.start({ nodeEnv: { MEDIA_REVOCATION_CHECK_MS: String(CHECK_MS) } });
  clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  created = await clinic.newConsultation("V", ["Exam room 7", "Neurology, remote"]);
});

t.after(async () => {
  for (const s of open) await s.leave().catch(() => {});
  await stack?.stop();
});

t("a token revoked while the edge → node call is cut: the node's timer closes the session; it cannot rejoin", async () => {
  const a = await join(created.tokens[0]!.token);
  const connected = once(a, "connected", 10_000);
  const b = await join(created.tokens[1]!.token);
  await connected;
  stack.edgeToNode.block = /\/revocations /;
  const closed = once<string>(b, "closed", 5000);
  const started = Date.now();
  const r = await clinic.call("DELETE", `/v1/consultations/${created.id}/tokens/${decodeJwt(created.tokens[1]!.token).jti}`);
  assert.is(r.status, 200, JSON.stringify(r.body));
  assert.is(r.body.nodeNotified, false, "the push was cut");
  assert.ok(stack.edgeToNode.blocked >= 1);
  assert.is(await closed, "revoked");
  const ms = Date.now() - started;
  assert.ok(ms < CHECK_MS + 1500, `closed after ${ms} ms with a ${CHECK_MS} ms re-check`);
  assert.is(await refusal(created.tokens[1]!.token, b.resume), "revoked", "not even with its resume secret");
  assert.not.ok(a.closed, "the other member stays");
});

t("a terminal revoked while the call is cut: its fresh token's session is closed by the timer", async () => {
  const fresh = await clinic.call("POST", `/v1/consultations/${created.id}/tokens`, { terminalId: created.tokens[1]!.terminalId });
  assert.is(fresh.status, 201);
  const b = await join(fresh.body.token);
  const closed = once<string>(b, "closed", 5000);
  const r = await clinic.call("DELETE", `/v1/terminals/${created.tokens[1]!.terminalId}`);
  assert.is(r.status, 200);
  assert.is(r.body.nodesNotified, 0, "the push was cut");
  assert.is(await closed, "revoked");
  assert.is(await refusal(fresh.body.token), "revoked");
});

t("a consultation ended while the group delete is cut: the timer ends the group; nothing rejoins", async () => {
  const a = open.find((s) => s.self.role === "requester" && !s.closed)!;
  assert.ok(a, "the requester is still in");
  stack.edgeToNode.block = /^DELETE \/v1\/groups\//;
  const ended = once<string>(a, "ended", 5000);
  const r = await clinic.endConsultation(created.id);
  assert.is(r.status, 200);
  assert.is(r.body.nodeNotified, false, "the delete was cut");
  assert.is(await ended, "consultationEnded");
  assert.ok(["consultationEnded", "revoked"].includes(await refusal(created.tokens[0]!.token, a.resume)));
  const stats = await stack.nodeStats();
  assert.ok(stats.revocationChecks > 0, "the node polled");
  assert.is(stats.sessions, 0);
  assert.ok(stack.lines.some((l) => l.includes("revocation re-check closed sessions")), "the node says why it closed them");
  // The node's group-closed report still reaches the edge: the record is complete.
  await stack.reporterDrained();
  const audit = await clinic.call("GET", `/v1/consultations/${created.id}/audit`);
  const actions = audit.body.entries.map((e: { action: string }) => e.action);
  assert.ok(actions.includes("group-closed"), actions.join(","));
});

t.run();
