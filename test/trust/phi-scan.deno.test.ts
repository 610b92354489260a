// No PHI and no token in logs, error messages, URLs or JWT claims, shown on a full run: real
// edge (Deno/SQLite) and media node, every plaintext HTTP byte between clinic, terminals,
// edge and node captured by proxies (test/trust/capture.ts), two terminals joined over QUIC
// with media both ways, bad requests carrying PHI, a revocation, the end. Then every process
// line and every captured message is searched for the patient's name, id, birth date and
// summary and for every token and secret. Positive controls show the scan finds what is there.
// The media itself is QUIC (TLS 1.3): not plaintext, not scanned here. Runs under Deno.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decodeJwt } from "jose";
import { TerminalSession, type FrameEvent } from "../../src/terminal/session.ts";
import { Track } from "../../src/protocol/media.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import { once, payload, sleep } from "../media/support.ts";
import { TrustStack } from "./stack.ts";
import { found, patientNeedles, routeOf, scanTraffic, tokenContents, tokenNeedles, type Needles } from "./scan.ts";

test("a full run leaks no PHI and no token into logs, URLs, errors, node traffic or claims", async () => {
  const stack = await TrustStack.start();
  const patient = testPatient("S");
  const tokens: string[] = [];
  const open: TerminalSession[] = [];
  let created!: CreatedConsultation;
  let terminals: { id: string; secret: string }[] = [];
  try {
    const clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
    terminals = [await clinic.registerTerminal("Exam room 5", "doctor"), await clinic.registerTerminal("Dermatology, remote", "specialist")];
    const body = { patient, requester: { terminalId: terminals[0]!.id }, consultant: { terminalId: terminals[1]!.id }, reason: "Second opinion", region: "local" };
    const r = await clinic.createConsultation(body, "phi-run-1");
    assert.is(r.status, 201, JSON.stringify(r.body));
    created = r.body;
    tokens.push(...created.tokens.map((x) => x.token));
    assert.is((await clinic.createConsultation(body, "phi-run-1")).body.id, created.id, "an idempotent retry");

    // Delivery to the terminals and the page's view.
    for (const [i, term] of terminals.entries()) {
      const inv = await new ClinicClient(stack.edgeUrl, term.secret).call("GET", `/v1/terminals/${term.id}/invitations`);
      assert.is(inv.body.invitations[0].token, created.tokens[i]!.token);
      assert.is((await new ClinicClient(stack.edgeUrl, created.tokens[i]!.token).call("GET", "/v1/join")).status, 200);
    }

    // Both join; media both ways.
    const join = async (token: string) => {
      const s = await TerminalSession.connect({ url: created.group.node.url, certHashes: created.group.node.certHashes, token, sdk: "trust-test" });
      open.push(s);
      return s;
    };
    const a = await join(created.tokens[0]!.token);
    const connected = once(a, "connected", 10_000);
    const b = await join(created.tokens[1]!.token);
    await connected;
    let frames = 0;
    b.on("frame", (_f: FrameEvent) => frames++);
    for (let i = 0; i < 40; i++) {
      a.sendFrame(Track.audio, payload(0, i, 160));
      a.sendFrame(Track.video, payload(1, i, i % 10 === 0 ? 5000 : 800), { keyframe: i % 10 === 0 });
      await sleep(10);
    }
    await clinic.waitForConsultation(created.id, (c) => c.status === "connected");
    await sleep(300);
    assert.is(frames, 80, "media flowed");

    // The owner reads the record (PHI, decrypted, to its owner only) and the audit log.
    assert.equal((await clinic.getConsultation(created.id)).body.patient, patient);
    assert.is((await clinic.call("GET", `/v1/consultations/${created.id}/audit`)).status, 200);

    // Bad requests that carry PHI: the errors must not repeat it.
    const bad = [
      await clinic.createConsultation({ ...body, patient: { ...patient, birthDate: patient.name } }),
      await clinic.createConsultation({ ...body, patient: { ...patient, [patient.name]: patient.birthDate } }),
      await clinic.createConsultation({ ...body, patient: { ...patient, [patient.id]: true } }),
      await clinic.createConsultation({ ...body, patient: { ...patient, id: patient.summary + "x".repeat(200) } }),
      await clinic.createConsultation({ ...body, requester: { terminalId: patient.id } }),
      await clinic.createConsultation({ ...body, reason: patient.name + "\u0001" }),
    ];
    for (const x of bad) assert.ok(x.status >= 400 && x.status < 500, String(x.status));
    // A client that puts an MRN into a URL or a name into a bearer: straight to the edge (not
    // through the capture, which would see the client's own mistake), so only the edge's log could hold it.
    const direct = `http://127.0.0.1:${stack.edgePort}`;
    assert.is((await new ClinicClient(direct, `${patient.id}.${patient.name.replace(/\s/g, "")}`).call("GET", "/v1/join")).status, 401);
    assert.is((await fetch(`${direct}/v1/consultations/${encodeURIComponent(patient.id)}`, { headers: { authorization: `Bearer ${stack.clinicApiKey}` } })).status, 404);

    // A token is re-issued and revoked, then the consultation ends.
    const fresh = await clinic.call("POST", `/v1/consultations/${created.id}/tokens`, { terminalId: terminals[1]!.id });
    assert.is(fresh.status, 201);
    tokens.push(fresh.body.token);
    assert.is((await clinic.call("DELETE", `/v1/consultations/${created.id}/tokens/${fresh.body.jti}`)).status, 200);
    const ended = once(a, "ended", 5000);
    assert.is((await clinic.endConsultation(created.id)).status, 200);
    await ended;
    await stack.reporterDrained();
  } finally {
    for (const s of open) await s.leave().catch(() => {});
    await stack.stop(); // the processes' last lines are in too
  }

  const phi = patientNeedles(patient);
  const secrets: Needles = {
    ...tokenNeedles(tokens),
    clinicApiKey: stack.clinicApiKey,
    adminKey: stack.secrets.ADMIN_KEY,
    nodeSecret: stack.credential.secret,
    ...Object.fromEntries(terminals.map((t, i) => [`terminalSecret[${i}]`, t.secret])),
  };
  for (const k of JSON.parse(stack.secrets.SIGNING_KEYS).keys) secrets[`signingKey.d`] = k.d;
  for (const k of JSON.parse(stack.secrets.PHI_KEYS).keys) secrets[`phiKey.k`] = k.k;

  // 1. Logs of every process.
  const logs = stack.lines.join("\n");
  assert.ok(stack.lines.length > 20, `${stack.lines.length} lines of output`);
  assert.ok(logs.includes(created.group.id), "positive control: the node's log lines are in the scan");
  assert.ok(/POST \/v1\/consultations 201/.test(logs), "positive control: the edge's request lines are in the scan");
  assert.equal(found(logs, phi), [], "PHI in the logs");
  assert.equal(found(logs, secrets), [], "a token or secret in the logs");

  // 2. JWT claims and headers.
  assert.equal(found(tokenContents(tokens), phi), [], "PHI in a token");
  assert.ok(tokens.every((t) => (decodeJwt(t).prf as string).length > 0), "the patient is referred to by a keyed hash only");

  // 3. URLs, everywhere.
  const all = scanTraffic(stack.proxies, { ...phi, ...secrets });
  assert.equal(all.filter((f) => f.part === "url"), [], "PHI or a credential in a URL");

  // 4. Edge ↔ node traffic: neither PHI nor consultation tokens nor clinic credentials.
  const nodeSide = scanTraffic([stack.nodeToEdge, stack.edgeToNode], { ...phi, ...tokenNeedles(tokens), clinicApiKey: stack.clinicApiKey });
  assert.equal(nodeSide, [], "PHI or a consultation token between edge and node");
  const jti = decodeJwt(tokens[0]!).jti!;
  assert.ok(stack.nodeToEdge.messages().some((m) => m.body.includes(jti)), "positive control: the node's events (with jti) were captured");
  assert.ok(stack.edgeToNode.messages().some((m) => m.requestLine.startsWith("POST /v1/groups ") && m.body.includes(created.group.id)), "positive control: the group reservation was captured");
  assert.ok(stack.edgeToNode.messages().some((m) => m.requestLine.startsWith("DELETE /v1/groups/")), "positive control: the end was captured");

  // 5. Clinic/terminal ↔ edge: PHI only where it must travel (the clinic's request, the owner's
  // read); tokens only where they are delivered or presented; never in an error.
  const clinicSide = scanTraffic([stack.clinicProxy], { ...phi, ...tokenNeedles(tokens) });
  const errors = clinicSide.filter((f) => f.direction === "response" && (f.status ?? 0) >= 400);
  assert.equal(errors, [], "an error answer repeats PHI or a token");
  const phiAllowed = new Set(["request POST /v1/consultations body", "response GET /v1/consultations/:cns body"]);
  const tokenAllowed = new Set([
    "response POST /v1/consultations body", "response POST /v1/consultations/:cns/tokens body",
    "response GET /v1/terminals/:trm/invitations body", "request GET /v1/join head",
  ]);
  const key = (f: (typeof clinicSide)[number]) => `${f.direction} ${f.requestLine} ${f.part}`;
  const phiPlaces = clinicSide.filter((f) => f.needles.some((n) => n.startsWith("patient."))).map(key);
  const tokenPlaces = clinicSide.filter((f) => f.needles.some((n) => n.startsWith("token["))).map(key);
  assert.ok(phiPlaces.includes("request POST /v1/consultations body"), "positive control: the scan sees the PHI the clinic sent");
  assert.ok(tokenPlaces.includes("response POST /v1/consultations body"), "positive control: the scan sees tokens being delivered");
  assert.equal([...new Set(phiPlaces.filter((p) => !phiAllowed.has(p)))], [], "PHI outside the clinic's request and the owner's read");
  assert.equal([...new Set(tokenPlaces.filter((p) => !tokenAllowed.has(p)))], [], "a token outside delivery and presentation");
  assert.ok(stack.clinicProxy.messages().length > 20 && routeOf(stack.clinicProxy.messages()[0]!).length > 0);
});

test.run();
