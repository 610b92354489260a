// The consultation flow end to end on real parts: the edge (workerd + local D1, then Deno +
// SQLite), a media node under Deno (QUIC), and two headless terminals (Deno's WebTransport
// client through the SDK's TerminalSession). Runs under Deno (it needs a QUIC client).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { decodeJwt } from "jose";
import { startStack, generateEdgeSecrets, type Stack, type EdgeRuntime } from "../../scripts/stack.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { loadKeySet } from "../../src/token/keys.ts";
import { signConsultationToken } from "../../src/token/sign.ts";
import { nodeAudience, type ConsultationClaims } from "../../src/token/claims.ts";
import { Track } from "../../src/protocol/media.ts";
import { once, payload, sleep } from "../media/support.ts";


function videoSize(i: number): number {
  return i % 30 === 0 ? 24_000 : 600 + ((i * 977) % 9000); // keyframes span ~20 datagrams
}

for (const runtime of ["workerd", "deno"] as EdgeRuntime[]) {
  const t = suite(`consultation flow, edge on ${runtime}`);
  let stack: Stack;
  let clinic: ClinicClient;
  let requester: { id: string; secret: string };
  let consultant: { id: string; secret: string };
  let created: CreatedConsultation;
  let a: TerminalSession | undefined;
  let b: TerminalSession | undefined;
  const body = () => ({
    patient: testPatient(),
    requester: { terminalId: requester.id },
    consultant: { terminalId: consultant.id },
    reason: "Second opinion on a pigmented lesion",
    region: "local",
  });
  const join = (c: CreatedConsultation, role: "requester" | "consultant", token?: string) =>
    TerminalSession.connect({
      url: c.group.node.url,
      certHashes: c.group.node.certHashes,
      token: token ?? c.tokens.find((x) => x.role === role)!.token,
      sdk: "integration-test",
    });

  t.before(async () => {
    stack = await startStack({ edge: runtime, secrets: await generateEdgeSecrets() });
    clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
    requester = await clinic.registerTerminal("Clinic exam room 2", "doctor");
    consultant = await clinic.registerTerminal("Dermatology, remote", "specialist");
  });

  t.after(async () => {
    try { a?.leave(); b?.leave(); } catch { /* already closed */ }
    await stack?.stop();
  });

  t("a clinic's request creates a pending consultation with a token per terminal", async () => {
    const r = await clinic.createConsultation(body(), "req-0001");
    assert.is(r.status, 201, JSON.stringify(r.body));
    created = r.body;
    assert.is(created.status, "pending");
    assert.is(created.group.node.id, stack.node.id);
    assert.equal(created.group.node.certHashes, stack.node.certHashes);
    assert.is(created.tokens.length, 2);
    for (const tok of created.tokens) {
      const claims = decodeJwt(tok.token) as unknown as ConsultationClaims;
      assert.is(claims.gid, created.group.id);
      assert.is(claims.cid, created.id);
      assert.is(claims.aud, nodeAudience(stack.node.id));
      assert.is(claims.sub, tok.terminalId);
      assert.is(claims.role, tok.role);
      const text = JSON.stringify(claims);
      for (const phi of Object.values(testPatient())) assert.not.ok(text.includes(phi), "token carries PHI");
      assert.ok(tok.joinUrl.includes("#"), "join URL keeps the token in the fragment");
    }
  });

  t("an idempotent retry returns the same consultation; another body under the key is 409", async () => {
    const again = await clinic.createConsultation(body(), "req-0001");
    assert.is(again.status, 201);
    assert.is(again.body.id, created.id);
    assert.is(again.body.group.id, created.group.id);
    const other = await clinic.createConsultation({ ...body(), reason: "something else" }, "req-0001");
    assert.is(other.status, 409);
    assert.ok((other.body as any).error?.code);
  });

  t("both terminals join and each gets connection-success; the edge records it", async () => {
    a = await join(created, "requester");
    const aConnected = once<unknown[]>(a, "connected", 10_000);
    b = await join(created, "consultant");
    const bConnected = once<unknown[]>(b, "connected", 10_000);
    const [ma, mb] = await Promise.all([aConnected, bConnected]);
    assert.is((ma as any[]).length, 2);
    assert.is((mb as any[]).length, 2);
    const rec = await clinic.waitForConsultation(created.id, (c) => c.status === "connected" && c.participants.every((p: any) => p.joinedAt));
    assert.is(rec.status, "connected");
  });

  t("frames pushed each way arrive intact and in order per track", async () => {
    const received = new Map<TerminalSession, { track: number; seq: number; bytes: Uint8Array }[]>([[a!, []], [b!, []]]);
    for (const s of [a!, b!]) {
      (s as any).on("frame", (f: { header: { track: number; sequence: number }; payload: Uint8Array }) => {
        received.get(s)!.push({ track: f.header.track, seq: f.header.sequence, bytes: f.payload });
      });
    }
    const FRAMES = 150;
    const sent = new Map<TerminalSession, { track: number; seq: number; index: number; size: number }[]>([[a!, []], [b!, []]]);
    for (let i = 0; i < FRAMES; i++) {
      for (const s of [a!, b!]) {
        const audioSeq = s.sendFrame(Track.audio, payload(0, i, 160), { timestamp: i * 20_000 });
        sent.get(s)!.push({ track: 0, seq: audioSeq, index: i, size: 160 });
        const size = videoSize(i);
        const videoSeq = s.sendFrame(Track.video, payload(1, i, size), { keyframe: i % 30 === 0, timestamp: i * 20_000 });
        sent.get(s)!.push({ track: 1, seq: videoSeq, index: i, size });
      }
      await sleep(20);
    }
    await sleep(1500);
    for (const [from, to] of [[a!, b!], [b!, a!]] as const) {
      const got = received.get(to)!;
      for (const track of [0, 1]) {
        const want = sent.get(from)!.filter((x) => x.track === track);
        const have = got.filter((x) => x.track === track);
        assert.is(have.length, want.length, `track ${track}: ${have.length}/${want.length} frames arrived`);
        for (let i = 0; i < want.length; i++) {
          assert.is(have[i]!.seq, want[i]!.seq, `track ${track} frame ${i} out of order`);
          assert.equal(have[i]!.bytes, payload(track, want[i]!.index, want[i]!.size), `track ${track} frame ${i} corrupted`);
        }
      }
    }
  });

  async function refusedWith(token: string, c = created): Promise<string> {
    try {
      const s = await join(c, "requester", token);
      s.leave();
      return "admitted";
    } catch (err) {
      return (err as { reason?: string }).reason ?? String(err);
    }
  }

  async function forge(over: Partial<ConsultationClaims>): Promise<string> {
    const keys = await loadKeySet(stack.secrets.SIGNING_KEYS);
    const base = decodeJwt(created.tokens[0]!.token) as unknown as ConsultationClaims;
    return signConsultationToken({ ...base, jti: crypto.randomUUID(), ...over }, keys.active);
  }

  t("wrong, expired, foreign-node, other-group and in-use tokens are refused with a reason", async () => {
    assert.is(await refusedWith("garbage"), "tokenInvalid");
    const now = Math.floor(Date.now() / 1000);
    assert.is(await refusedWith(await forge({ iat: now - 900, nbf: now - 900, exp: now - 300 })), "tokenExpired");
    assert.is(await refusedWith(await forge({ aud: nodeAudience("node-elsewhere") })), "wrongNode");
    assert.is(await refusedWith(await forge({ gid: "grp_not_here" })), "groupUnknown");
    // A token signed by someone else's key.
    const foreign = await loadKeySet(JSON.stringify({ keys: [JSON.parse((await generateEdgeSecrets()).SIGNING_KEYS).keys[0]] }));
    const base = decodeJwt(created.tokens[0]!.token) as unknown as ConsultationClaims;
    assert.is(await refusedWith(await signConsultationToken({ ...base, jti: "x" }, foreign.active)), "tokenInvalid");
    // The requester's own token while its session is live.
    assert.is(await refusedWith(created.tokens.find((x) => x.role === "requester")!.token), "tokenInUse");
  });

  t("ending the consultation closes both sessions and the token cannot rejoin", async () => {
    const endedA = once(a!, "ended", 10_000);
    const endedB = once(b!, "ended", 10_000);
    const r = await clinic.endConsultation(created.id);
    assert.is(r.status, 200);
    assert.is(await endedA, "consultationEnded");
    assert.is(await endedB, "consultationEnded");
    const rec = await clinic.getConsultation(created.id);
    assert.is(rec.body.status, "ended");
    const replay = await refusedWith(created.tokens.find((x) => x.role === "consultant")!.token);
    assert.ok(["groupUnknown", "consultationEnded", "revoked"].includes(replay), replay);
  });

  t.run();
}
