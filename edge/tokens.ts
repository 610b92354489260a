// Consultation tokens: signing (claims per src/token/claims.ts, no PHI), recording with an
// audit entry, re-issuing one for a participant, revoking one.
import type { CompiledQuery } from "kysely";
import { randomId } from "../src/bytes.ts";
import type { GroupAttributes, Role } from "../src/types.ts";
import { nodeAudience, type ConsultationClaims } from "../src/token/claims.ts";
import { signConsultationToken } from "../src/token/sign.ts";
import { auditQuery } from "./audit.ts";
import type { ClinicPrincipal, EdgeDeps } from "./context.ts";
import { ApiError, badRequest, notFound } from "./errors.ts";
import { cipherContext as ctx, findOwned, joinUrl, nodeRef } from "./records.ts";
import { iso } from "./secrets.ts";
import { legsOf } from "./cascade.ts";

export interface TokenSpec {
  clinicId: string;
  consultationId: string;
  groupId: string;
  nodeId: string;
  patientRef: string;
  attributes: GroupAttributes;
  terminalId: string;
  role: Role;
  now: number;
  actor: { type: "clinic" | "terminal" | "edge"; id: string };
}

/** Signs one consultation token and returns it with the queries that record and audit it. */
export async function tokenQueries(deps: EdgeDeps, t: TokenSpec) {
  const { config, store } = deps;
  const { active } = await config.keys.get(t.now);
  const nowSec = Math.floor(t.now / 1000);
  const exp = nowSec + config.tokenTtlSec;
  const jti = randomId("jti", 16);
  const claims: ConsultationClaims = {
    iss: config.issuer,
    aud: nodeAudience(t.nodeId),
    sub: t.terminalId,
    iat: nowSec,
    nbf: nowSec,
    exp,
    jti,
    cid: t.consultationId,
    gid: t.groupId,
    role: t.role,
    ten: t.clinicId,
    prf: t.patientRef,
    grp: t.attributes,
  };
  const token = await signConsultationToken(claims, active);
  const queries: CompiledQuery[] = [
    store.db
      .insertInto("tokens")
      .values({
        jti,
        clinic_id: t.clinicId,
        consultation_id: t.consultationId,
        terminal_id: t.terminalId,
        role: t.role,
        token_enc: await config.phi.encrypt(token, ctx.token(t.clinicId, jti)),
        issued_at: t.now,
        expires_at: exp * 1000,
        first_used_at: null,
        delivered_at: null,
        revoked_at: null,
      })
      .compile(),
    auditQuery(store, { clinicId: t.clinicId, consultationId: t.consultationId, at: t.now, actor: t.actor, action: "token.issue", terminalId: t.terminalId, detail: { jti, role: t.role, expiresAt: exp * 1000 } }),
  ];
  return { token, jti, expiresAt: exp * 1000, queries };
}

/** A fresh token for one participant (the first expired, was revoked, or the call is later). */
export async function reissueToken(deps: EdgeDeps, who: ClinicPrincipal, id: string, terminalId: string) {
  const { store } = deps;
  const row = await findOwned(deps, who.clinicId, id);
  if (row.status === "ended") throw new ApiError(410, "consultation_ended", "the consultation has ended");
  const p = await store.db
    .selectFrom("participants")
    .innerJoin("terminals", "terminals.id", "participants.terminal_id")
    .select(["participants.role", "terminals.revoked_at"])
    .where("participants.consultation_id", "=", id)
    .where("participants.clinic_id", "=", who.clinicId)
    .where("participants.terminal_id", "=", terminalId)
    .executeTakeFirst();
  if (!p || p.revoked_at !== null) throw badRequest("terminalId", "terminalId is not an active participant of this consultation");
  const now = deps.clock.now();
  const issued = await tokenQueries(deps, {
    clinicId: who.clinicId, consultationId: id, groupId: row.group_id, nodeId: row.node_id, patientRef: row.patient_ref,
    attributes: JSON.parse(row.attributes) as GroupAttributes, terminalId, role: p.role, now, actor: { type: "clinic", id: who.keyId },
  });
  await store.batch(issued.queries);
  return { terminalId, role: p.role, jti: issued.jti, token: issued.token, joinUrl: joinUrl(deps, issued.token), expiresAt: iso(issued.expiresAt) };
}

/** Revokes one token; its live session, if any, is closed by the node. */
export async function revokeToken(deps: EdgeDeps, who: ClinicPrincipal, id: string, jti: string) {
  const { store } = deps;
  const row = await findOwned(deps, who.clinicId, id);
  const tok = await store.db
    .selectFrom("tokens")
    .select(["jti", "terminal_id", "revoked_at"])
    .where("jti", "=", jti)
    .where("consultation_id", "=", id)
    .where("clinic_id", "=", who.clinicId)
    .executeTakeFirst();
  if (!tok) throw notFound("token");
  if (tok.revoked_at !== null) return { jti, revokedAt: iso(tok.revoked_at), nodeNotified: false };
  const now = deps.clock.now();
  await store.batch([
    store.db.updateTable("tokens").set({ revoked_at: now }).where("jti", "=", jti).where("clinic_id", "=", who.clinicId).where("revoked_at", "is", null).compile(),
    auditQuery(store, { clinicId: who.clinicId, consultationId: id, at: now, actor: { type: "clinic", id: who.keyId }, action: "token.revoke", terminalId: tok.terminal_id, detail: { jti, reason: "revoked" } }),
  ]);
  const told = row.status === "ended" ? { ok: false } : await deps.nodeApi.revoke(await nodeRef(deps, row.node_id, row.node_api_url), row.group_id, { jtis: [jti] });
  // A cascaded terminal's session is on its own node.
  if (row.status !== "ended") for (const leg of await legsOf(deps, id, who.clinicId)) await deps.nodeApi.revoke(await nodeRef(deps, leg.node_id, leg.node_api_url), row.group_id, { jtis: [jti] });
  return { jti, revokedAt: iso(now), nodeNotified: told.ok };
}
