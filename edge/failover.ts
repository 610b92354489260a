// Moving a live consultation to another media node: the node died (terminals heard nothing),
// it drains for maintenance, or a terminal's path to it degraded. A terminal asks with its
// current consultation token; the edge places the same group (same group id) on another live
// node, reserves it there, moves the record with a compare-and-set on the node id, and returns
// a fresh token for that node. Both terminals asking at once get the same new node: the second
// finds the record already moved (or loses the compare-and-set) and is given a token for the
// node the first chose. One consultation throughout; each move is an audit event.
import { createLocalJWKSet, decodeJwt, errors, jwtVerify } from "jose";
import { CONSULTATION_TOKEN_TYPE, ALGORITHMS, nodeAudience, parseConsultationClaims, type ConsultationClaims } from "../src/token/claims.ts";
import type { GroupAttributes, Role } from "../src/types.ts";
import { auditQuery } from "./audit.ts";
import type { EdgeDeps } from "./context.ts";
import { ApiError, unavailable } from "./errors.ts";
import { placeGroup, placementOf } from "./placement.ts";
import { nodeRef } from "./records.ts";
import { legsOf, nodeOfTerminal } from "./cascade.ts";
import { iso } from "./secrets.ts";
import { tokenQueries } from "./tokens.ts";

export type ReplaceReason = "nodeLost" | "nodeDraining" | "pathDegraded";
export const REPLACE_REASONS: readonly ReplaceReason[] = ["nodeLost", "nodeDraining", "pathDegraded"];

export interface ReplaceRequest {
  consultationId: string;
  /** The node the terminal is leaving (its token's node). */
  failedNodeId: string;
  reason: ReplaceReason;
  /** Fresh path measurements, kept like POST /v1/terminals/:id/measurements. */
  measurements?: { nodeId: string; rttMs: number; jitterMs: number; loss: number }[];
}

const invalid = () => new ApiError(401, "token_invalid", "the consultation token is not valid");

/**
 * The token must be one the edge issued for this consultation and terminal, not revoked. It may
 * have expired (a call outlives the token's short life) but not by more than the group's life,
 * and it may name an earlier node of the consultation.
 */
async function verifyCaller(deps: EdgeDeps, token: string, consultationId: string): Promise<ConsultationClaims> {
  const now = deps.clock.now();
  let claims: ConsultationClaims;
  try {
    const aud = decodeJwt(token).aud;
    if (typeof aud !== "string" || !aud.startsWith(nodeAudience(""))) throw invalid();
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: await deps.config.keys.publicJwks(now) }), {
      algorithms: [...ALGORITHMS], typ: CONSULTATION_TOKEN_TYPE, issuer: deps.config.issuer, audience: aud,
      clockTolerance: deps.config.groupTtlSec, currentDate: new Date(now),
    });
    claims = parseConsultationClaims(payload as Record<string, unknown>);
  } catch (err) {
    if (err instanceof ApiError || err instanceof errors.JOSEError || (err as Error)?.name === "ClaimsError" || (err as Error)?.name === "TypeError") throw invalid();
    throw err;
  }
  if (claims.cid !== consultationId) throw invalid();
  return claims;
}

