// The consultation record: creation (placement, tokens, one atomic write), the owner's view,
// and ending it. Every query names the clinic; a consultation of another clinic is "not found".
import type { CompiledQuery } from "kysely";
import { randomId } from "../src/bytes.ts";
import { patientRef } from "../src/patient.ts";
import { DEFAULT_GROUP_ATTRIBUTES, type GroupAttributes, type Role } from "../src/types.ts";
import { auditQuery, listAudit } from "./audit.ts";
import type { ClinicPrincipal, EdgeDeps } from "./context.ts";
import type { ConsultationTable } from "./db/schema.ts";
import { isUniqueViolation } from "./db/store.ts";
import { ApiError, badRequest, conflict, unavailable } from "./errors.ts";
import { legQueries, legsOf, nodeOfTerminal, placeConsultation } from "./cascade.ts";
import { cipherContext as ctx, currentNode, findOwned, joinUrl, nodeRef, readDetails } from "./records.ts";
import { iso } from "./secrets.ts";
import { tokenQueries } from "./tokens.ts";
import { obj, optional, str } from "./validate.ts";

const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

export const createConsultationBody = obj({
  patient: obj({
    id: str({ max: 128 }),
    name: optional(str({ max: 256 })),
    birthDate: optional(str({ max: 10, pattern: ISO_DATE, patternHint: "must be a date YYYY-MM-DD" })),
    sex: optional(str({ max: 32 })),
    summary: optional(str({ max: 4000 })),
  }),
  requester: obj({ terminalId: str({ max: 64 }) }),
  consultant: obj({ terminalId: str({ max: 64 }) }),
  reason: optional(str({ max: 2000 })),
  scheduledAt: optional(str({ max: 40, pattern: ISO_TIME, patternHint: "must be an ISO 8601 date-time with zone" })),
  region: optional(str({ max: 64, pattern: /^[A-Za-z0-9_-]+$/, patternHint: "must be letters, digits, '-' or '_'" })),
});
export type CreateConsultation = ReturnType<typeof createConsultationBody>;

export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** Keyed, so the stored fingerprint of a request body (which holds PHI) cannot be guessed. */
async function requestHash(deps: EdgeDeps, clinicId: string, body: CreateConsultation): Promise<string> {
  return patientRef(deps.config.patientHashKey, clinicId, `request\u0000${canonical(body)}`);
}

/** The 201 shape of a create, also returned for an idempotent retry. */
async function createdView(deps: EdgeDeps, row: ConsultationTable) {
  const tokens = await deps.store.db
    .selectFrom("tokens")
    .select(["jti", "terminal_id", "role", "token_enc", "expires_at"])
    .where("consultation_id", "=", row.id)
    .where("clinic_id", "=", row.clinic_id)
    .orderBy("seq")
    .execute();
  return {
    id: row.id,
    status: row.status,
    createdAt: iso(row.created_at),
    group: { id: row.group_id, node: await currentNode(deps, row) },
    tokens: await Promise.all(
      tokens.map(async (t) => {
        const token = await deps.config.phi.decrypt(t.token_enc, ctx.token(row.clinic_id, t.jti));
        const { id, url, certHashes } = await nodeOfTerminal(deps, row, t.terminal_id);
        return { terminalId: t.terminal_id, role: t.role, token, joinUrl: joinUrl(deps, token), expiresAt: iso(t.expires_at), node: { id, url, certHashes } };
      }),
    ),
  };
}

async function replay(deps: EdgeDeps, clinicId: string, key: string, hash: string) {
  const row = await deps.store.db
    .selectFrom("consultations")
    .selectAll()
    .where("clinic_id", "=", clinicId)
    .where("idempotency_key", "=", key)
    .executeTakeFirst();
  if (!row) return undefined;
  if (row.request_hash !== hash) throw conflict("idempotency_conflict", "this Idempotency-Key was used with another request body");
  return createdView(deps, row);
}

