import { SignJWT, type CryptoKey, type JWTPayload } from "jose";
import type { ConsultationClaims, SigningAlgorithm } from "./claims.ts";
import { CONSULTATION_TOKEN_TYPE, NODE_API_TOKEN_TYPE } from "./claims.ts";

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
}

async function sign(payload: JWTPayload, typ: string, key: SigningKey): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ }).sign(key.privateKey);
}

export function signConsultationToken(claims: ConsultationClaims, key: SigningKey): Promise<string> {
  return sign({ ...claims }, CONSULTATION_TOKEN_TYPE, key);
}

/** A short-lived credential for one edge → node control call. */
export function signNodeApiToken(
  opts: { issuer: string; audience: string; ttlSeconds?: number; jti: string },
  key: SigningKey,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign(
    { iss: opts.issuer, aud: opts.audience, iat: now, nbf: now, exp: now + (opts.ttlSeconds ?? 60), jti: opts.jti },
    NODE_API_TOKEN_TYPE,
    key,
  );
}
