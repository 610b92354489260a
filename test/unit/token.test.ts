import { test } from "uvu";
import * as assert from "uvu/assert";
import { createLocalJWKSet, SignJWT, decodeJwt, decodeProtectedHeader, type JWK } from "jose";
import { generateSigningJwk, loadKeySet, KeySetError, rotateKeySet } from "../../src/token/keys.ts";
import { signConsultationToken, signNodeApiToken } from "../../src/token/sign.ts";
import { TokenError, verifyConsultationToken, verifyNodeApiToken } from "../../src/token/verify.ts";
import { nodeApiAudience, nodeAudience, type ConsultationClaims } from "../../src/token/claims.ts";
import { DEFAULT_GROUP_ATTRIBUTES } from "../../src/types.ts";
import { patientRef } from "../../src/patient.ts";

const now = Math.floor(Date.now() / 1000);
const ISS = "huizhen-edge";

async function setup(alg: "EdDSA" | "ES256" = "EdDSA") {
  const jwk = await generateSigningJwk(alg);
  const keys = await loadKeySet(JSON.stringify({ keys: [jwk] }));
  const jwks = createLocalJWKSet({ keys: keys.publicJwks });
  return { jwk, keys, jwks };
}

function claims(over: Partial<ConsultationClaims> = {}): ConsultationClaims {
  return {
    iss: ISS, aud: nodeAudience("node-1"), sub: "trm_a", iat: now, nbf: now, exp: now + 600, jti: "tok_1",
    cid: "cns_1", gid: "grp_1", role: "requester", ten: "cln_1", prf: "abc", grp: DEFAULT_GROUP_ATTRIBUTES, ...over,
  };
}

const opts = { issuer: ISS, audience: nodeAudience("node-1") };

for (const alg of ["EdDSA", "ES256"] as const) {
  test(`${alg}: a consultation token verifies and returns its claims`, async () => {
    const { keys, jwks } = await setup(alg);
    const token = await signConsultationToken(claims(), keys.active);
    assert.equal(await verifyConsultationToken(token, jwks, opts), claims());
    const header = decodeProtectedHeader(token);
    assert.is(header.kid, keys.active.kid);
    assert.is(header.typ, "hz-consultation+jwt");
  });
}

test("the JWKS carries no private part", async () => {
  const { keys } = await setup();
  for (const k of keys.publicJwks) {
    assert.is((k as JWK).d, undefined);
    assert.ok(k.kid && k.alg && k.x);
  }
});

async function refusal(token: string, jwks: ReturnType<typeof createLocalJWKSet>, o = opts): Promise<string> {
  try {
    await verifyConsultationToken(token, jwks, o);
    return "accepted";
  } catch (e) {
    assert.instance(e, TokenError);
    return (e as TokenError).reason;
  }
}

test("expired, future, wrong-node, wrong-issuer and foreign-key tokens are refused", async () => {
  const { keys, jwks } = await setup();
  const other = await setup();
  assert.is(await refusal(await signConsultationToken(claims({ exp: now - 120 }), keys.active), jwks), "tokenExpired");
  assert.is(await refusal(await signConsultationToken(claims({ nbf: now + 600 }), keys.active), jwks), "tokenInvalid");
  assert.is(await refusal(await signConsultationToken(claims({ aud: nodeAudience("node-2") }), keys.active), jwks), "wrongNode");
  assert.is(await refusal(await signConsultationToken(claims({ iss: "evil" }), keys.active), jwks), "tokenInvalid");
  assert.is(await refusal(await signConsultationToken(claims(), other.keys.active), jwks), "tokenInvalid");
  assert.is(await refusal("not.a.jwt", jwks), "tokenInvalid");
});

