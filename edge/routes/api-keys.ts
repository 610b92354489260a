// A clinic rotating its own API keys: make a new one, move over, revoke the old one.
import type { Hono, MiddlewareHandler } from "hono";
import { randomId } from "../../src/bytes.ts";
import type { AppEnv, EdgeDeps } from "../context.ts";
import { iso, newSecret } from "../secrets.ts";
import { revokeApiKey } from "./admin.ts";

export function apiKeyRoutes(app: Hono<AppEnv>, deps: EdgeDeps, clinicAuth: MiddlewareHandler<AppEnv>) {
  const { store } = deps;
  app.get("/v1/api-keys", clinicAuth, async (c) => {
    const who = c.get("clinic");
    const rows = await store.db.selectFrom("api_keys").select(["id", "created_at", "last_used_at", "revoked_at"]).where("clinic_id", "=", who.clinicId).orderBy("created_at").execute();
    return c.json({
      apiKeys: rows.map((r) => ({ id: r.id, createdAt: iso(r.created_at), lastUsedAt: iso(r.last_used_at), revokedAt: iso(r.revoked_at), current: r.id === who.keyId })),
    });
  });

  app.post("/v1/api-keys", clinicAuth, async (c) => {
    const who = c.get("clinic");
    const s = await newSecret("hzk");
    const id = randomId("key", 9);
    await store.db.insertInto("api_keys").values({ id, clinic_id: who.clinicId, key_hash: s.hash, created_at: deps.clock.now(), last_used_at: null, revoked_at: null }).execute();
    return c.json({ id, apiKey: s.secret }, 201);
  });

  app.delete("/v1/api-keys/:keyId", clinicAuth, async (c) => c.json(await revokeApiKey(deps, c.get("clinic").clinicId, c.req.param("keyId"))));
}
