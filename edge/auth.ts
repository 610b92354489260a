// Who is calling: the operator (ADMIN_KEY), a clinic (API key), a terminal (its secret) or a
// media node (its secret). Secrets are compared as SHA-256 hashes, never stored in clear.
import type { Context, MiddlewareHandler } from "hono";
import { sha256Hex, timingSafeEqual } from "../src/bytes.ts";
import { NodeCredentialError, verifyNodeRequest } from "../src/node-credential.ts";
import type { AppEnv, ClinicPrincipal, EdgeDeps } from "./context.ts";
import { ApiError, unauthorized } from "./errors.ts";

export function bearer(c: Context): string | undefined {
  const h = c.req.header("authorization");
  if (!h) return undefined;
  const m = /^Bearer\s+(\S{1,4096})\s*$/i.exec(h);
  return m?.[1];
}

export function requireAdmin(deps: EdgeDeps): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const key = bearer(c);
    // Hash first: the comparison then takes the same time whatever the input's length.
    if (!key || !timingSafeEqual(await sha256Hex(key), deps.config.adminKeyHash)) throw unauthorized();
    await next();
  };
}

/** The clinic whose live API key is the bearer, if any (a lookup by hash). */
export async function identifyClinic(deps: EdgeDeps, key: string): Promise<ClinicPrincipal | undefined> {
  const row = await deps.store.db
    .selectFrom("api_keys")
    .innerJoin("clinics", "clinics.id", "api_keys.clinic_id")
    .select(["api_keys.id as keyId", "api_keys.clinic_id as clinicId", "api_keys.last_used_at as lastUsedAt", "clinics.rate_limit as rateLimit"])
    .where("api_keys.key_hash", "=", await sha256Hex(key))
    .where("api_keys.revoked_at", "is", null)
    .executeTakeFirst();
  if (!row) return undefined;
  const now = deps.clock.now();
  // Minute precision is enough to see whether an old key is still in use before revoking it.
  if (row.lastUsedAt === null || now - row.lastUsedAt > 60_000) {
    await deps.store.db.updateTable("api_keys").set({ last_used_at: now }).where("id", "=", row.keyId).where("clinic_id", "=", row.clinicId).execute();
  }
  return { clinicId: row.clinicId, keyId: row.keyId, rateLimit: row.rateLimit };
}

/** Clinic routes: the bearer must be a live API key (identified, and charged, by the app's gate). */
export function requireClinic(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const clinic = c.get("identified");
    if (!clinic) throw unauthorized();
    c.set("clinic", clinic);
    await next();
  };
}

export function clientIp(c: Context<AppEnv>, deps: EdgeDeps): string {
  const header = deps.config.clientIpHeader;
  if (header) {
    const v = c.req.header(header);
    if (v) return v.split(",")[0]!.trim().slice(0, 64);
  }
  return c.env?.clientIp ?? "unknown";
}

/** The terminal whose id is in the path, if the bearer is its secret. */
export async function authTerminal(deps: EdgeDeps, c: Context<AppEnv>, terminalId: string) {
  const secret = bearer(c);
  if (!secret) throw unauthorized();
  const row = await deps.store.db
    .selectFrom("terminals")
    .select(["id", "clinic_id", "secret_hash", "revoked_at", "label", "kind"])
    .where("id", "=", terminalId)
    .executeTakeFirst();
  // Unknown terminal and wrong secret look the same from outside.
  if (!row || !timingSafeEqual(await sha256Hex(secret), row.secret_hash)) throw unauthorized();
  if (row.revoked_at !== null) throw new ApiError(403, "terminal_revoked", "this terminal has been revoked");
  return row;
}

export async function authNode(deps: EdgeDeps, c: Context<AppEnv>, nodeId: string): Promise<void> {
  const secret = bearer(c);
  const expected = deps.config.nodeCredentials.get(nodeId);
  if (expected && typeof expected === "object") {
    // A node with a key pair signs each report (src/node-credential.ts): a bearer is refused.
    if (!secret) throw unauthorized("unknown node or wrong node signature");
    let report;
    try {
      report = await verifyNodeRequest(secret, expected, {
        nodeId, method: c.req.method, path: new URL(c.req.url).pathname, now: new Date(deps.clock.now()),
        body: async () => new Uint8Array(await c.req.raw.clone().arrayBuffer()),
      });
    } catch (err) {
      if (err instanceof NodeCredentialError) throw unauthorized("unknown node or wrong node signature");
      throw err;
    }
    await refuseReplay(deps, nodeId, report.jti, report.refusedAfter * 1000);
    return;
  }
  const given = secret ? await sha256Hex(secret) : "";
  if (!expected || !timingSafeEqual(given, expected)) throw unauthorized("unknown node or wrong node secret");
}

/** Records a signed report's jti; one seen before (a captured report sent again) is refused. */
async function refuseReplay(deps: EdgeDeps, nodeId: string, jti: string, expiresAt: number): Promise<void> {
  const now = deps.clock.now();
  const inserted = await deps.store.db
    .insertInto("node_report_jtis")
    .values({ jti, node_id: nodeId, expires_at: expiresAt })
    .onConflict((oc) => oc.column("jti").doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) throw unauthorized("node report already used");
  // Forget what can no longer be replayed; cheap on the expiry index, once in a while.
  if (jti.charCodeAt(jti.length - 1) % 16 === 0) {
    await deps.store.db.deleteFrom("node_report_jtis").where("expires_at", "<", now).execute();
  }
}