export async function createConsultation(deps: EdgeDeps, who: ClinicPrincipal, body: CreateConsultation, idempotencyKey: string | undefined) {
  const { store, config } = deps;
  const clinicId = who.clinicId;
  const hash = idempotencyKey ? await requestHash(deps, clinicId, body) : null;
  if (idempotencyKey) {
    const again = await replay(deps, clinicId, idempotencyKey, hash!);
    if (again) return { status: 201 as const, body: again };
  }
  if (body.requester.terminalId === body.consultant.terminalId) {
    throw badRequest("consultant.terminalId", "consultant.terminalId must differ from requester.terminalId");
  }
  const terminals = await store.db
    .selectFrom("terminals")
    .select(["id"])
    .where("clinic_id", "=", clinicId)
    .where("revoked_at", "is", null)
    .where("id", "in", [body.requester.terminalId, body.consultant.terminalId])
    .execute();
  for (const role of ["requester", "consultant"] as const) {
    if (!terminals.some((t) => t.id === body[role].terminalId)) {
      throw badRequest(`${role}.terminalId`, `${role}.terminalId is not an active terminal of this clinic`);
    }
  }

  const now = deps.clock.now();
  const id = randomId("cns", 12);
  const groupId = randomId("grp", 12);
  const attributes: GroupAttributes = { ...DEFAULT_GROUP_ATTRIBUTES };
  const members: { terminalId: string; role: Role }[] = [
    { terminalId: body.requester.terminalId, role: "requester" },
    { terminalId: body.consultant.terminalId, role: "consultant" },
  ];
  const placement = await placeConsultation(
    deps,
    { groupId, consultationId: id, clinicId, attributes, members, expiresAt: now + config.groupTtlSec * 1000 },
    body.region,
  );
  const node = placement.node;
  if (!node) {
    deps.log?.(`placement failed: ${placement.refusals.length} node(s) tried${placement.refusals.map((r) => ` ${r.nodeId}=${r.reason}`).join("")}`);
    throw unavailable("no_media_node", "no media node can host the consultation now; retry later");
  }

  const issued: { terminalId: string; role: Role; token: string; joinUrl: string; expiresAt: string | null; node: { id: string; url: string; certHashes: string[] } }[] = [];
  try {
    const ref = await patientRef(config.patientHashKey, clinicId, body.patient.id);
    const actor = { type: "clinic" as const, id: who.keyId };
    const queries: CompiledQuery[] = [
      store.db
        .insertInto("consultations")
        .values({
          id,
          clinic_id: clinicId,
          status: "pending",
          patient_ref: ref,
          patient_enc: await config.phi.encrypt(JSON.stringify(body.patient), ctx.patient(clinicId, id)),
          details_enc:
            body.reason || body.scheduledAt
              ? await config.phi.encrypt(JSON.stringify({ reason: body.reason, scheduledAt: body.scheduledAt }), ctx.details(clinicId, id))
              : null,
          region: body.region ?? null,
          node_id: node.id,
          node_url: node.url,
          node_api_url: node.apiUrl,
          cert_hashes: JSON.stringify(node.certHashes),
          group_id: groupId,
          attributes: JSON.stringify(attributes),
          idempotency_key: idempotencyKey ?? null,
          request_hash: hash,
          created_at: now,
          connected_at: null,
          ended_at: null,
          end_reason: null,
        })
        .compile(),
      auditQuery(store, { clinicId, consultationId: id, at: now, actor, action: "create", detail: { nodeId: node.id, groupId } }),
    ];
    queries.push(...legQueries(deps, id, clinicId, placement.legs));
    for (const m of members) {
      // A cascaded terminal's token names its own node.
      const its = placement.legs.find((l) => l.terminalId === m.terminalId)?.node ?? node;
      const t = await tokenQueries(deps, { clinicId, consultationId: id, groupId, nodeId: its.id, patientRef: ref, attributes, terminalId: m.terminalId, role: m.role, now, actor });
      queries.push(
        store.db.insertInto("participants").values({ consultation_id: id, clinic_id: clinicId, terminal_id: m.terminalId, role: m.role, joined_at: null, left_at: null }).compile(),
        ...t.queries,
      );
      issued.push({ terminalId: m.terminalId, role: m.role, token: t.token, joinUrl: joinUrl(deps, t.token), expiresAt: iso(t.expiresAt), node: { id: its.id, url: its.url, certHashes: its.certHashes } });
    }
    await store.batch(queries);
  } catch (err) {
    // A write reported as failed may still have landed (a lost answer): then it stands.
    const landed = await store.db.selectFrom("consultations").selectAll().where("id", "=", id).where("clinic_id", "=", clinicId).executeTakeFirst().catch(() => undefined);
    if (landed) return { status: 201 as const, body: await createdView(deps, landed) };
    // Nothing was recorded: release the group so the node does not keep it. (The node takes
    // only close reasons a terminal may be told; no terminal has joined this group.)
    await deps.nodeApi.closeGroup({ id: node.id, apiUrl: node.apiUrl }, groupId, "consultationEnded");
    for (const l of placement.legs) await deps.nodeApi.closeGroup({ id: l.node.id, apiUrl: l.node.apiUrl }, groupId, "consultationEnded");
    if (idempotencyKey && isUniqueViolation(err)) {
      const again = await replay(deps, clinicId, idempotencyKey, hash!);
      if (again) return { status: 201 as const, body: again };
    }
    if (err instanceof ApiError) throw err;
    deps.log?.(`consultation write failed: ${(err as Error)?.name ?? "error"}`);
    throw new ApiError(500, "store_failed", "the consultation could not be recorded; nothing was created, retry with the same Idempotency-Key");
  }
  // The same shape createdView() reads back for a retry, built from what was just written.
  return {
    status: 201 as const,
    body: { id, status: "pending" as const, createdAt: iso(now), group: { id: groupId, node: { id: node.id, url: node.url, certHashes: node.certHashes } }, tokens: issued },
  };
}

