// The node's control API (edge → node), on Web Standard Request/Response with Hono. Every call
// but /health and /cert-hashes carries an edge-signed node-API JWT (docs/internal-apis.md).
import { Hono } from "hono";
import { TokenError } from "../src/token/verify.ts";
import { ROLES, type GroupAttributes, type Role } from "../src/types.ts";
import type { EdgeAuth } from "./auth.ts";
import type { GroupSpec, Relay } from "./relay/relay.ts";
import type { CascadeSpec } from "./cascade/manager.ts";

export interface ApiDeps {
  nodeId: string;
  relay: Relay;
  auth: Pick<EdgeAuth, "verifyApiCall">;
  certHashes(): string[];
  /** Extra figures for GET /v1/stats (operators, tests). */
  stats?(): Record<string, unknown>;
  /** Cascades a group with another node (media/cascade/); resolves true once attached. */
  cascade?(spec: CascadeSpec): Promise<boolean>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

const MAX_BODY = 64 * 1024;

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const fail = (status: number, code: string, message: string): never => {
  throw new ApiError(status, code, message);
};

async function jsonBody(req: Request, optional = false): Promise<Record<string, unknown>> {
  const text = await req.text();
  if (text.length > MAX_BODY) fail(413, "body_too_large", `body exceeds ${MAX_BODY} bytes`);
  if (!text) return optional ? {} : fail(400, "validation_failed", "body is required");
  if (!(req.headers.get("content-type") ?? "").includes("application/json")) fail(415, "unsupported_media_type", "send application/json");
  let v: unknown;
  try { v = JSON.parse(text); } catch { fail(400, "invalid_json", "body is not valid JSON"); }
  if (!v || typeof v !== "object" || Array.isArray(v)) fail(400, "validation_failed", "body must be an object");
  return v as Record<string, unknown>;
}

const isId = (v: unknown) => typeof v === "string" && /^[A-Za-z0-9_\-:.]{1,128}$/.test(v);
const posInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0 && (v as number) <= 10_000_000;

function groupSpec(b: Record<string, unknown>): GroupSpec {
  for (const k of ["groupId", "consultationId", "clinicId"] as const) if (!isId(b[k])) fail(400, "validation_failed", `${k} is missing or malformed`);
  const a = b.attributes as Record<string, unknown> | undefined;
  if (!a || typeof a !== "object") fail(400, "validation_failed", "attributes is missing");
  for (const k of ["maxParticipants", "maxVideoKbps", "maxAudioKbps", "maxHeight"] as const) {
    if (!posInt(a![k])) fail(400, "validation_failed", `attributes.${k} is missing or malformed`);
  }
  if (!Array.isArray(b.members) || b.members.length < 1 || b.members.length > 16) fail(400, "validation_failed", "members must list 1 to 16 terminals");
  const members = (b.members as unknown[]).map((m, i) => {
    const x = m as Record<string, unknown>;
    if (!x || !isId(x.terminalId)) fail(400, "validation_failed", `members[${i}].terminalId is missing or malformed`);
    if (!ROLES.includes(x.role as Role)) fail(400, "validation_failed", `members[${i}].role is malformed`);
    return { terminalId: x.terminalId as string, role: x.role as Role };
  });
  if (new Set(members.map((m) => m.terminalId)).size !== members.length) fail(400, "validation_failed", "members repeat a terminal");
  if (typeof b.expiresAt !== "number" || !Number.isFinite(b.expiresAt)) fail(400, "validation_failed", "expiresAt is missing or malformed");
  const attributes: GroupAttributes = {
    maxParticipants: a!.maxParticipants as number, maxVideoKbps: a!.maxVideoKbps as number,
    maxAudioKbps: a!.maxAudioKbps as number, maxHeight: a!.maxHeight as number,
  };
  return {
    groupId: b.groupId as string, consultationId: b.consultationId as string, clinicId: b.clinicId as string,
    attributes, members, expiresAt: b.expiresAt as number,
  };
}

function idList(v: unknown, name: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > 100 || !v.every(isId)) fail(400, "validation_failed", `${name} must be a list of ids`);
  return v as string[];
}

