// Operator calls (bearer ADMIN_KEY): clinics, their API keys, the node registry.
import type { Hono } from "hono";
import { randomId, sha256Hex } from "../../src/bytes.ts";
import { requireAdmin } from "../auth.ts";
import { requireJson } from "../body.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { isUniqueViolation } from "../db/store.ts";
import { badRequest, conflict, notFound } from "../errors.ts";
import { iso, newSecret } from "../secrets.ts";
import { num, obj, optional, parse, str } from "../validate.ts";

const SLUG = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const clinicBody = obj({
  name: str({ max: 200 }),
  apiKey: optional(str({ min: 24, max: 200, pattern: /^[\x21-\x7e]+$/, patternHint: "must be printable ASCII without spaces" })),
  rateLimit: optional(num({ min: 1, max: 1_000_000, integer: true })),
});

export function adminRoutes(app: Hono<AppEnv>, deps: EdgeDeps) {
  const { store } = deps;
  const admin = requireAdmin(deps);
  app.use("/v1/admin/*", admin);
  app.use("/v1/nodes", admin);

  async function clinicBySlug(slug: string) {
    const row = await store.db.selectFrom("clinics").selectAll().where("slug", "=", slug).executeTakeFirst();
    if (!row) throw notFound("clinic");
    return row;
  }

  async function addKey(clinicId: string, secret: string, hash: string) {
    const id = randomId("key", 9);
    try {
      await store.db.insertInto("api_keys").values({ id, clinic_id: clinicId, key_hash: hash, created_at: deps.clock.now(), last_used_at: null, revoked_at: null }).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict("api_key_in_use", "this API key cannot be used");
      throw err;
    }
    return { id, secret };
  }

  app.put("/v1/admin/clinics/:slug", async (c) => {
    const slug = c.req.param("slug");
    if (!SLUG.test(slug)) throw badRequest("slug", "slug must be 1-64 letters, digits, '-' or '_'");
    const body = parse(clinicBody, await requireJson(c.req.raw));
    const now = deps.clock.now();
    let clinic = await store.db.selectFrom("clinics").selectAll().where("slug", "=", slug).executeTakeFirst();
    let created = false;
    if (!clinic) {
      const id = randomId("cln", 12);
      try {
        await store.db.insertInto("clinics").values({ id, slug, name: body.name, rate_limit: body.rateLimit ?? null, created_at: now, updated_at: now }).execute();
        created = true;
      } catch (err) {
        if (!isUniqueViolation(err)) throw err; // created concurrently: fall through to update
      }
      clinic = await clinicBySlug(slug);
    }
    if (!created) {
      await store.db
        .updateTable("clinics")
        .set({ name: body.name, updated_at: now, ...(body.rateLimit !== undefined ? { rate_limit: body.rateLimit } : {}) })
        .where("id", "=", clinic.id)
        .execute();
    }
    let apiKey: string | undefined;
    if (body.apiKey) {
      const hash = await sha256Hex(body.apiKey);
      const existing = await store.db.selectFrom("api_keys").select(["clinic_id", "revoked_at"]).where("key_hash", "=", hash).executeTakeFirst();
      if (existing && (existing.clinic_id !== clinic.id || existing.revoked_at !== null)) throw conflict("api_key_in_use", "this API key cannot be used");
      if (!existing) await addKey(clinic.id, body.apiKey, hash);
      apiKey = body.apiKey;
    } else if (created) {
      const s = await newSecret("hzk");
      apiKey = (await addKey(clinic.id, s.secret, s.hash)).secret;
    }
    return c.json({ id: clinic.id, slug, name: body.name, ...(apiKey ? { apiKey } : {}) }, created ? 201 : 200);
  });

  app.get("/v1/admin/clinics/:slug", async (c) => {
    const clinic = await clinicBySlug(c.req.param("slug"));
    return c.json({ id: clinic.id, slug: clinic.slug, name: clinic.name, rateLimit: clinic.rate_limit, createdAt: iso(clinic.created_at) });
  });

  app.post("/v1/admin/clinics/:slug/api-keys", async (c) => {
    const clinic = await clinicBySlug(c.req.param("slug"));
    const s = await newSecret("hzk");
    const key = await addKey(clinic.id, s.secret, s.hash);
    return c.json({ id: key.id, apiKey: key.secret }, 201);
  });

  app.get("/v1/admin/clinics/:slug/api-keys", async (c) => {
    const clinic = await clinicBySlug(c.req.param("slug"));
    const rows = await store.db.selectFrom("api_keys").select(["id", "created_at", "last_used_at", "revoked_at"]).where("clinic_id", "=", clinic.id).orderBy("created_at").execute();
    return c.json({ apiKeys: rows.map((r) => ({ id: r.id, createdAt: iso(r.created_at), lastUsedAt: iso(r.last_used_at), revokedAt: iso(r.revoked_at) })) });
  });

  app.delete("/v1/admin/clinics/:slug/api-keys/:keyId", async (c) => {
    const clinic = await clinicBySlug(c.req.param("slug"));
    return c.json(await revokeApiKey(deps, clinic.id, c.req.param("keyId")));
  });

  app.get("/v1/nodes", async (c) => {
    const now = deps.clock.now();
    const rows = await store.db.selectFrom("nodes").selectAll().orderBy("id").execute();
    return c.json({
      nodes: rows.map((n) => ({
        id: n.id,
        region: n.region,
        url: n.url,
        apiUrl: n.api_url,
        certHashes: JSON.parse(n.cert_hashes) as string[],
        capacity: JSON.parse(n.capacity) as unknown,
        load: JSON.parse(n.load) as unknown,
        draining: n.draining === 1,
        lastSeenAt: iso(n.last_seen_at),
        live: n.draining === 0 && now - n.last_seen_at <= deps.config.staleNodeMs,
      })),
    });
  });
}

/** Revokes one of a clinic's API keys; scoped so one clinic cannot touch another's. */
export async function revokeApiKey(deps: EdgeDeps, clinicId: string, keyId: string) {
  const now = deps.clock.now();
  const row = await deps.store.db.selectFrom("api_keys").select(["id", "revoked_at"]).where("id", "=", keyId).where("clinic_id", "=", clinicId).executeTakeFirst();
  if (!row) throw notFound("API key");
  if (row.revoked_at === null) {
    await deps.store.db.updateTable("api_keys").set({ revoked_at: now }).where("id", "=", keyId).where("clinic_id", "=", clinicId).execute();
  }
  return { id: keyId, revokedAt: iso(row.revoked_at ?? now) };
}
