// Token attacks against a running stack (TrustStack): forged, expired, early, misdirected,
// re-typed, tampered, replayed, reused, revoked and ended tokens, tried on the media node over
// QUIC (a join) and on the edge over HTTP. Each attempt counts; "accepted" means the node
// admitted the session or the edge answered 2xx. A genuine token is admitted first (positive
// control), so a refusal of everything cannot pass for security. Used by
// test/trust/token-attacks.deno.test.ts and bench/trust.ts.
import { SignJWT, decodeJwt, decodeProtectedHeader } from "jose";
import { randomId } from "../../src/bytes.ts";
import { nodeApiAudience, nodeAudience, type ConsultationClaims } from "../../src/token/claims.ts";
import { generateSigningJwk, loadKeySet } from "../../src/token/keys.ts";
import { signConsultationToken, signNodeApiToken } from "../../src/token/sign.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import type { TrustStack } from "./stack.ts";

export interface AttackResult {
  tried: number;
  accepted: number;
  /** Names of attacks that got in (must stay empty). */
  acceptedNames: string[];
  names: string[];
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

export async function runTokenAttacks(stack: TrustStack, clinic: ClinicClient): Promise<AttackResult> {
  const res: AttackResult = { tried: 0, accepted: 0, acceptedNames: [], names: [] };
  const t1 = await clinic.registerTerminal("Attack room 1", "doctor");
  const t2 = await clinic.registerTerminal("Attack room 2", "specialist");
  const create = async (tag: string) => {
    const r = await clinic.createConsultation({ patient: testPatient(tag), requester: { terminalId: t1.id }, consultant: { terminalId: t2.id } });
    if (r.status !== 201) throw new Error(`create: ${r.status}`);
    return r.body;
  };
  const c = await create("A1");
  const d = await create("A2");
  const node = c.group.node;
  const open: TerminalSession[] = [];
  const connect = async (token: string, resume?: string) => {
    const s = await TerminalSession.connect({ url: node.url, certHashes: node.certHashes, token, resume, sdk: "trust-attack", timeoutMs: 5000 });
    open.push(s);
    return s;
  };
  /** Joins; true when admitted (then leaves at once). */
  const admitted = async (token: string, resume?: string) => {
    try {
      const s = await connect(token, resume);
      await s.leave();
      return true;
    } catch {
      return false;
    }
  };
  const attempt = async (name: string, accepted: Promise<boolean>) => {
    res.tried++;
    res.names.push(name);
    if (await accepted) {
      res.accepted++;
      res.acceptedNames.push(name);
    }
  };

  // Positive control: the genuine tokens are admitted and connect.
  const a = await connect(c.tokens[0]!.token);
  const connected = new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("positive control: genuine tokens did not connect")), 10_000);
    a.on("connected", () => { clearTimeout(timer); ok(); });
  });
  const b = await connect(c.tokens[1]!.token);
  await connected;

  const keys = await loadKeySet(stack.secrets.SIGNING_KEYS);
  const foreign = await loadKeySet(JSON.stringify({ keys: [await generateSigningJwk("EdDSA")] }));
  const base = decodeJwt(d.tokens[0]!.token) as unknown as ConsultationClaims;
  const header = decodeProtectedHeader(d.tokens[0]!.token);
  const now = Math.floor(Date.now() / 1000);
  const sign = (over: Partial<ConsultationClaims> & Record<string, unknown> = {}, key = keys.active) =>
    signConsultationToken({ ...base, jti: randomId("jti", 16), ...over } as ConsultationClaims, key);
  const [, payloadPart, sigPart] = d.tokens[0]!.token.split(".");
  const otherTerminal = await clinic.registerTerminal("Not a member", "other");

  // Forged or bent tokens, each tried on the node (join) and on the edge (GET /v1/join).
  const forged: [string, string][] = [
    ["garbage", "not-a-token"],
    ["expired beyond the clock-skew bound", await sign({ iat: now - 900, nbf: now - 900, exp: now - 120 })],
    ["not yet valid beyond the clock-skew bound", await sign({ nbf: now + 120, iat: now + 120, exp: now + 900 })],
    ["audience of another node", await sign({ aud: nodeAudience("node-elsewhere") })],
    ["another issuer", await sign({ iss: "evil-edge" })],
    ["signed by a key the edge does not publish", await sign({}, foreign.active)],
    ["foreign key claiming the edge's kid", await new SignJWT({ ...base, jti: randomId("jti", 16) }).setProtectedHeader({ alg: "EdDSA", kid: keys.active.kid, typ: "hz-consultation+jwt" }).sign(foreign.active.privateKey)],
    ["alg none", `${b64({ alg: "none", typ: "hz-consultation+jwt", kid: header.kid })}.${payloadPart}.`],
    ["HS256 keyed with the public key (algorithm confusion)", await new SignJWT({ ...base, jti: randomId("jti", 16) }).setProtectedHeader({ alg: "HS256", kid: keys.active.kid, typ: "hz-consultation+jwt" }).sign(new TextEncoder().encode(JSON.stringify(keys.publicJwks[0])))],
    ["tampered payload, original signature", `${d.tokens[0]!.token.split(".")[0]}.${b64({ ...base, role: "consultant", sub: t2.id })}.${sigPart}`],
    ["unknown kid", await new SignJWT({ ...base, jti: randomId("jti", 16) }).setProtectedHeader({ alg: "EdDSA", kid: "k_nonexistent", typ: "hz-consultation+jwt" }).sign(keys.active.privateKey)],
    ["node-API token presented as a consultation token", await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeAudience(node.id), jti: randomId("napi", 8) }, keys.active)],
    ["plain JWT type", await new SignJWT({ ...base, jti: randomId("jti", 16) }).setProtectedHeader({ alg: "EdDSA", kid: keys.active.kid, typ: "JWT" }).sign(keys.active.privateKey)],
    ["extra claim carrying a name", await sign({ name: testPatient("A2").name } as never)],
    ["no jti", await new SignJWT({ ...base, jti: undefined }).setProtectedHeader({ alg: "EdDSA", kid: keys.active.kid, typ: "hz-consultation+jwt" }).sign(keys.active.privateKey)],
    ["a terminal that is not a member", await sign({ sub: otherTerminal.id })],
    ["one consultation's group with another's id", await sign({ gid: c.group.id })],
    ["tenant and consultation claims of another clinic", await sign({ sub: t2.id, role: "consultant", ten: "cln_someone_else", cid: "cns_other" })],
  ];
  for (const [name, token] of forged) {
    await attempt(`node join: ${name}`, admitted(token));
    await attempt(`edge /v1/join: ${name}`, new ClinicClient(stack.edgeUrl, token).call("GET", "/v1/join").then((r) => r.status < 300));
  }

  // Reuse: a live token, a used token without its resume secret, a wrong resume secret.
  await attempt("node join: a token whose session is live", admitted(c.tokens[0]!.token));
  await attempt("node join: a live token with a wrong resume secret", admitted(c.tokens[1]!.token, "rs_" + "x".repeat(24)));
  const resumeA = a.resume;
  await a.leave();
  await new Promise((r) => setTimeout(r, 150));
  await attempt("node join: a used token again, without its resume secret", admitted(c.tokens[0]!.token));
  await attempt("node join: a used token with another session's resume secret", admitted(c.tokens[0]!.token, b.resume));
  if (!(await admitted(c.tokens[0]!.token, resumeA))) throw new Error("positive control: the documented resume path does not admit");

  // Revoked and ended.
  const jti = decodeJwt(c.tokens[1]!.token).jti!;
  const resumeB = b.resume;
  await clinic.call("DELETE", `/v1/consultations/${c.id}/tokens/${jti}`);
  await new Promise((r) => setTimeout(r, 300));
  await attempt("node join: a revoked token with its resume secret", admitted(c.tokens[1]!.token, resumeB));
  await attempt("edge /v1/join: a revoked token", new ClinicClient(stack.edgeUrl, c.tokens[1]!.token).call("GET", "/v1/join").then((r) => r.status < 300));
  await clinic.endConsultation(d.id);
  await attempt("node join: a token of an ended consultation", admitted(d.tokens[1]!.token));
  await attempt("edge /v1/join: a token of an ended consultation", new ClinicClient(stack.edgeUrl, d.tokens[1]!.token).call("GET", "/v1/join").then((r) => r.status < 300));

  // Tokens in the wrong place on the edge.
  await attempt("edge: a consultation token as clinic API key", new ClinicClient(stack.edgeUrl, c.tokens[0]!.token).call("GET", "/v1/consultations").then((r) => r.status < 300));
  await attempt("edge: a terminal secret as clinic API key", new ClinicClient(stack.edgeUrl, t1.secret).call("GET", "/v1/consultations").then((r) => r.status < 300));
  await attempt("edge: a clinic API key on the operator API", new ClinicClient(stack.edgeUrl, clinic.apiKey).call("GET", "/v1/nodes").then((r) => r.status < 300));
  await attempt("edge: another terminal's secret for invitations", new ClinicClient(stack.edgeUrl, t2.secret).call("GET", `/v1/terminals/${t1.id}/invitations`).then((r) => r.status < 300));
  const spare = await clinic.call("POST", "/v1/api-keys");
  await clinic.call("DELETE", `/v1/api-keys/${spare.body.id}`);
  await attempt("edge: a revoked API key", new ClinicClient(stack.edgeUrl, spare.body.apiKey).call("GET", "/v1/consultations").then((r) => r.status < 300));

  // The node's control API: a captured edge → node call replayed, and tokens that are not node-API tokens.
  const captured = stack.edgeToNode.messages().find((m) => m.direction === "request" && /^authorization: Bearer /im.test(m.head));
  const replayBearer = captured ? /^authorization: Bearer (\S+)/im.exec(captured.head)![1]! : "none";
  const nodeApi = (bearer: string) => fetch(`${stack.node.apiUrl}/v1/stats`, { headers: { authorization: `Bearer ${bearer}` } }).then(async (r) => { await r.body?.cancel(); return r.status < 300; });
  await attempt("node API: a captured edge call replayed", nodeApi(replayBearer));
  await attempt("node API: a consultation token as node-API token", nodeApi(c.tokens[0]!.token));
  await attempt("node API: a node-API token from a foreign key", nodeApi(await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeApiAudience(stack.credential.nodeId), jti: randomId("napi", 8) }, foreign.active)));
  await attempt("node API: a node-API token for another node", nodeApi(await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeApiAudience("node-elsewhere"), jti: randomId("napi", 8) }, keys.active)));
  await attempt("node API: an expired node-API token", nodeApi(await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeApiAudience(stack.credential.nodeId), jti: randomId("napi", 8), ttlSeconds: -120 }, keys.active)));

  for (const s of open) await s.leave().catch(() => {});
  return res;
}