export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();
  const { relay } = deps;

  app.onError((err, c) => {
    if (err instanceof ApiError) return c.json({ error: { code: err.code, message: err.message } }, err.status as 400);
    deps.log("control API failure", { error: (err as Error)?.name });
    return c.json({ error: { code: "internal", message: "internal error" } }, 500);
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: "no such route" } }, 404));

  app.get("/health", (c) => c.json({ nodeId: deps.nodeId, draining: relay.draining }));
  app.get("/cert-hashes", (c) => c.json({ certHashes: deps.certHashes() }));

  app.use("/v1/*", async (c, next) => {
    try {
      await deps.auth.verifyApiCall(c.req.header("authorization"));
    } catch (err) {
      const code = err instanceof TokenError && err.reason === "tokenExpired" ? "token_expired" : "unauthorized";
      return c.json({ error: { code, message: "a valid node-API token is required" } }, 401);
    }
    await next();
  });

  app.post("/v1/groups", async (c) => {
    const spec = groupSpec(await jsonBody(c.req.raw));
    const r = relay.reserve(spec);
    switch (r) {
      case "created": return c.json({ groupId: spec.groupId }, 201);
      case "exists": return c.json({ groupId: spec.groupId }, 200);
      case "conflict": return fail(409, "group_conflict", "this groupId belongs to another consultation");
      case "node_full": return fail(503, "node_full", "the node holds as many groups as it can");
      case "node_draining": return fail(503, "node_draining", "the node is draining");
    }
  });

  app.delete("/v1/groups/:groupId", async (c) => {
    const body = await jsonBody(c.req.raw, true);
    const reason = body.reason === undefined ? "consultationEnded" : body.reason;
    if (reason !== "consultationEnded" && reason !== "revoked" && reason !== "nodeDraining") fail(400, "validation_failed", "reason is malformed");
    const groupId = c.req.param("groupId");
    // An ended group answers 200 again, so the edge can retry a delete whose answer it lost.
    if (relay.hasEnded(groupId)) return c.json({ closedSessions: 0 });
    const n = relay.closeGroup(groupId, reason as "consultationEnded");
    if (n === undefined) return fail(404, "group_unknown", "no such group on this node");
    return c.json({ closedSessions: n });
  });

  app.post("/v1/groups/:groupId/revocations", async (c) => {
    const body = await jsonBody(c.req.raw);
    const jtis = idList(body.jtis, "jtis");
    const terminalIds = idList(body.terminalIds, "terminalIds");
    if (!jtis.length && !terminalIds.length) fail(400, "validation_failed", "name jtis or terminalIds");
    const groupId = c.req.param("groupId");
    if (relay.hasEnded(groupId)) return c.json({ closedSessions: 0 });
    const n = relay.revoke(groupId, jtis, terminalIds);
    if (n === undefined) return fail(404, "group_unknown", "no such group on this node");
    return c.json({ closedSessions: n });
  });

  // Edge → dialing node of a cascaded group: reach the peer node and attach the group there.
  app.post("/v1/groups/:groupId/cascade", async (c) => {
    const b = await jsonBody(c.req.raw);
    const groupId = c.req.param("groupId");
    if (!relay.groups.has(groupId)) return fail(404, "group_unknown", "no such group on this node");
    if (!isId(b.peerNodeId)) fail(400, "validation_failed", "peerNodeId is missing or malformed");
    if (typeof b.peerUrl !== "string" || !/^https:\/\/\S{1,500}$/.test(b.peerUrl)) fail(400, "validation_failed", "peerUrl must be an https URL");
    if (typeof b.token !== "string" || b.token.length > 4096) fail(400, "validation_failed", "token is missing");
    const hashes = b.certHashes === undefined ? undefined : b.certHashes;
    if (hashes !== undefined && (!Array.isArray(hashes) || hashes.length > 8 || !hashes.every((h) => typeof h === "string" && h.length <= 128))) fail(400, "validation_failed", "certHashes is malformed");
    if (!deps.cascade) return fail(501, "not_supported", "this node does not cascade");
    const attached = await deps.cascade({ groupId, peerNodeId: b.peerNodeId as string, peerUrl: b.peerUrl as string, certHashes: hashes as string[] | undefined, token: b.token as string });
    return attached ? c.json({ groupId, attached: true }) : fail(502, "cascade_failed", "the peer node did not accept the group");
  });

  app.get("/v1/stats", (c) => {
    return c.json({ nodeId: deps.nodeId, sessions: relay.sessions, groups: relay.groups.size, counters: relay.snapshot(), ...deps.stats?.() });
  });

  return app;
}
