// Media node → edge: heartbeats (the registry placement reads) and session events (joins,
// leaves, connection, group closed), each event applied once whatever the node's retries.
import type { Hono } from "hono";
import type { CompiledQuery } from "kysely";
import { auditQuery } from "../audit.ts";
import { authNode } from "../auth.ts";
import { requireJson } from "../body.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { isUniqueViolation } from "../db/store.ts";
import { ApiError, badRequest } from "../errors.ts";
import { any, arr, bool, num, obj, oneOf, optional, parse, str } from "../validate.ts";

const count = num({ min: 0, max: 1e12 });
const url = (schemes: RegExp) => str({ max: 512, pattern: schemes, patternHint: "must be an absolute URL" });
const lenient = { extra: "ignore" } as const;
const heartbeatBody = obj({
  region: str({ max: 64 }),
  url: url(/^https:\/\/\S+$/),
  apiUrl: url(/^https?:\/\/\S+$/),
  certHashes: arr(str({ max: 128 }), { max: 8 }),
  fallbackUrl: optional(url(/^https:\/\/\S+$/)),
  capacity: obj({ maxSessions: count, maxGroups: count, maxKbpsOut: count }, lenient),
  load: obj({
    sessions: count,
    groups: count,
    kbpsIn: count,
    kbpsOut: count,
    cpu: num({ min: 0, max: 64 }),
    loopLagMs: count,
    lossRate: num({ min: 0, max: 1 }),
  }, lenient),
  draining: bool,
}, lenient);

const eventsBody = obj({ events: arr(any, { max: 500 }) }, lenient);
const eventBody = obj({
  id: str({ max: 128 }),
  type: oneOf(["joined", "left", "connected", "group-closed"] as const),
  consultationId: str({ max: 64 }),
  groupId: str({ max: 64 }),
  terminalId: optional(str({ max: 64 })),
  jti: optional(str({ max: 128 })),
  at: num({ min: 0, max: 1e14 }),
  reason: optional(str({ max: 64 })),
}, lenient);
type NodeEvent = ReturnType<typeof eventBody>;
/** A node sends up to a few hundred events at once. */
const EVENTS_BODY_LIMIT = 512 * 1024;

