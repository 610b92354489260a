// Placing a consultation on two nodes when the terminals are best served apart
// (src/routing/cascade.ts), and the record of it: the consultation's node is the requester's
// (`consultations.node_id`); a terminal on the other node has a row in `consultation_legs`.
// Its token names its own node; its node's events count for it; ending, revoking and moving
// the consultation reach both nodes.
import type { CompiledQuery } from "kysely";
import { randomId } from "../src/bytes.ts";
import { planPlacement } from "../src/routing/cascade.ts";
import { signCascadeToken } from "../src/token/cascade.ts";
import type { EdgeDeps } from "./context.ts";
import type { ConsultationTable } from "./db/schema.ts";
import type { GroupRequest } from "./node-api.ts";
import { liveNodes, measurementsFor, placeGroup, type PlacedNode, type PlacementResult } from "./placement.ts";

export interface Leg {
  terminalId: string;
  node: PlacedNode;
}

export interface CascadePlacement extends PlacementResult {
  /** Terminals placed on another node than `node` (empty: one node). */
  legs: Leg[];
}

/**
 * One node (placeGroup), or — when the measurements say the two terminals are best served by
 * different nodes — the requester's node and the consultant's, the group reserved on both.
 * The leg node links up with the requester's before anything is recorded; if a node refuses
 * or the link fails, both are released and the group goes on one node.
 */
export async function placeConsultation(deps: EdgeDeps, req: GroupRequest, region: string | undefined): Promise<CascadePlacement> {
  const nodes = await liveNodes(deps);
  const ids = req.members.map((m) => m.terminalId);
  const measurements = await measurementsFor(deps, req.clinicId, ids);
  const plan = planPlacement(nodes, { now: deps.clock.now(), region, measurements, staleAfterMs: deps.config.staleNodeMs }, ids);
  if (plan?.kind === "cascade") {
    const pick = (id: string) => nodes.find((n) => n.id === plan.byTerminal[id])!;
    const [first, second] = [pick(ids[0]!), pick(ids[1]!)];
    const [a, b] = await Promise.all([first, second].map((n) => deps.nodeApi.reserveGroup({ id: n.id, apiUrl: n.apiUrl }, req)));
    const placed = (n: typeof first) => ({ id: n.id, url: n.url, apiUrl: n.apiUrl, certHashes: n.certHashes });
    const legs = [{ terminalId: ids[1]!, node: placed(second) }];
    // Linked before anything is recorded: a pair that cannot link falls back to one node.
    if (a!.ok && b!.ok && (await startCascade(deps, req.groupId, placed(first), legs))) {
      deps.log?.(`cascade placed: ${first.id} + ${second.id}`);
      return { node: placed(first), legs, refusals: [] };
    }
    // One node then: the requester's if it took the group, else the consultant's. (A node that
    // closed a group keeps its id as ended, so the group stays where it was reserved.)
    if (a!.ok) {
      if (b!.ok) await deps.nodeApi.closeGroup({ id: second.id, apiUrl: second.apiUrl }, req.groupId, "consultationEnded").catch(() => {});
      return { node: placed(first), legs: [], refusals: [] };
    }
    if (b!.ok) return { node: placed(second), legs: [], refusals: [{ nodeId: first.id, reason: a!.reason }] };
    const refused = [first.id, second.id];
    return { ...(await placeGroup(deps, req, region, { exclude: refused })), legs: [] };
  }
  return { ...(await placeGroup(deps, req, region)), legs: [] };
}

export function legQueries(deps: EdgeDeps, consultationId: string, clinicId: string, legs: Leg[]): CompiledQuery[] {
  return legs.map((l) => deps.store.db.insertInto("consultation_legs").values({
    consultation_id: consultationId, clinic_id: clinicId, terminal_id: l.terminalId,
    node_id: l.node.id, node_url: l.node.url, node_api_url: l.node.apiUrl, cert_hashes: JSON.stringify(l.node.certHashes),
  }).compile());
}

/** The leg node tells the consultation's node to link up (the leg node dials). */
export async function startCascade(deps: EdgeDeps, groupId: string, primary: PlacedNode, legs: Leg[]): Promise<boolean> {
  if (!legs.length || !deps.nodeApi.cascade) return legs.length === 0;
  const { active } = await deps.config.keys.get(deps.clock.now());
  let ok = true;
  for (const leg of legs) {
    const token = await signCascadeToken({
      issuer: deps.config.issuer, dialer: leg.node.id, listener: primary.id, groupId,
      ttlSeconds: deps.config.groupTtlSec, jti: randomId("csc", 12),
    }, active);
    const r = await deps.nodeApi.cascade({ id: leg.node.id, apiUrl: leg.node.apiUrl }, groupId, { peerNodeId: primary.id, peerUrl: primary.url, certHashes: primary.certHashes, token });
    if (!r.ok) {
      ok = false;
      deps.log?.(`cascade ${leg.node.id} → ${primary.id} failed`);
    }
  }
  return ok;
}

export async function legsOf(deps: EdgeDeps, consultationId: string, clinicId: string) {
  return deps.store.db.selectFrom("consultation_legs").selectAll().where("consultation_id", "=", consultationId).where("clinic_id", "=", clinicId).execute();
}

/** The node a terminal of the consultation joins (its leg's, else the consultation's), as the registry knows it now. */
export async function nodeOfTerminal(deps: EdgeDeps, cons: Pick<ConsultationTable, "id" | "clinic_id" | "node_id" | "node_url" | "node_api_url" | "cert_hashes">, terminalId: string) {
  const leg = await deps.store.db.selectFrom("consultation_legs").selectAll()
    .where("consultation_id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).where("terminal_id", "=", terminalId).executeTakeFirst();
  const id = leg?.node_id ?? cons.node_id;
  const live = await deps.store.db.selectFrom("nodes").select(["url", "api_url", "cert_hashes", "fallback_url"]).where("id", "=", id).executeTakeFirst();
  return {
    id,
    url: live?.url ?? leg?.node_url ?? cons.node_url,
    apiUrl: live?.api_url ?? leg?.node_api_url ?? cons.node_api_url,
    certHashes: JSON.parse(live?.cert_hashes ?? leg?.cert_hashes ?? cons.cert_hashes) as string[],
    ...(live?.fallback_url ? { fallbackUrl: live.fallback_url } : {}),
  };
}
