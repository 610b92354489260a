// Whether a consultation should span two nodes (a cascade) rather than sit on one.
//
// Both are compared on the end-to-end media path between the two terminals, in the path-cost
// unit of src/routing.ts (rtt + 2·jitter + 1000·loss, ms):
//  - one node n:   cost(t1, n) + cost(t2, n) + load cost of n;
//  - a cascade:    cost(t1, n1) + link(n1, n2) + cost(t2, n2) + the heavier load cost,
//    where each terminal takes the node best for it alone. `link` is the node pair's measured
//    path cost when known (`linkCost`), else estimated from the terminals' own RTTs by the
//    triangle inequality (rtt(t, n2) − rtt(t, n1) bounds the n1–n2 RTT from below), as RTT only:
//    the link runs between data centres, without the loss and jitter of a terminal's last mile.
// So a cascade wins when the terminals' long public paths are lossy or jittery and each has a
// clean short path to a node of its own. It is chosen only when it beats the best single node
// by `minGainMs` (default 30): a second node costs a link and a second point of failure.
import type { MediaNodeInfo, PathMeasurement } from "../types.ts";
import { isEligible, pathCostOf, rankNodes, scoreNode, type PlacementContext } from "../routing.ts";

export interface CascadeOptions {
  /** Measured path cost between two nodes, ms, when known. */
  linkCost?: (a: string, b: string) => number | undefined;
  /** Least link cost assumed, ms (default 5). */
  minLinkCostMs?: number;
  /** Least improvement over the best single node for a cascade, ms (default 30). */
  minGainMs?: number;
}

export type PlacementPlan =
  | { kind: "single"; nodeId: string; cost: number }
  | { kind: "cascade"; cost: number; singleCost: number; byTerminal: Record<string, string> };

function latest(list: PathMeasurement[] | undefined, nodeId: string, ctx: PlacementContext): PathMeasurement | undefined {
  const maxAge = ctx.measurementMaxAgeMs ?? 10 * 60_000;
  return list?.filter((m) => m.nodeId === nodeId && ctx.now - m.measuredAt <= maxAge).sort((a, b) => b.measuredAt - a.measuredAt)[0];
}

/** One node, or a node per terminal; undefined when no node is eligible. Two terminals only. */
export function planPlacement(nodes: MediaNodeInfo[], ctx: PlacementContext, terminalIds: string[], opts: CascadeOptions = {}): PlacementPlan | undefined {
  const ranked = rankNodes(nodes, ctx);
  if (!ranked.length) return undefined;
  const fallback: PlacementPlan = { kind: "single", nodeId: ranked[0]!.node.id, cost: ranked[0]!.score };
  if (terminalIds.length !== 2) return fallback;
  const [t1, t2] = terminalIds as [string, string];
  const load = (n: MediaNodeInfo) => scoreNode(n, { ...ctx, measurements: {} }).loadCost;
  const m = (t: string, n: MediaNodeInfo) => latest(ctx.measurements?.[t], n.id, ctx);
  // A cascade, and this comparison, are planned from measurements only.
  const measured = ranked.map((r) => r.node).filter((n) => m(t1, n) && m(t2, n));
  let single: { node: MediaNodeInfo; cost: number } | undefined;
  for (const n of measured) {
    const cost = pathCostOf(m(t1, n)!) + pathCostOf(m(t2, n)!) + load(n);
    if (!single || cost < single.cost) single = { node: n, cost };
  }
  if (!single) return fallback;
  const nearest = (t: string) => {
    let best: { node: MediaNodeInfo; cost: number } | undefined;
    for (const n of measured) {
      const cost = pathCostOf(m(t, n)!) + load(n);
      if (!best || cost < best.cost) best = { node: n, cost };
    }
    return best!;
  };
  const n1 = nearest(t1).node;
  const n2 = nearest(t2).node;
  const singlePlan: PlacementPlan = { kind: "single", nodeId: single.node.id, cost: single.cost };
  if (n1.id === n2.id) return singlePlan;
  const estimate = Math.max(m(t1, n2)!.rttMs - m(t1, n1)!.rttMs, m(t2, n1)!.rttMs - m(t2, n2)!.rttMs);
  const link = Math.max(opts.minLinkCostMs ?? 5, opts.linkCost?.(n1.id, n2.id) ?? estimate);
  const cost = pathCostOf(m(t1, n1)!) + link + pathCostOf(m(t2, n2)!) + Math.max(load(n1), load(n2));
  if (single.cost - cost < (opts.minGainMs ?? 30)) return singlePlan;
  return { kind: "cascade", cost, singleCost: single.cost, byTerminal: { [t1]: n1.id, [t2]: n2.id } };
}
