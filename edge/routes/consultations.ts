// Clinic API for consultations (bearer: the clinic's API key).
import type { Hono } from "hono";
import { listAudit } from "../audit.ts";
import { requireJson } from "../body.ts";
import {
  IDEMPOTENCY_KEY, createConsultation, createConsultationBody, endConsultation, listConsultations, viewConsultation,
} from "../consultations.ts";
import { reissueToken, revokeToken } from "../tokens.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { badRequest, notFound } from "../errors.ts";
import { readJson } from "../body.ts";
import { obj, parse, str } from "../validate.ts";

const reissueBody = obj({ terminalId: str({ max: 64 }) });

export function consultationRoutes(app: Hono<AppEnv>, deps: EdgeDeps) {
  app.post("/v1/consultations", async (c) => {
    const key = c.req.header("idempotency-key");
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) throw badRequest("Idempotency-Key", "Idempotency-Key must be 1-200 printable ASCII characters");
    const body = parse(createConsultationBody, await requireJson(c.req.raw));
    const r = await createConsultation(deps, c.get("clinic"), body, key);
    return c.json(r.body, r.status);
  });

  app.get("/v1/consultations", async (c) => {
    const status = c.req.query("status");
    if (status !== undefined && !["pending", "connected", "ended"].includes(status)) throw badRequest("status", "status must be pending, connected or ended");
    const limitRaw = c.req.query("limit") ?? "50";
    const limit = Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw badRequest("limit", "limit must be an integer from 1 to 200");
    return c.json(await listConsultations(deps, c.get("clinic"), { status: status as "pending" | "connected" | "ended" | undefined, limit, before: c.req.query("before") }));
  });

  app.get("/v1/consultations/:id", async (c) => c.json(await viewConsultation(deps, c.get("clinic"), c.req.param("id"))));

  app.post("/v1/consultations/:id/end", async (c) => {
    await readJson(c.req.raw); // an optional body is accepted but bounded and must be JSON
    return c.json(await endConsultation(deps, c.get("clinic"), c.req.param("id")));
  });

  app.post("/v1/consultations/:id/tokens", async (c) => {
    const body = parse(reissueBody, await requireJson(c.req.raw));
    return c.json(await reissueToken(deps, c.get("clinic"), c.req.param("id"), body.terminalId), 201);
  });

  app.delete("/v1/consultations/:id/tokens/:jti", async (c) => c.json(await revokeToken(deps, c.get("clinic"), c.req.param("id"), c.req.param("jti"))));

  app.get("/v1/consultations/:id/audit", async (c) => {
    const who = c.get("clinic");
    const id = c.req.param("id");
    const owned = await deps.store.db.selectFrom("consultations").select("id").where("id", "=", id).where("clinic_id", "=", who.clinicId).executeTakeFirst();
    if (!owned) throw notFound("consultation");
    return c.json({ consultationId: id, entries: await listAudit(deps.store, who.clinicId, id) });
  });
}
