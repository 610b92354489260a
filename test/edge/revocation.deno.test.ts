// Revocation reaches live sessions: with a real media node (Deno, QUIC) and two terminals
// joined, revoking a token, re-issuing one, revoking a terminal and ending the consultation
// each close the affected session within a second, and a revoked token cannot rejoin.
// Runs under Deno (it needs a WebTransport client).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { decodeJwt } from "jose";
import { startStack, type EdgeRuntime, type Stack } from "../../scripts/stack.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import { TerminalSession } from "../../src/terminal/session.ts";

function next<T>(s: TerminalSession, event: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    (s as any).on(event, (v: T) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

async function refusal(c: CreatedConsultation, token: string): Promise<string> {
  try {
    const s = await TerminalSession.connect({ url: c.group.node.url, certHashes: c.group.node.certHashes, token, sdk: "edge-revocation-test" });
    await s.leave();
    return "admitted";
  } catch (err) {
    return (err as { reason?: string }).reason ?? String(err);
  }
}

for (const runtime of ["deno", "workerd"] as EdgeRuntime[]) {
  const t = suite(`revocation reaches live sessions, edge on ${runtime}`);
  let stack: Stack;
  let clinic: ClinicClient;
  let created: CreatedConsultation;
  let a: TerminalSession;
  let b: TerminalSession;
  const open: TerminalSession[] = [];
  const join = async (token: string) => {
    const s = await TerminalSession.connect({ url: created.group.node.url, certHashes: created.group.node.certHashes, token, sdk: "edge-revocation-test" });
    open.push(s);
    return s;
  };

  t.before(async () => {
    stack = await startStack({ edge: runtime });
    clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
    const requester = await clinic.registerTerminal("Exam room 4", "doctor");
    const consultant = await clinic.registerTerminal("Cardiology, remote", "specialist");
    const r = await clinic.createConsultation({ patient: testPatient("R"), requester: { terminalId: requester.id }, consultant: { terminalId: consultant.id } });
    assert.is(r.status, 201, JSON.stringify(r.body));
    created = r.body;
    a = await join(created.tokens[0]!.token);
    const aConnected = next(a, "connected", 10_000);
    b = await join(created.tokens[1]!.token);
    await aConnected;
  });

  t.after(async () => {
    for (const s of open) await s.leave().catch(() => {});
    await stack?.stop();
  });

  t("revoking one token closes its session within 1 s; the token cannot rejoin", async () => {
    const closed = next<string>(b, "closed", 1000);
    const jti = decodeJwt(created.tokens[1]!.token).jti!;
    const started = Date.now();
    const r = await clinic.call("DELETE", `/v1/consultations/${created.id}/tokens/${jti}`);
    assert.is(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.nodeNotified);
    assert.is(await closed, "revoked");
    assert.ok(Date.now() - started < 1000);
    assert.is(await refusal(created, created.tokens[1]!.token), "revoked");
  });

  t("a re-issued token joins again", async () => {
    const fresh = await clinic.call("POST", `/v1/consultations/${created.id}/tokens`, { terminalId: created.tokens[1]!.terminalId });
    assert.is(fresh.status, 201, JSON.stringify(fresh.body));
    const peer = next(a, "peer-joined", 5000);
    b = await join(fresh.body.token);
    await peer;
  });

  t("revoking a terminal closes its session within 1 s", async () => {
    const closed = next<string>(a, "closed", 1000);
    const r = await clinic.call("DELETE", `/v1/terminals/${created.tokens[0]!.terminalId}`);
    assert.is(r.status, 200);
    assert.is(r.body.nodesNotified, 1);
    assert.is(await closed, "revoked");
    assert.is(await refusal(created, created.tokens[0]!.token), "revoked");
  });

  t("ending the consultation ends the remaining session; the audit log has it all", async () => {
    const ended = next<string>(b, "ended", 2000);
    assert.is((await clinic.endConsultation(created.id)).status, 200);
    assert.is(await ended, "consultationEnded");
    const audit = await clinic.call("GET", `/v1/consultations/${created.id}/audit`);
    const actions = audit.body.entries.map((e: { action: string }) => e.action);
    assert.is(actions.filter((x: string) => x === "token.revoke").length, 3, actions.join(","));
    assert.ok(actions.includes("end"));
    const out = stack.output().join("\n");
    assert.not.ok(out.includes(testPatient("R").name));
    for (const tok of created.tokens) assert.not.ok(out.includes(tok.token), "a token in the logs");
  });

  t.run();
}