export async function viewConsultation(deps: EdgeDeps, who: ClinicPrincipal, id: string) {
  const { store, config } = deps;
  const row = await findOwned(deps, who.clinicId, id);
  const participants = await store.db
    .selectFrom("participants")
    .innerJoin("terminals", "terminals.id", "participants.terminal_id")
    .select(["participants.terminal_id", "participants.role", "participants.joined_at", "participants.left_at", "terminals.label", "terminals.kind"])
    .where("participants.consultation_id", "=", id)
    .where("participants.clinic_id", "=", who.clinicId)
    .orderBy("participants.role", "desc")
    .execute();
  const tokens = await store.db
    .selectFrom("tokens")
    .select(["jti", "terminal_id", "role", "issued_at", "expires_at", "first_used_at", "delivered_at", "revoked_at"])
    .where("consultation_id", "=", id)
    .where("clinic_id", "=", who.clinicId)
    .orderBy("seq")
    .execute();
  const patient = JSON.parse(await config.phi.decrypt(row.patient_enc, ctx.patient(who.clinicId, id))) as Record<string, string>;
  const { reason, scheduledAt } = await readDetails(deps, row);
  const now = deps.clock.now();
  await store.batch([auditQuery(store, { clinicId: who.clinicId, consultationId: id, at: now, actor: { type: "clinic", id: who.keyId }, action: "read" })]);
  return {
    id: row.id,
    status: row.status,
    createdAt: iso(row.created_at),
    connectedAt: iso(row.connected_at),
    endedAt: iso(row.ended_at),
    ...(row.end_reason ? { endReason: row.end_reason } : {}),
    patient,
    ...(reason !== undefined ? { reason } : {}),
    ...(scheduledAt !== undefined ? { scheduledAt } : {}),
    ...(row.region ? { region: row.region } : {}),
    group: { id: row.group_id, node: await currentNode(deps, row), attributes: JSON.parse(row.attributes) as GroupAttributes },
    participants: participants.map((p) => ({
      terminalId: p.terminal_id,
      role: p.role,
      label: p.label,
      kind: p.kind,
      joinedAt: iso(p.joined_at),
      leftAt: iso(p.left_at),
    })),
    tokens: tokens.map((t) => ({
      jti: t.jti,
      terminalId: t.terminal_id,
      role: t.role,
      issuedAt: iso(t.issued_at),
      expiresAt: iso(t.expires_at),
      firstUsedAt: iso(t.first_used_at),
      deliveredAt: iso(t.delivered_at),
      revokedAt: iso(t.revoked_at),
    })),
    events: await listAudit(store, who.clinicId, id, { excludeReads: true }),
  };
}

