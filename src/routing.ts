// Placement policy: which media node should host a consultation's group.
//
// score = path cost + load cost, lower is better.
//  - path cost: for each terminal with a measurement to the node, rtt + 2·jitter + 1000·loss
//    (ms; 1% loss weighs like 10 ms). The worst terminal counts fully and the mean half, so
//    one badly served terminal is not hidden by a well served one. Without measurements,
//    0 when the node is in the requested region and 80 ms otherwise.
//  - load cost: 100 · utilisation² over the node's tightest resource (sessions, groups,
//    outbound bitrate, cpu), plus event-loop lag beyond 20 ms. Quadratic: lightly loaded
//    nodes are near-equal, busy ones are avoided early.
// Not eligible: draining, heartbeat older than `staleAfterMs`, or utilisation ≥ 0.9.
import type { MediaNodeInfo, PathMeasurement } from "./types.ts";

export interface PlacementContext {
  now: number;
  region?: string;
  /** Measurements per terminal: terminal id → measurements to nodes. */
  measurements?: Record<string, PathMeasurement[]>;
  staleAfterMs?: number;
  /** Measurements older than this are ignored. */
  measurementMaxAgeMs?: number;
}

export interface NodeScore {
  node: MediaNodeInfo;
  score: number;
  pathCost: number;
  loadCost: number;
  utilisation: number;
}

export const OVERLOAD_UTILISATION = 0.9;
const OFF_REGION_COST = 80;

export function utilisation(node: MediaNodeInfo): number {
  const { capacity: c, load: l } = node;
  return Math.max(
    c.maxSessions > 0 ? l.sessions / c.maxSessions : 1,
    c.maxGroups > 0 ? l.groups / c.maxGroups : 1,
    c.maxKbpsOut > 0 ? l.kbpsOut / c.maxKbpsOut : 0,
    l.cpu,
  );
}

export function pathCostOf(m: Pick<PathMeasurement, "rttMs" | "jitterMs" | "loss">): number {
  return m.rttMs + 2 * m.jitterMs + 1000 * m.loss;
}

export function isEligible(node: MediaNodeInfo, ctx: PlacementContext): boolean {
  if (node.draining) return false;
  if (ctx.now - node.lastSeenAt > (ctx.staleAfterMs ?? 15_000)) return false;
  return utilisation(node) < OVERLOAD_UTILISATION;
}

export function scoreNode(node: MediaNodeInfo, ctx: PlacementContext): NodeScore {
  const maxAge = ctx.measurementMaxAgeMs ?? 10 * 60_000;
  const costs: number[] = [];
  for (const list of Object.values(ctx.measurements ?? {})) {
    const m = list
      .filter((x) => x.nodeId === node.id && ctx.now - x.measuredAt <= maxAge)
      .sort((a, b) => b.measuredAt - a.measuredAt)[0];
    if (m) costs.push(pathCostOf(m));
  }
  let pathCost: number;
  if (costs.length > 0) {
    const worst = Math.max(...costs);
    const mean = costs.reduce((a, b) => a + b, 0) / costs.length;
    pathCost = worst + 0.5 * mean;
  } else {
    pathCost = !ctx.region || node.region === ctx.region ? 0 : OFF_REGION_COST;
  }
  const u = utilisation(node);
  const loadCost = 100 * u * u + Math.max(0, node.load.loopLagMs - 20);
  return { node, score: pathCost + loadCost, pathCost, loadCost, utilisation: u };
}

/** Eligible nodes, best first. Ties go to the node with fewer groups, then by id. */
export function rankNodes(nodes: MediaNodeInfo[], ctx: PlacementContext): NodeScore[] {
  return nodes
    .filter((n) => isEligible(n, ctx))
    .map((n) => scoreNode(n, ctx))
    .sort((a, b) => a.score - b.score || a.node.load.groups - b.node.load.groups || a.node.id.localeCompare(b.node.id));
}
