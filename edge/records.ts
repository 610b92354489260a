// Reading consultation records: scoped lookups, the node as the registry knows it now, the
// decrypted details, join links. Patient data is encrypted under a context naming the clinic
// and the record, so a ciphertext moved to another row or tenant does not decrypt.
import type { ConsultationTable } from "./db/schema.ts";
import type { EdgeDeps } from "./context.ts";
import { notFound } from "./errors.ts";

export const cipherContext = {
  patient: (clinicId: string, id: string) => `${clinicId}/${id}/patient`,
  details: (clinicId: string, id: string) => `${clinicId}/${id}/details`,
  token: (clinicId: string, jti: string) => `${clinicId}/${jti}/token`,
};
const ctx = cipherContext;

export function joinUrl(deps: EdgeDeps, token: string): string {
  return `${deps.config.publicUrl}/join#token=${token}`;
}

export async function currentNode(deps: EdgeDeps, row: Pick<ConsultationTable, "node_id" | "node_url" | "cert_hashes">) {
  // Certificates renew; the registry has the node's latest hashes.
  const live = await deps.store.db.selectFrom("nodes").select(["url", "cert_hashes", "fallback_url"]).where("id", "=", row.node_id).executeTakeFirst();
  return {
    id: row.node_id,
    url: live?.url ?? row.node_url,
    certHashes: JSON.parse(live?.cert_hashes ?? row.cert_hashes) as string[],
    ...(live?.fallback_url ? { fallbackUrl: live.fallback_url } : {}),
  };
}

/** The node's control API as the registry knows it now (a restarted node may have moved). */
export async function nodeRef(deps: EdgeDeps, nodeId: string, recordedApiUrl: string) {
  const live = await deps.store.db.selectFrom("nodes").select("api_url").where("id", "=", nodeId).executeTakeFirst();
  return { id: nodeId, apiUrl: live?.api_url ?? recordedApiUrl };
}

export async function findOwned(deps: EdgeDeps, clinicId: string, id: string) {
  const row = await deps.store.db.selectFrom("consultations").selectAll().where("id", "=", id).where("clinic_id", "=", clinicId).executeTakeFirst();
  if (!row) throw notFound("consultation");
  return row;
}

/** The reason and schedule of a consultation, decrypted for its clinic or its participants. */
export async function readDetails(deps: EdgeDeps, row: Pick<ConsultationTable, "id" | "clinic_id" | "details_enc">) {
  if (!row.details_enc) return {};
  return JSON.parse(await deps.config.phi.decrypt(row.details_enc, ctx.details(row.clinic_id, row.id))) as { reason?: string; scheduledAt?: string };
}