export async function replacePlacement(deps: EdgeDeps, token: string, req: ReplaceRequest) {
  const { store, config } = deps;
  const claims = await verifyCaller(deps, token, req.consultationId);
  const cons = await store.db.selectFrom("consultations").selectAll().where("id", "=", claims.cid).where("clinic_id", "=", claims.ten).executeTakeFirst();
  if (!cons || cons.group_id !== claims.gid) throw invalid();
  const tok = await store.db
    .selectFrom("tokens")
    .innerJoin("terminals", "terminals.id", "tokens.terminal_id")
    .select(["tokens.terminal_id", "tokens.role", "tokens.revoked_at", "terminals.revoked_at as terminalRevokedAt"])
    .where("tokens.jti", "=", claims.jti)
    .where("tokens.consultation_id", "=", cons.id)
    .where("tokens.clinic_id", "=", cons.clinic_id)
    .executeTakeFirst();
  if (!tok || tok.terminal_id !== claims.sub) throw invalid();
  if (cons.status === "ended") throw new ApiError(410, "consultation_ended", "the consultation has ended");
  if (tok.revoked_at !== null || tok.terminalRevokedAt !== null) throw new ApiError(403, "revoked", "access to this consultation was revoked");

  const now = deps.clock.now();
  const terminalId = tok.terminal_id;
  const actor = { type: "terminal" as const, id: terminalId };
  if (req.measurements?.length) {
    await store.batch(req.measurements.map((m) =>
      store.db.insertInto("path_measurements")
        .values({ clinic_id: cons.clinic_id, terminal_id: terminalId, node_id: m.nodeId, rtt_ms: m.rttMs, jitter_ms: m.jitterMs, loss: m.loss, measured_at: now })
        .onConflict((oc) => oc.columns(["terminal_id", "node_id"]).doUpdateSet({ clinic_id: cons.clinic_id, rtt_ms: m.rttMs, jitter_ms: m.jitterMs, loss: m.loss, measured_at: now }))
        .compile()));
  }

  let moved = false;
  let nodeId = cons.node_id;
  const legs = await legsOf(deps, cons.id, cons.clinic_id);
  if (cons.node_id !== req.failedNodeId && legs.some((l) => l.node_id === req.failedNodeId)) {
    // The cascade's other node failed: its terminal joins the consultation's node directly.
    const del = await store.db.deleteFrom("consultation_legs").where("consultation_id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).where("node_id", "=", req.failedNodeId).executeTakeFirst();
    if (Number(del.numDeletedRows) > 0) {
      moved = true;
      await store.batch([auditQuery(store, {
        clinicId: cons.clinic_id, consultationId: cons.id, at: now, actor, action: "failover", terminalId,
        detail: { fromNodeId: req.failedNodeId, toNodeId: cons.node_id, reason: req.reason, groupId: cons.group_id },
      })]);
      if (req.reason !== "nodeLost") {
        const leg = legs.find((l) => l.node_id === req.failedNodeId)!;
        void nodeRef(deps, leg.node_id, leg.node_api_url).then((ref) => deps.nodeApi.closeGroup(ref, cons.group_id, "nodeDraining")).catch(() => {});
      }
    }
  } else if (cons.node_id === req.failedNodeId) {
    const members = await store.db.selectFrom("participants").select(["terminal_id", "role"]).where("consultation_id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).execute();
    const attributes = JSON.parse(cons.attributes) as GroupAttributes;
    const groupReq = {
      groupId: cons.group_id, consultationId: cons.id, clinicId: cons.clinic_id, attributes,
      members: members.map((m) => ({ terminalId: m.terminal_id, role: m.role as Role })),
      expiresAt: now + config.groupTtlSec * 1000,
    };
    const placed = await placeGroup(deps, groupReq, cons.region ?? undefined, { exclude: [cons.node_id] });
    if (!placed.node) {
      deps.log?.(`failover of a consultation found no node: ${placed.refusals.length} tried${placed.refusals.map((r) => ` ${r.nodeId}=${r.reason}`).join("")}`);
      throw unavailable("no_media_node", "no other media node can host the consultation now; retry shortly");
    }
    const to = placed.node;
    // Compare-and-set: only the first mover changes the record.
    const res = await store.db
      .updateTable("consultations")
      .set({ node_id: to.id, node_url: to.url, node_api_url: to.apiUrl, cert_hashes: JSON.stringify(to.certHashes) })
      .where("id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).where("node_id", "=", req.failedNodeId)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) {
      moved = true;
      nodeId = to.id;
      await store.batch([auditQuery(store, {
        clinicId: cons.clinic_id, consultationId: cons.id, at: now, actor, action: "failover", terminalId,
        detail: { fromNodeId: req.failedNodeId, toNodeId: to.id, reason: req.reason, groupId: cons.group_id },
      })]);
      // A node still alive (draining, or a degraded path) lets the other member go too: its
      // session ends with nodeDraining, which tells its terminal to ask here and follow.
      if (req.reason !== "nodeLost") {
        void nodeRef(deps, req.failedNodeId, cons.node_api_url).then((ref) => deps.nodeApi.closeGroup(ref, cons.group_id, "nodeDraining")).catch(() => {});
      }
      // A cascade ends here: everyone on the one new node; terminals of the other node follow.
      if (legs.length) {
        await store.db.deleteFrom("consultation_legs").where("consultation_id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).execute();
        for (const leg of legs) {
          if (leg.node_id !== to.id) void nodeRef(deps, leg.node_id, leg.node_api_url).then((ref) => deps.nodeApi.closeGroup(ref, cons.group_id, "nodeDraining")).catch(() => {});
        }
      }
    } else {
      const now2 = await store.db.selectFrom("consultations").select("node_id").where("id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).executeTakeFirst();
      nodeId = now2?.node_id ?? cons.node_id;
      // Lost the race to another terminal's request: release what this one reserved elsewhere.
      if (nodeId !== to.id) void deps.nodeApi.closeGroup({ id: to.id, apiUrl: to.apiUrl }, cons.group_id, "nodeDraining").catch(() => {});
    }
  }
  const row = await store.db.selectFrom("consultations").selectAll().where("id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).executeTakeFirstOrThrow();
  const its = await nodeOfTerminal(deps, row, terminalId);
  const issued = await tokenQueries(deps, {
    clinicId: cons.clinic_id, consultationId: cons.id, groupId: cons.group_id, nodeId: its.id, patientRef: cons.patient_ref,
    attributes: JSON.parse(cons.attributes) as GroupAttributes, terminalId, role: tok.role, now,
    actor,
  });
  await store.batch(issued.queries);
  return {
    consultationId: cons.id,
    groupId: cons.group_id,
    moved,
    node: placementOf(its),
    token: issued.token,
    expiresAt: iso(issued.expiresAt),
  };
}
