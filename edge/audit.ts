// The append-only audit trail: who did what to which consultation. Entries carry ids and
// reasons only, never PHI or token material. Entries are compiled queries so they go into the
// same atomic batch as the change they describe.
import type { CompiledQuery } from "kysely";
import type { Store } from "./db/store.ts";
import type { AuditTable } from "./db/schema.ts";

export type AuditAction =
  | "create"
  | "read"
  | "end"
  | "join"
  | "leave"
  | "connected"
  | "group-closed"
  | "token.issue"
  | "token.deliver"
  | "token.revoke"
  | "failover";

export interface AuditEntry {
  clinicId: string;
  consultationId: string;
  at: number;
  actor: { type: AuditTable["actor_type"]; id: string };
  action: AuditAction;
  terminalId?: string;
  detail?: Record<string, string | number | boolean | string[]>;
}

export function auditQuery(store: Store, e: AuditEntry): CompiledQuery {
  return store.db
    .insertInto("audit_log")
    .values({
      clinic_id: e.clinicId,
      consultation_id: e.consultationId,
      at: e.at,
      actor_type: e.actor.type,
      actor_id: e.actor.id,
      action: e.action,
      terminal_id: e.terminalId ?? null,
      detail: e.detail ? JSON.stringify(e.detail) : null,
    })
    .compile();
}

export async function listAudit(store: Store, clinicId: string, consultationId: string, opts: { excludeReads?: boolean } = {}) {
  let q = store.db
    .selectFrom("audit_log")
    .selectAll()
    .where("clinic_id", "=", clinicId)
    .where("consultation_id", "=", consultationId);
  if (opts.excludeReads) q = q.where("action", "not in", ["read", "token.deliver"]);
  const rows = await q.orderBy("id").limit(1000).execute();
  return rows.map((r) => ({
    id: r.id,
    at: new Date(r.at).toISOString(),
    action: r.action,
    actor: { type: r.actor_type, id: r.actor_id },
    ...(r.terminal_id ? { terminalId: r.terminal_id } : {}),
    ...(r.detail ? { detail: JSON.parse(r.detail) as unknown } : {}),
  }));
}
