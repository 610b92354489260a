// GET /v1/join: what the consultation page needs before it joins, for the bearer of a
// consultation token. It does not use the token up (the node records first use at join).
import type { Hono } from "hono";
import { cors } from "hono/cors";
import { createLocalJWKSet, decodeJwt } from "jose";
import { nodeAudience } from "../../src/token/claims.ts";
import { TokenError, verifyConsultationToken } from "../../src/token/verify.ts";
import { auditQuery } from "../audit.ts";
import { bearer } from "../auth.ts";
import { readDetails } from "../records.ts";
import { nodeOfTerminal } from "../cascade.ts";
import { candidateNodes } from "./placement.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { ApiError } from "../errors.ts";
import { iso } from "../secrets.ts";
import { placementOf } from "../placement.ts";

const invalid = () => new ApiError(401, "token_invalid", "the consultation token is not valid");

export function joinRoutes(app: Hono<AppEnv>, deps: EdgeDeps) {
  const { store, config } = deps;
  app.use("/v1/join", cors({ origin: "*", allowMethods: ["GET", "OPTIONS"], allowHeaders: ["authorization"], maxAge: 600 }));

  app.get("/v1/join", async (c) => {
    const token = bearer(c);
    if (!token) throw invalid();
    let cid: unknown;
    let sub: unknown;
    try {
      ({ cid, sub } = decodeJwt(token));
    } catch {
      throw invalid();
    }
    if (typeof cid !== "string") throw invalid();
    // Unverified claims only pick the record; the audience check below uses the record's node.
    const cons = await store.db.selectFrom("consultations").selectAll().where("id", "=", cid).executeTakeFirst();
    if (!cons) throw invalid();
    // A cascaded terminal's token names its own node (edge/cascade.ts).
    const its = await nodeOfTerminal(deps, cons, typeof sub === "string" ? sub : "");
    const now = deps.clock.now();
    const jwks = createLocalJWKSet({ keys: await config.keys.publicJwks(now) });
    let claims;
    try {
      claims = await verifyConsultationToken(token, jwks, { issuer: config.issuer, audience: nodeAudience(its.id), currentDate: new Date(now) });
    } catch (err) {
      if (err instanceof TokenError && err.reason === "tokenExpired") throw new ApiError(401, "token_expired", "the consultation token has expired");
      throw invalid();
    }
    if (claims.ten !== cons.clinic_id || claims.gid !== cons.group_id) throw invalid();
    const row = await store.db
      .selectFrom("tokens")
      .select(["terminal_id", "role", "expires_at", "revoked_at"])
      .where("jti", "=", claims.jti)
      .where("clinic_id", "=", cons.clinic_id)
      .where("consultation_id", "=", cons.id)
      .executeTakeFirst();
    if (!row || row.terminal_id !== claims.sub) throw invalid();
    if (cons.status === "ended") throw new ApiError(410, "consultation_ended", "the consultation has ended");
    if (row.revoked_at !== null) throw new ApiError(403, "revoked", "access to this consultation was revoked");
    const people = await store.db
      .selectFrom("participants")
      .innerJoin("terminals", "terminals.id", "participants.terminal_id")
      .select(["participants.terminal_id", "participants.role", "terminals.label", "terminals.kind"])
      .where("participants.consultation_id", "=", cons.id)
      .where("participants.clinic_id", "=", cons.clinic_id)
      .execute();
    const me = people.find((p) => p.terminal_id === claims.sub);
    const peer = people.find((p) => p.terminal_id !== claims.sub);
    if (!me) throw invalid();
    const { reason } = await readDetails(deps, cons);
    await store.batch([auditQuery(store, { clinicId: cons.clinic_id, consultationId: cons.id, at: now, actor: { type: "terminal", id: me.terminal_id }, action: "read", terminalId: me.terminal_id, detail: { via: "join" } })]);
    c.header("cache-control", "no-store");
    return c.json({
      consultationId: cons.id,
      status: cons.status,
      role: row.role,
      expiresAt: iso(row.expires_at),
      terminal: { id: me.terminal_id, label: me.label, kind: me.kind },
      peer: peer ? { role: peer.role, label: peer.label, kind: peer.kind } : null,
      ...(reason !== undefined ? { reason } : {}),
      node: placementOf(its),
      // What the page probes before joining (RTT, jitter, loss), sent with a move to another node.
      candidates: await candidateNodes(deps),
    });
  });
}
