// Node-to-node authentication for a cascade: the edge, which placed a group on two nodes,
// signs for the dialing node a token naming the pair and the group. The listening node verifies
// it with the edge's JWKS like any edge-signed token: only a node the edge chose can attach to
// the group, and the token is no credential for anything else (its own `typ`).
import { SignJWT, errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { ALGORITHMS, nodeAudience } from "./claims.ts";
import type { SigningKey } from "./sign.ts";

export const CASCADE_TOKEN_TYPE = "hz-cascade+jwt";

export interface CascadeClaims {
  /** The dialing node. */
  sub: string;
  /** The listening node's audience (`nodeAudience(listener)`). */
  aud: string;
  gid: string;
  exp: number;
}

export class CascadeTokenError extends Error {
  override name = "CascadeTokenError";
}

export function signCascadeToken(
  opts: { issuer: string; dialer: string; listener: string; groupId: string; ttlSeconds: number; jti: string },
  key: SigningKey,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ gid: opts.groupId })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: CASCADE_TOKEN_TYPE })
    .setIssuer(opts.issuer).setSubject(opts.dialer).setAudience(nodeAudience(opts.listener))
    .setIssuedAt(now).setNotBefore(now).setExpirationTime(now + opts.ttlSeconds).setJti(opts.jti)
    .sign(key.privateKey);
}

export async function verifyCascadeToken(token: string, keys: JWTVerifyGetKey, opts: { issuer: string; listener: string }): Promise<CascadeClaims> {
  try {
    const { payload } = await jwtVerify(token, keys, {
      algorithms: [...ALGORITHMS], typ: CASCADE_TOKEN_TYPE, issuer: opts.issuer, audience: nodeAudience(opts.listener),
      requiredClaims: ["sub", "exp", "gid"], clockTolerance: 30,
    });
    if (typeof payload.gid !== "string" || typeof payload.sub !== "string") throw new CascadeTokenError("cascade token claims malformed");
    return { sub: payload.sub, aud: nodeAudience(opts.listener), gid: payload.gid, exp: payload.exp! };
  } catch (err) {
    if (err instanceof CascadeTokenError) throw err;
    throw new CascadeTokenError(err instanceof errors.JWTExpired ? "cascade token expired" : "cascade token invalid");
  }
}