export function nodeRoutes(app: Hono<AppEnv>, deps: EdgeDeps) {
  const { store } = deps;

  app.post("/v1/nodes/:nodeId/heartbeat", async (c) => {
    const nodeId = c.req.param("nodeId");
    await authNode(deps, c, nodeId);
    const b = parse(heartbeatBody, await requireJson(c.req.raw));
    const now = deps.clock.now();
    const values = {
      region: b.region,
      url: b.url,
      api_url: b.apiUrl,
      cert_hashes: JSON.stringify(b.certHashes),
      fallback_url: b.fallbackUrl ?? null,
      capacity: JSON.stringify(b.capacity),
      load: JSON.stringify(b.load),
      draining: b.draining ? 1 : 0,
      last_seen_at: now,
    };
    await store.db
      .insertInto("nodes")
      .values({ id: nodeId, registered_at: now, ...values })
      .onConflict((oc) => oc.column("id").doUpdateSet(values))
      .execute();
    return c.json({ ok: true });
  });

  app.post("/v1/nodes/:nodeId/events", async (c) => {
    const nodeId = c.req.param("nodeId");
    await authNode(deps, c, nodeId);
    const { events } = parse(eventsBody, await requireJson(c.req.raw, EVENTS_BODY_LIMIT));
    let applied = 0;
    const rejected: { index: number; field?: string }[] = [];
    // A retried batch is mostly events seen before: find those in one query.
    const ids = events.map((e) => (e as { id?: unknown })?.id).filter((id): id is string => typeof id === "string" && id.length <= 128);
    const seen = new Set<string>();
    for (let i = 0; i < ids.length; i += 90) {
      // D1 binds at most 100 parameters per statement.
      const rows = await store.db.selectFrom("node_events").select("id").where("node_id", "=", nodeId).where("id", "in", ids.slice(i, i + 90)).execute();
      for (const r of rows) seen.add(r.id);
    }
    for (const [index, raw] of events.entries()) {
      let e: NodeEvent;
      try {
        e = eventBody(raw, `events[${index}]`);
      } catch (err) {
        // One malformed event must not block the node's queue behind it: it is dropped and named.
        if (err instanceof ApiError) {
          rejected.push({ index, field: err.field });
          continue;
        }
        throw err;
      }
      if (seen.has(e.id)) continue;
      seen.add(e.id); // the same id twice in one batch counts once
      if (await applyEvent(deps, nodeId, e)) applied++;
    }
    if (rejected.length) deps.log?.(`node ${nodeId}: ${rejected.length} malformed event(s) dropped`);
    // Every event is taken (new, seen before, about a group this node does not hold, or
    // malformed), so the node stops retrying it.
    return c.json({ accepted: events.length - rejected.length, applied, ...(rejected.length ? { rejected } : {}) });
  });

  // What a node re-checks on its timer, in case a revocation call did not reach it: groups it
  // hosts (whole, or a cascade's leg) that ended and tokens of those groups revoked, since a time.
  app.get("/v1/nodes/:nodeId/revocations", async (c) => {
    const nodeId = c.req.param("nodeId");
    await authNode(deps, c, nodeId);
    const sinceRaw = c.req.query("since") ?? "0";
    const since = Number(sinceRaw);
    if (!Number.isSafeInteger(since) || since < 0) throw badRequest("since", "since must be unix ms");
    const now = deps.clock.now();
    // A cascade's second node carries terminals of the consultation too (consultation_legs).
    const legsHere = store.db.selectFrom("consultation_legs").select("consultation_id").where("node_id", "=", nodeId);
    const ended = await store.db
      .selectFrom("consultations")
      .select(["group_id", "ended_at"])
      .where((eb) => eb.or([eb("node_id", "=", nodeId), eb("id", "in", legsHere)]))
      .where("ended_at", ">=", since)
      .orderBy("ended_at")
      .limit(1000)
      .execute();
    const revoked = await store.db
      .selectFrom("tokens")
      .innerJoin("consultations", "consultations.id", "tokens.consultation_id")
      .select(["tokens.jti", "tokens.terminal_id", "tokens.revoked_at", "consultations.group_id"])
      .where((eb) => eb.or([eb("consultations.node_id", "=", nodeId), eb("consultations.id", "in", legsHere)]))
      .where("tokens.revoked_at", ">=", since)
      .orderBy("tokens.revoked_at")
      .limit(1000)
      .execute();
    return c.json({
      now,
      groups: ended.map((g) => ({ groupId: g.group_id, endedAt: g.ended_at })),
      tokens: revoked.map((t) => ({ jti: t.jti, groupId: t.group_id, terminalId: t.terminal_id, revokedAt: t.revoked_at })),
    });
  });

  async function applyEvent(d: EdgeDeps, nodeId: string, e: NodeEvent): Promise<boolean> {
    const seen = await store.db.selectFrom("node_events").select("id").where("node_id", "=", nodeId).where("id", "=", e.id).executeTakeFirst();
    if (seen) return false;
    const now = d.clock.now();
    const at = Math.min(Math.round(e.at), now);
    // The node may only speak about groups it hosts.
    let cons = await store.db
      .selectFrom("consultations")
      .select(["id", "clinic_id", "status", "node_id"])
      .where("id", "=", e.consultationId)
      .where("group_id", "=", e.groupId)
      .executeTakeFirst();
    if (cons && cons.node_id !== nodeId) {
      // A cascade's other node speaks only for its own terminal, and cannot end the consultation.
      const leg = await store.db.selectFrom("consultation_legs").select("terminal_id").where("consultation_id", "=", cons.id).where("clinic_id", "=", cons.clinic_id).where("node_id", "=", nodeId).executeTakeFirst();
      const allowed = leg && (e.type === "connected" || ((e.type === "joined" || e.type === "left") && e.terminalId === leg.terminal_id));
      if (!allowed) cons = undefined;
    }
    const record = store.db.insertInto("node_events").values({ node_id: nodeId, id: e.id, type: e.type, consultation_id: e.consultationId, received_at: now }).compile();
    const queries: CompiledQuery[] = [record];
    if (cons) {
      const clinicId = cons.clinic_id;
      const actor = { type: "node" as const, id: nodeId };
      const base = { clinicId, consultationId: cons.id, at, actor };
      const member = e.terminalId
        ? await store.db.selectFrom("participants").select("terminal_id").where("consultation_id", "=", cons.id).where("clinic_id", "=", clinicId).where("terminal_id", "=", e.terminalId).executeTakeFirst()
        : undefined;
      switch (e.type) {
        case "joined":
          if (member) {
            queries.push(
              store.db.updateTable("participants").set((eb) => ({ joined_at: eb.fn.coalesce("joined_at", eb.val(at)), left_at: null })).where("consultation_id", "=", cons.id).where("clinic_id", "=", clinicId).where("terminal_id", "=", member.terminal_id).compile(),
              auditQuery(store, { ...base, action: "join", terminalId: member.terminal_id, ...(e.jti ? { detail: { jti: e.jti } } : {}) }),
            );
            if (e.jti) {
              queries.push(store.db.updateTable("tokens").set((eb) => ({ first_used_at: eb.fn.coalesce("first_used_at", eb.val(at)) })).where("jti", "=", e.jti).where("consultation_id", "=", cons.id).where("clinic_id", "=", clinicId).compile());
            }
          }
          break;
        case "left":
          if (member) {
            queries.push(
              store.db.updateTable("participants").set({ left_at: at }).where("consultation_id", "=", cons.id).where("clinic_id", "=", clinicId).where("terminal_id", "=", member.terminal_id).compile(),
              auditQuery(store, { ...base, action: "leave", terminalId: member.terminal_id, ...(e.reason ? { detail: { reason: e.reason } } : {}) }),
            );
          }
          break;
        case "connected":
          if (cons.status === "pending") {
            queries.push(
              store.db.updateTable("consultations").set({ status: "connected", connected_at: at }).where("id", "=", cons.id).where("clinic_id", "=", clinicId).where("status", "=", "pending").compile(),
              auditQuery(store, { ...base, action: "connected" }),
            );
          }
          break;
        case "group-closed":
          queries.push(auditQuery(store, { ...base, action: "group-closed", ...(e.reason ? { detail: { reason: e.reason } } : {}) }));
          if (cons.status !== "ended") {
            queries.push(
              store.db.updateTable("consultations").set({ status: "ended", ended_at: at, end_reason: e.reason ?? "groupClosed" }).where("id", "=", cons.id).where("clinic_id", "=", clinicId).where("status", "!=", "ended").compile(),
              store.db.updateTable("tokens").set({ revoked_at: now }).where("consultation_id", "=", cons.id).where("clinic_id", "=", clinicId).where("revoked_at", "is", null).compile(),
            );
          }
          break;
      }
    }
    try {
      await store.batch(queries);
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false; // the same event, applied by a concurrent retry
      throw err;
    }
  }
}
