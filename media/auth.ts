// Verifying what the edge signed: consultation tokens (at join) and node-API calls, both with
// the edge's JWKS, fetched from EDGE_URL, cached, and fetched again when an unknown kid shows up.
import { createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import { nodeApiAudience, nodeAudience, type ConsultationClaims } from "../src/token/claims.ts";
import { TokenError, verifyConsultationToken, verifyNodeApiToken } from "../src/token/verify.ts";
import { decodeJwt } from "jose";

export function edgeJwks(edgeUrl: string): JWTVerifyGetKey {
  return createRemoteJWKSet(new URL("/.well-known/jwks.json", edgeUrl), {
    cacheMaxAge: 10 * 60_000,
    // An unknown kid refetches at most this often (a new key is published before it signs).
    cooldownDuration: 5_000,
    timeoutDuration: 5_000,
  });
}

export class EdgeAuth {
  /** jti → exp (s) of node-API tokens already used, so a captured call cannot be replayed. */
  private readonly usedApiJtis = new Map<string, number>();

  constructor(
    private readonly keys: JWTVerifyGetKey,
    private readonly nodeId: string,
    private readonly issuer: string,
  ) {}

  verifyConsultation(token: string): Promise<ConsultationClaims> {
    return verifyConsultationToken(token, this.keys, { issuer: this.issuer, audience: nodeAudience(this.nodeId) });
  }

  /** Checks an `Authorization: Bearer` node-API JWT; throws TokenError. */
  async verifyApiCall(authorization: string | null | undefined): Promise<void> {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
    if (!m) throw new TokenError("tokenInvalid", "missing bearer token");
    await verifyNodeApiToken(m[1]!, this.keys, { issuer: this.issuer, audience: nodeApiAudience(this.nodeId) });
    const { jti, exp } = decodeJwt(m[1]!);
    const now = Math.floor(Date.now() / 1000);
    for (const [k, e] of this.usedApiJtis) if (e + 60 < now) this.usedApiJtis.delete(k);
    if (typeof jti === "string") {
      if (this.usedApiJtis.has(jti)) throw new TokenError("tokenInvalid", "node-API token replayed");
      this.usedApiJtis.set(jti, typeof exp === "number" ? exp : now + 60);
    }
  }
}
