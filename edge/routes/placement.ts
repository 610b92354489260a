// Terminal-facing routing: the candidate nodes a terminal should probe before it is placed,
// and the move of a live consultation to another node (edge/failover.ts).
//   GET  /v1/terminals/:id/candidates   bearer: the terminal's secret
//   POST /v1/join/replace               bearer: the terminal's consultation token (CORS open)
import type { Hono } from "hono";
import { cors } from "hono/cors";
import { rankNodes } from "../../src/routing.ts";
import { probeUrlOf } from "../../src/terminal/probe.ts";
import { authTerminal, bearer } from "../auth.ts";
import { requireJson } from "../body.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { ApiError, badRequest } from "../errors.ts";
import { REPLACE_REASONS, replacePlacement } from "../failover.ts";
import { liveNodes } from "../placement.ts";
import { arr, num, obj, oneOf, optional, parse, str } from "../validate.ts";

const replaceBody = obj({
  consultationId: str({ max: 64 }),
  failedNodeId: str({ max: 64 }),
  reason: oneOf(REPLACE_REASONS),
  measurements: optional(arr(obj({
    nodeId: str({ max: 64 }),
    rttMs: num({ min: 0, max: 60_000 }),
    jitterMs: num({ min: 0, max: 60_000 }),
    loss: num({ min: 0, max: 1 }),
  }, { extra: "ignore" }), { max: 32 })),
});

/** Candidates offered for probing: the best eligible nodes by load and region. */
const MAX_CANDIDATES = 8;

/** The nodes a terminal should probe, best first (also in GET /v1/join for the consultation page). */
export async function candidateNodes(deps: EdgeDeps, region?: string) {
  const ranked = rankNodes(await liveNodes(deps), { now: deps.clock.now(), region, staleAfterMs: deps.config.staleNodeMs });
  return ranked.slice(0, MAX_CANDIDATES).map(({ node }) => ({
    id: node.id, region: node.region, url: node.url, probeUrl: probeUrlOf(node.url), certHashes: node.certHashes,
    ...(node.fallbackUrl ? { fallbackUrl: node.fallbackUrl } : {}),
  }));
}

export function placementRoutes(app: Hono<AppEnv>, deps: EdgeDeps) {
  app.get("/v1/terminals/:id/candidates", async (c) => {
    await authTerminal(deps, c, c.req.param("id"));
    const region = c.req.query("region");
    if (region !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(region)) throw badRequest("region", "region must be letters, digits, '-' or '_'");
    return c.json({ nodes: await candidateNodes(deps, region) });
  });

  app.use("/v1/join/replace", cors({ origin: "*", allowMethods: ["POST", "OPTIONS"], allowHeaders: ["authorization", "content-type"], maxAge: 600 }));
  app.post("/v1/join/replace", async (c) => {
    const token = bearer(c);
    if (!token) throw new ApiError(401, "token_invalid", "the consultation token is not valid");
    const body = parse(replaceBody, await requireJson(c.req.raw));
    c.header("cache-control", "no-store");
    return c.json(await replacePlacement(deps, token, body));
  });
}