/** The clinic's consultations, newest first, without PHI (no decryption for a listing). */
export async function listConsultations(
  deps: EdgeDeps,
  who: ClinicPrincipal,
  q: { status?: ConsultationTable["status"]; limit: number; before?: string },
) {
  let query = deps.store.db
    .selectFrom("consultations")
    .select(["id", "status", "created_at", "connected_at", "ended_at", "node_id", "group_id"])
    .where("clinic_id", "=", who.clinicId);
  if (q.status) query = query.where("status", "=", q.status);
  if (q.before) {
    const anchor = await deps.store.db.selectFrom("consultations").select(["created_at", "id"]).where("id", "=", q.before).where("clinic_id", "=", who.clinicId).executeTakeFirst();
    if (!anchor) throw badRequest("before", "before must be a consultation id from an earlier page");
    query = query.where((eb) => eb.or([eb("created_at", "<", anchor.created_at), eb.and([eb("created_at", "=", anchor.created_at), eb("id", "<", anchor.id)])]));
  }
  const rows = await query.orderBy("created_at", "desc").orderBy("id", "desc").limit(q.limit).execute();
  return {
    consultations: rows.map((r) => ({
      id: r.id,
      status: r.status,
      createdAt: iso(r.created_at),
      connectedAt: iso(r.connected_at),
      endedAt: iso(r.ended_at),
      group: { id: r.group_id, nodeId: r.node_id },
    })),
    ...(rows.length === q.limit ? { next: rows[rows.length - 1]!.id } : {}),
  };
}

export async function endConsultation(deps: EdgeDeps, who: ClinicPrincipal, id: string) {
  const { store } = deps;
  const row = await findOwned(deps, who.clinicId, id);
  if (row.status === "ended") return { id, status: "ended" as const, endedAt: iso(row.ended_at), alreadyEnded: true };
  const now = deps.clock.now();
  const live = await store.db
    .selectFrom("tokens")
    .select(["jti", "terminal_id"])
    .where("consultation_id", "=", id)
    .where("clinic_id", "=", who.clinicId)
    .where("revoked_at", "is", null)
    .execute();
  const actor = { type: "clinic" as const, id: who.keyId };
  // The record first: once ended, no token of it is accepted at /v1/join or delivered again,
  // even if the node cannot be told right now.
  await store.batch([
    store.db
      .updateTable("consultations")
      .set({ status: "ended", ended_at: now, end_reason: "consultationEnded" })
      .where("id", "=", id)
      .where("clinic_id", "=", who.clinicId)
      .where("status", "!=", "ended")
      .compile(),
    store.db.updateTable("tokens").set({ revoked_at: now }).where("consultation_id", "=", id).where("clinic_id", "=", who.clinicId).where("revoked_at", "is", null).compile(),
    auditQuery(store, { clinicId: who.clinicId, consultationId: id, at: now, actor, action: "end" }),
    ...live.map((t) => auditQuery(store, { clinicId: who.clinicId, consultationId: id, at: now, actor, action: "token.revoke", terminalId: t.terminal_id, detail: { jti: t.jti, reason: "consultationEnded" } })),
  ]);
  const closed = await deps.nodeApi.closeGroup(await nodeRef(deps, row.node_id, row.node_api_url), row.group_id, "consultationEnded");
  // A cascade's other node closes its part too.
  for (const leg of await legsOf(deps, id, who.clinicId)) await deps.nodeApi.closeGroup(await nodeRef(deps, leg.node_id, leg.node_api_url), row.group_id, "consultationEnded");
  return {
    id,
    status: "ended" as const,
    endedAt: iso(now),
    nodeNotified: closed.ok,
    ...(closed.closedSessions !== undefined ? { closedSessions: closed.closedSessions } : {}),
  };
}