test("a tampered payload, alg none and an HS256 token are refused", async () => {
  const { keys, jwks } = await setup();
  const token = await signConsultationToken(claims(), keys.active);
  const [h, , s] = token.split(".");
  const forged = Buffer.from(JSON.stringify({ ...claims(), gid: "grp_other" })).toString("base64url");
  assert.is(await refusal(`${h}.${forged}.${s}`, jwks), "tokenInvalid");
  const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "hz-consultation+jwt" })).toString("base64url")}.${Buffer.from(JSON.stringify(claims())).toString("base64url")}.`;
  assert.is(await refusal(none, jwks), "tokenInvalid");
  const hs = await new SignJWT({ ...claims() }).setProtectedHeader({ alg: "HS256", typ: "hz-consultation+jwt" }).sign(new Uint8Array(32));
  assert.is(await refusal(hs, jwks), "tokenInvalid");
});

test("a node-api token is not a consultation token and vice versa", async () => {
  const { keys, jwks } = await setup();
  const api = await signNodeApiToken({ issuer: ISS, audience: nodeAudience("node-1"), jti: "x" }, keys.active);
  assert.is(await refusal(api, jwks), "tokenInvalid");
  const consult = await signConsultationToken(claims({ aud: nodeApiAudience("node-1") }), keys.active);
  try {
    await verifyNodeApiToken(consult, jwks, { issuer: ISS, audience: nodeApiAudience("node-1") });
    assert.unreachable("accepted a consultation token as a node-api token");
  } catch (e) {
    assert.instance(e, TokenError);
  }
  const good = await signNodeApiToken({ issuer: ISS, audience: nodeApiAudience("node-1"), jti: "y" }, keys.active);
  await verifyNodeApiToken(good, jwks, { issuer: ISS, audience: nodeApiAudience("node-1") });
});

test("extra or missing claims are refused (no PHI can ride along)", async () => {
  const { keys, jwks } = await setup();
  const withName = await signConsultationToken({ ...claims(), name: "Jane Roe" } as ConsultationClaims, keys.active);
  assert.is(await refusal(withName, jwks), "tokenInvalid");
  const { cid: _cid, ...noCid } = claims();
  assert.is(await refusal(await signConsultationToken(noCid as ConsultationClaims, keys.active), jwks), "tokenInvalid");
});

test("patient reference is keyed, clinic-scoped and does not contain the id", async () => {
  const a = await patientRef("key-1", "cln_1", "MRN-0042");
  assert.is(a, await patientRef("key-1", "cln_1", "MRN-0042"));
  assert.is.not(a, await patientRef("key-2", "cln_1", "MRN-0042"));
  assert.is.not(a, await patientRef("key-1", "cln_2", "MRN-0042"));
  assert.not.ok(a.includes("0042"));
  const { keys } = await setup();
  const token = await signConsultationToken(claims({ prf: a }), keys.active);
  assert.not.ok(JSON.stringify(decodeJwt(token)).includes("MRN-0042"));
});

test("key sets are validated", async () => {
  for (const bad of [undefined, "", "{", "{}", '{"keys":[]}', '{"keys":[{"kty":"OKP"}]}']) {
    try {
      await loadKeySet(bad);
      assert.unreachable(`accepted ${bad}`);
    } catch (e) {
      assert.instance(e, KeySetError);
    }
  }
  const jwk = await generateSigningJwk();
  const { d: _d, ...pub } = jwk;
  try {
    await loadKeySet(JSON.stringify({ keys: [pub] }));
    assert.unreachable("accepted a public-only active key");
  } catch (e) {
    assert.instance(e, KeySetError);
  }
});

test("rotation publishes the new kid before use and keeps the old until its tokens expire", async () => {
  const t0 = 1_900_000_000;
  const first = JSON.stringify({ keys: [await generateSigningJwk()] });
  const before = await loadKeySet(first, t0);
  const rotated = await rotateKeySet(first, { nowSec: t0, publishAheadSec: 300, tokenTtlSec: 600 });
  // Right after rotation: both published, the old key still signs.
  const during = await loadKeySet(rotated.secret, t0 + 1);
  assert.is(during.active.kid, before.active.kid);
  assert.equal(during.publicJwks.map((k) => k.kid).sort(), [before.active.kid, rotated.newKid].sort());
  // After activeFrom: the new key signs, the old is still published.
  const after = await loadKeySet(rotated.secret, t0 + 301);
  assert.is(after.active.kid, rotated.newKid);
  assert.ok(after.publicJwks.some((k) => k.kid === before.active.kid));
  // A token signed by the old key just before the switch still verifies after it.
  const oldToken = await signConsultationToken(claims(), during.active);
  await verifyConsultationToken(oldToken, createLocalJWKSet({ keys: after.publicJwks }), opts);
  // After the overlap the old key is gone from the JWKS.
  const later = await loadKeySet(rotated.secret, t0 + 300 + 600 + 61);
  assert.equal(later.publicJwks.map((k) => k.kid), [rotated.newKid]);
  for (const k of later.publicJwks) assert.is((k as Record<string, unknown>).activeFrom, undefined);
});

test.run();
