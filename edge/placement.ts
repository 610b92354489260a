// Choosing and reserving a media node for a new group: rank the live nodes with the shared
// policy (src/routing.ts), then ask each in turn until one takes the group.
import type { MediaNodeInfo, NodePlacement, PathMeasurement } from "../src/types.ts";
import { rankNodes } from "../src/routing.ts";
import type { EdgeDeps } from "./context.ts";
import type { GroupRequest } from "./node-api.ts";

export interface PlacedNode {
  id: string;
  url: string;
  apiUrl: string;
  certHashes: string[];
}

export interface PlacementResult {
  node?: PlacedNode;
  /** Node ids tried and why each refused (ids and reasons only: safe to log). */
  refusals: { nodeId: string; reason: string }[];
}

/** A node as terminals get it (join info, a move's answer): never its control API. */
export function placementOf(n: NodePlacement): NodePlacement {
  return { id: n.id, url: n.url, certHashes: n.certHashes, ...(n.fallbackUrl ? { fallbackUrl: n.fallbackUrl } : {}) };
}

export async function liveNodes(deps: EdgeDeps): Promise<MediaNodeInfo[]> {
  const now = deps.clock.now();
  const rows = await deps.store.db.selectFrom("nodes").selectAll().where("last_seen_at", ">=", now - deps.config.staleNodeMs).execute();
  return rows.map((n) => ({
    id: n.id,
    region: n.region,
    url: n.url,
    apiUrl: n.api_url,
    certHashes: JSON.parse(n.cert_hashes) as string[],
    ...(n.fallback_url ? { fallbackUrl: n.fallback_url } : {}),
    capacity: JSON.parse(n.capacity) as MediaNodeInfo["capacity"],
    load: JSON.parse(n.load) as MediaNodeInfo["load"],
    lastSeenAt: n.last_seen_at,
    draining: n.draining === 1,
  }));
}

export async function measurementsFor(deps: EdgeDeps, clinicId: string, terminalIds: string[]): Promise<Record<string, PathMeasurement[]>> {
  const rows = await deps.store.db
    .selectFrom("path_measurements")
    .selectAll()
    .where("clinic_id", "=", clinicId)
    .where("terminal_id", "in", terminalIds)
    .execute();
  const out: Record<string, PathMeasurement[]> = {};
  for (const r of rows) {
    (out[r.terminal_id] ??= []).push({ nodeId: r.node_id, rttMs: r.rtt_ms, jitterMs: r.jitter_ms, loss: r.loss, measuredAt: r.measured_at });
  }
  return out;
}

export async function placeGroup(deps: EdgeDeps, req: GroupRequest, region: string | undefined, opts: { exclude?: string[] } = {}): Promise<PlacementResult> {
  // A failover names the node it leaves: it may still look live until its heartbeat goes stale.
  const nodes = (await liveNodes(deps)).filter((n) => !opts.exclude?.includes(n.id));
  const measurements = await measurementsFor(deps, req.clinicId, req.members.map((m) => m.terminalId));
  const ranked = rankNodes(nodes, { now: deps.clock.now(), region, measurements, staleAfterMs: deps.config.staleNodeMs });
  const refusals: PlacementResult["refusals"] = [];
  for (const { node } of ranked) {
    const outcome = await deps.nodeApi.reserveGroup({ id: node.id, apiUrl: node.apiUrl }, req);
    if (outcome.ok) return { node: { id: node.id, url: node.url, apiUrl: node.apiUrl, certHashes: node.certHashes }, refusals };
    refusals.push({ nodeId: node.id, reason: outcome.reason });
    // A node that answered too late may still have reserved the group: release it, best effort,
    // without holding up the placement.
    if (outcome.reason === "timeout") void deps.nodeApi.closeGroup({ id: node.id, apiUrl: node.apiUrl }, req.groupId, "consultationEnded").catch(() => {});
  }
  return { refusals };
}
