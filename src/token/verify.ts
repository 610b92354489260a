import { errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import type { ConsultationClaims } from "./claims.ts";
import { ALGORITHMS, CONSULTATION_TOKEN_TYPE, ClaimsError, NODE_API_TOKEN_TYPE, parseConsultationClaims } from "./claims.ts";

/** Why a token was refused; maps onto session close reasons. */
export type TokenFailure = "tokenInvalid" | "tokenExpired" | "wrongNode";

export class TokenError extends Error {
  override name = "TokenError";
  constructor(readonly reason: TokenFailure, message: string) {
    super(message);
  }
}

export interface VerifyOptions {
  issuer: string;
  audience: string;
  /** Allowed clock difference between edge and node, s. */
  clockToleranceSec?: number;
  /** For tests: the time to check against, s since epoch. */
  currentDate?: Date;
}

async function verify(token: string, keys: JWTVerifyGetKey, typ: string, opts: VerifyOptions) {
  try {
    const { payload } = await jwtVerify(token, keys, {
      algorithms: [...ALGORITHMS],
      issuer: opts.issuer,
      audience: opts.audience,
      typ,
      clockTolerance: opts.clockToleranceSec ?? 30,
      requiredClaims: ["exp", "nbf", "iat", "jti", "sub"].filter((c) => typ === CONSULTATION_TOKEN_TYPE || c !== "sub"),
      currentDate: opts.currentDate,
    });
    return payload;
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw new TokenError("tokenExpired", "token has expired");
    if (err instanceof errors.JWTClaimValidationFailed && err.claim === "aud") {
      throw new TokenError("wrongNode", "token is for another audience");
    }
    const detail = err instanceof errors.JOSEError ? err.code : "malformed";
    throw new TokenError("tokenInvalid", `token rejected (${detail})`);
  }
}

/** Verifies signature, algorithm, type, issuer, audience and time, then the claims' shape. */
export async function verifyConsultationToken(
  token: string,
  keys: JWTVerifyGetKey,
  opts: VerifyOptions,
): Promise<ConsultationClaims> {
  const payload = await verify(token, keys, CONSULTATION_TOKEN_TYPE, opts);
  try {
    return parseConsultationClaims(payload as Record<string, unknown>);
  } catch (err) {
    throw new TokenError("tokenInvalid", err instanceof ClaimsError ? err.message : "claims malformed");
  }
}

export async function verifyNodeApiToken(token: string, keys: JWTVerifyGetKey, opts: VerifyOptions): Promise<void> {
  await verify(token, keys, NODE_API_TOKEN_TYPE, opts);
}
