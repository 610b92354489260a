// Signing keys travel as one JSON secret: { "keys": [private JWK with kid and alg, …] }.
// Rotation with overlap: a key may carry `activeFrom` (unix s; published at once, used to sign
// only from then, so verifiers see its kid before any token uses it) and `retireAfter` (unix s;
// dropped from the JWKS after it, once tokens it signed have expired). Of the keys whose
// `activeFrom` has passed, the one that became active last signs.
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";
import type { SigningAlgorithm } from "./claims.ts";
import { ALGORITHMS } from "./claims.ts";
import type { SigningKey } from "./sign.ts";
import { randomId } from "../bytes.ts";

export class KeySetError extends Error {
  override name = "KeySetError";
}

export interface KeySet {
  /** The key new tokens are signed with. */
  active: SigningKey;
  /** Public JWKs of every key, for /.well-known/jwks.json. */
  publicJwks: JWK[];
}

const PRIVATE_FIELDS = ["d", "p", "q", "dp", "dq", "qi", "k"];

export function publicPart(jwk: JWK): JWK {
  const pub: JWK = {};
  for (const [k, v] of Object.entries(jwk)) {
    if (!PRIVATE_FIELDS.includes(k) && k !== "key_ops" && k !== "ext") (pub as Record<string, unknown>)[k] = v;
  }
  pub.use = "sig";
  return pub;
}

export async function generateSigningJwk(alg: SigningAlgorithm = "EdDSA"): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, crv: alg === "EdDSA" ? "Ed25519" : undefined });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, kid: randomId("k", 9), use: "sig" };
}

export interface RotatableJwk extends JWK {
  activeFrom?: number;
  retireAfter?: number;
}

export async function loadKeySet(secret: string | undefined, nowSec = Math.floor(Date.now() / 1000)): Promise<KeySet> {
  if (!secret) throw new KeySetError("SIGNING_KEYS is not set");
  let parsed: { keys?: JWK[] };
  try {
    parsed = JSON.parse(secret);
  } catch {
    throw new KeySetError("SIGNING_KEYS is not valid JSON");
  }
  const keys = parsed.keys as RotatableJwk[] | undefined;
  if (!Array.isArray(keys) || keys.length === 0) throw new KeySetError("SIGNING_KEYS has no keys");
  for (const k of keys) {
    if (!k.kid || !k.alg || !(ALGORITHMS as readonly string[]).includes(k.alg)) {
      throw new KeySetError("every signing key needs a kid and an allowed alg");
    }
  }
  const live = keys.filter((k) => k.retireAfter === undefined || k.retireAfter > nowSec);
  const usable = live
    .map((k, i) => ({ k, i, from: k.activeFrom ?? 0 }))
    .filter((x) => x.from <= nowSec && x.k.d)
    .sort((a, b) => b.from - a.from || a.i - b.i);
  const chosen = usable[0]?.k;
  if (!chosen) throw new KeySetError("no signing key is active now (with a private part)");
  const { activeFrom: _a, retireAfter: _r, ...jwk } = chosen;
  const privateKey = (await importJWK(jwk, chosen.alg)) as CryptoKey;
  return {
    active: { kid: chosen.kid!, alg: chosen.alg as SigningAlgorithm, privateKey },
    publicJwks: live.map(({ activeFrom: _x, retireAfter: _y, ...k }) => publicPart(k)),
  };
}

export interface RotationOptions {
  nowSec?: number;
  /** How long before use the new key is published: at least the JWKS cache lifetime. */
  publishAheadSec?: number;
  /** Longest token lifetime: old keys stay published this long after the new one takes over. */
  tokenTtlSec?: number;
  alg?: SigningAlgorithm;
}

/** Adds a new key (published now, signing after `publishAheadSec`), retires the old ones after overlap, prunes retired keys. */
export async function rotateKeySet(secret: string, opts: RotationOptions = {}): Promise<{ secret: string; newKid: string; activeFrom: number }> {
  const now = opts.nowSec ?? Math.floor(Date.now() / 1000);
  await loadKeySet(secret, now); // refuse to rotate a broken set
  const keys = (JSON.parse(secret).keys as RotatableJwk[]).filter((k) => k.retireAfter === undefined || k.retireAfter > now);
  const activeFrom = now + (opts.publishAheadSec ?? 300);
  const retireAfter = activeFrom + (opts.tokenTtlSec ?? 3600) + 60;
  const fresh: RotatableJwk = { ...(await generateSigningJwk(opts.alg ?? "EdDSA")), activeFrom };
  const kept = keys.map((k) => ({ ...k, retireAfter: Math.min(k.retireAfter ?? Infinity, retireAfter) }));
  return { secret: JSON.stringify({ keys: [fresh, ...kept] }), newKid: fresh.kid!, activeFrom };
}
