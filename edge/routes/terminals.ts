// Terminals: registration and revocation by their clinic; invitation delivery and path
// measurements by the terminal itself (bearer: the terminal's secret).
import type { Hono, MiddlewareHandler } from "hono";
import { randomId } from "../../src/bytes.ts";
import { TERMINAL_KINDS } from "../../src/types.ts";
import { auditQuery } from "../audit.ts";
import { authTerminal } from "../auth.ts";
import { requireJson } from "../body.ts";
import { cipherContext, joinUrl, nodeRef } from "../records.ts";
import { nodeOfTerminal } from "../cascade.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { badRequest, notFound } from "../errors.ts";
import { iso, newSecret } from "../secrets.ts";
import { arr, num, obj, oneOf, parse, str } from "../validate.ts";

const terminalBody = obj({ label: str({ max: 200 }), kind: oneOf(TERMINAL_KINDS) });
const measurementsBody = obj({
  measurements: arr(
    obj({
      nodeId: str({ max: 64 }),
      rttMs: num({ min: 0, max: 60_000 }),
      jitterMs: num({ min: 0, max: 60_000 }),
      loss: num({ min: 0, max: 1 }),
    }),
    { min: 1, max: 32 },
  ),
});

export const MAX_WAIT_SEC = 30;

export function terminalRoutes(app: Hono<AppEnv>, deps: EdgeDeps, clinicAuth: MiddlewareHandler<AppEnv>) {
  const { store } = deps;

  app.post("/v1/terminals", clinicAuth, async (c) => {
    const body = parse(terminalBody, await requireJson(c.req.raw));
    const id = randomId("trm", 12);
    const s = await newSecret("hzt");
    const now = deps.clock.now();
    await store.db
      .insertInto("terminals")
      .values({ id, clinic_id: c.get("clinic").clinicId, label: body.label, kind: body.kind, secret_hash: s.hash, created_at: now, revoked_at: null })
      .execute();
    return c.json({ id, secret: s.secret, label: body.label, kind: body.kind, createdAt: iso(now) }, 201);
  });

  app.get("/v1/terminals", clinicAuth, async (c) => {
    const rows = await store.db
      .selectFrom("terminals")
      .select(["id", "label", "kind", "created_at", "revoked_at"])
      .where("clinic_id", "=", c.get("clinic").clinicId)
      .orderBy("created_at")
      .limit(1000)
      .execute();
    return c.json({ terminals: rows.map((r) => ({ id: r.id, label: r.label, kind: r.kind, createdAt: iso(r.created_at), revokedAt: iso(r.revoked_at) })) });
  });

  app.get("/v1/terminals/:id", clinicAuth, async (c) => {
    const row = await store.db
      .selectFrom("terminals")
      .select(["id", "label", "kind", "created_at", "revoked_at"])
      .where("id", "=", c.req.param("id"))
      .where("clinic_id", "=", c.get("clinic").clinicId)
      .executeTakeFirst();
    if (!row) throw notFound("terminal");
    return c.json({ id: row.id, label: row.label, kind: row.kind, createdAt: iso(row.created_at), revokedAt: iso(row.revoked_at) });
  });

  app.delete("/v1/terminals/:id", clinicAuth, async (c) => {
    const who = c.get("clinic");
    const id = c.req.param("id");
    const row = await store.db.selectFrom("terminals").select(["id", "revoked_at"]).where("id", "=", id).where("clinic_id", "=", who.clinicId).executeTakeFirst();
    if (!row) throw notFound("terminal");
    const now = deps.clock.now();
    const live = await store.db
      .selectFrom("tokens")
      .innerJoin("consultations", "consultations.id", "tokens.consultation_id")
      .select(["tokens.jti", "tokens.consultation_id", "consultations.group_id", "consultations.node_id", "consultations.node_api_url", "consultations.status"])
      .where("tokens.terminal_id", "=", id)
      .where("tokens.clinic_id", "=", who.clinicId)
      .where("tokens.revoked_at", "is", null)
      .execute();
    const actor = { type: "clinic" as const, id: who.keyId };
    await store.batch([
      store.db.updateTable("terminals").set({ revoked_at: row.revoked_at ?? now }).where("id", "=", id).where("clinic_id", "=", who.clinicId).compile(),
      store.db.updateTable("tokens").set({ revoked_at: now }).where("terminal_id", "=", id).where("clinic_id", "=", who.clinicId).where("revoked_at", "is", null).compile(),
      ...live.map((t) =>
        auditQuery(store, { clinicId: who.clinicId, consultationId: t.consultation_id, at: now, actor, action: "token.revoke", terminalId: id, detail: { jti: t.jti, reason: "terminalRevoked" } }),
      ),
    ]);
    // Live sessions of the terminal are closed by their nodes.
    const groups = new Map(live.filter((t) => t.status !== "ended").map((t) => [t.group_id, t]));
    const notified = await Promise.all(
      [...groups.values()].map(async (t) => deps.nodeApi.revoke(await nodeRef(deps, t.node_id, t.node_api_url), t.group_id, { terminalIds: [id], jtis: live.filter((x) => x.group_id === t.group_id).map((x) => x.jti) })),
    );
    // A cascade puts the terminal's session on its leg's node.
    for (const t of groups.values()) {
      const its = await nodeOfTerminal(deps, { id: t.consultation_id, clinic_id: who.clinicId, node_id: t.node_id, node_url: "", node_api_url: t.node_api_url, cert_hashes: "[]" }, id);
      if (its.id !== t.node_id) await deps.nodeApi.revoke({ id: its.id, apiUrl: its.apiUrl }, t.group_id, { terminalIds: [id] });
    }
    return c.json({ id, revokedAt: iso(row.revoked_at ?? now), revokedTokens: live.length, nodesNotified: notified.filter((n) => n.ok).length });
  });

  app.get("/v1/terminals/:id/invitations", async (c) => {
    const terminal = await authTerminal(deps, c, c.req.param("id"));
    const waitRaw = c.req.query("wait");
    const afterRaw = c.req.query("after");
    const wait = waitRaw === undefined ? 0 : Number(waitRaw);
    if (!Number.isInteger(wait) || wait < 0 || wait > MAX_WAIT_SEC) throw badRequest("wait", `wait must be an integer from 0 to ${MAX_WAIT_SEC}`);
    const after = afterRaw === undefined ? 0 : Number(afterRaw);
    if (!Number.isSafeInteger(after) || after < 0) throw badRequest("after", "after must be a cursor from an earlier answer");

    const started = deps.clock.now();
    const deadline = started + wait * 1000;
    for (;;) {
      const now = deps.clock.now();
      const rows = await store.db
        .selectFrom("tokens")
        .innerJoin("consultations", "consultations.id", "tokens.consultation_id")
        .select([
          "tokens.seq", "tokens.jti", "tokens.role", "tokens.token_enc", "tokens.expires_at", "tokens.delivered_at",
          "consultations.id as consultationId", "consultations.status", "consultations.node_id", "consultations.node_url", "consultations.cert_hashes",
        ])
        .where("tokens.terminal_id", "=", terminal.id)
        .where("tokens.clinic_id", "=", terminal.clinic_id)
        .where("consultations.clinic_id", "=", terminal.clinic_id)
        .where("tokens.seq", ">", after)
        .where("tokens.revoked_at", "is", null)
        .where("tokens.expires_at", ">", now)
        .where("consultations.status", "!=", "ended")
        .orderBy("tokens.seq")
        .limit(50)
        .execute();
      if (rows.length > 0) {
        const fresh = rows.filter((r) => r.delivered_at === null);
        if (fresh.length > 0) {
          await store.batch([
            store.db.updateTable("tokens").set({ delivered_at: now }).where("jti", "in", fresh.map((r) => r.jti)).where("clinic_id", "=", terminal.clinic_id).where("delivered_at", "is", null).compile(),
            ...fresh.map((r) =>
              auditQuery(store, { clinicId: terminal.clinic_id, consultationId: r.consultationId, at: now, actor: { type: "terminal", id: terminal.id }, action: "token.deliver", terminalId: terminal.id, detail: { jti: r.jti } }),
            ),
          ]);
        }
        const nodes = await store.db.selectFrom("nodes").select(["id", "url", "cert_hashes"]).where("id", "in", [...new Set(rows.map((r) => r.node_id))]).execute();
        const legs = await store.db.selectFrom("consultation_legs").select("consultation_id").where("terminal_id", "=", terminal.id).where("clinic_id", "=", terminal.clinic_id).where("consultation_id", "in", [...new Set(rows.map((r) => r.consultationId))]).execute();
        const invitations = await Promise.all(
          rows.map(async (r) => {
            const token = await deps.config.phi.decrypt(r.token_enc, cipherContext.token(terminal.clinic_id, r.jti));
            const n = nodes.find((x) => x.id === r.node_id);
            // A cascaded terminal joins its own node (edge/cascade.ts).
            const leg = legs.find((l) => l.consultation_id === r.consultationId);
            return {
              id: String(r.seq),
              consultationId: r.consultationId,
              status: r.status,
              role: r.role,
              token,
              joinUrl: joinUrl(deps, token),
              expiresAt: iso(r.expires_at),
              node: leg
                ? await nodeOfTerminal(deps, { id: r.consultationId, clinic_id: terminal.clinic_id, node_id: r.node_id, node_url: r.node_url, node_api_url: "", cert_hashes: r.cert_hashes }, terminal.id).then(({ id, url, certHashes }) => ({ id, url, certHashes }))
                : { id: r.node_id, url: n?.url ?? r.node_url, certHashes: JSON.parse(n?.cert_hashes ?? r.cert_hashes) as string[] },
            };
          }),
        );
        return c.json({ invitations, cursor: String(rows[rows.length - 1]!.seq) });
      }
      if (now >= deadline) return c.json({ invitations: [], cursor: String(after) });
      // Poll the store: works the same on Workers and Deno; slower after the first seconds
      // to keep the query count of one long request bounded.
      await deps.clock.sleep(Math.min(now - started < 5000 ? 500 : 1000, Math.max(1, deadline - now)));
    }
  });

  app.post("/v1/terminals/:id/measurements", async (c) => {
    const terminal = await authTerminal(deps, c, c.req.param("id"));
    const body = parse(measurementsBody, await requireJson(c.req.raw));
    const now = deps.clock.now();
    await store.batch(
      body.measurements.map((m) =>
        store.db
          .insertInto("path_measurements")
          .values({ clinic_id: terminal.clinic_id, terminal_id: terminal.id, node_id: m.nodeId, rtt_ms: m.rttMs, jitter_ms: m.jitterMs, loss: m.loss, measured_at: now })
          .onConflict((oc) => oc.columns(["terminal_id", "node_id"]).doUpdateSet({ clinic_id: terminal.clinic_id, rtt_ms: m.rttMs, jitter_ms: m.jitterMs, loss: m.loss, measured_at: now }))
          .compile(),
      ),
    );
    return c.json({ accepted: body.measurements.length });
  });
}
