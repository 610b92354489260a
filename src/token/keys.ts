// Signing keys travel as one JSON secret: { "keys": [private JWK with kid and alg, …] }.
// The first key signs; every key's public part is published in the JWKS until removed.
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

export async function loadKeySet(secret: string | undefined): Promise<KeySet> {
  if (!secret) throw new KeySetError("SIGNING_KEYS is not set");
  let parsed: { keys?: JWK[] };
  try {
    parsed = JSON.parse(secret);
  } catch {
    throw new KeySetError("SIGNING_KEYS is not valid JSON");
  }
  const keys = parsed.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new KeySetError("SIGNING_KEYS has no keys");
  for (const k of keys) {
    if (!k.kid || !k.alg || !(ALGORITHMS as readonly string[]).includes(k.alg)) {
      throw new KeySetError("every signing key needs a kid and an allowed alg");
    }
  }
  const first = keys[0]!;
  if (!first.d) throw new KeySetError("the active signing key has no private part");
  const privateKey = (await importJWK(first, first.alg)) as CryptoKey;
  return {
    active: { kid: first.kid!, alg: first.alg as SigningAlgorithm, privateKey },
    publicJwks: keys.map(publicPart),
  };
}
