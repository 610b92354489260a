// The edge as one Hono app built from its dependencies (store, config, node client, clock);
// worker.ts and deno.ts only make those and hand requests over.
import { Hono } from "hono";
import { PhiCipherError } from "../src/phi-cipher.ts";
import { routePath } from "hono/route";
import { bearer, clientIp, identifyClinic, requireClinic } from "./auth.ts";
import type { AppEnv, EdgeDeps } from "./context.ts";
import { ApiError, notFound } from "./errors.ts";
import { hitRateLimits } from "./rate-limit.ts";
import { adminRoutes } from "./routes/admin.ts";
import { apiKeyRoutes } from "./routes/api-keys.ts";
import { consultationRoutes } from "./routes/consultations.ts";
import { joinRoutes } from "./routes/join.ts";
import { nodeRoutes } from "./routes/nodes.ts";
import { placementRoutes } from "./routes/placement.ts";
import { terminalRoutes } from "./routes/terminals.ts";

/** Paths the API owns; everything else is the page and SDK. */
export function isApiPath(path: string): boolean {
  return path === "/healthz" || path.startsWith("/v1/") || path === "/v1" || path.startsWith("/.well-known/");
}

/** The SDK module is imported by clinics' own web apps from their origins. */
export function isSdkPath(path: string): boolean {
  return path.startsWith("/sdk/");
}

function withOpenCors(res: Response): Response {
  const out = new Response(res.body, res);
  out.headers.set("access-control-allow-origin", "*");
  return out;
}

/** Node reports are authenticated machine traffic: they must not starve behind the IP limit. */
const NODE_REPORT = /^\/v1\/nodes\/[^/]+\/(heartbeat|events|revocations)$/;

export function createApp(given: EdgeDeps): Hono<AppEnv> {
  const log = given.log ?? ((line: string) => console.log(line));
  const deps: EdgeDeps = { ...given, log };
  const app = new Hono<AppEnv>();

  // One line per request: method, route pattern (never the raw URL), status, time.
  app.use("*", async (c, next) => {
    const started = Date.now();
    await next();
    const pattern = routePath(c, -1);
    const route = pattern === "*" || pattern === "/*" ? (isApiPath(c.req.path) ? "(no route)" : "(page)") : pattern;
    if (isApiPath(c.req.path)) {
      c.header("cache-control", c.res.headers.get("cache-control") ?? "no-store");
      c.header("x-content-type-options", "nosniff");
    }
    log(`${c.req.method} ${route} ${c.res.status} ${Date.now() - started}ms`);
  });

  app.use("*", async (c, next) => {
    if (!isApiPath(c.req.path)) return next();
    await deps.ready?.();
    if (c.req.path !== "/healthz" && !NODE_REPORT.test(c.req.path) && c.req.method !== "OPTIONS") {
      // Every request counts against its client address; a clinic's requests against the clinic
      // too, both in one write.
      const { windowSec, perIp, perClinic } = deps.config.rateLimits;
      const key = bearer(c);
      const clinic = key ? await identifyClinic(deps, key) : undefined;
      const charges = [{ bucket: `ip:${clientIp(c, deps)}`, limit: perIp }];
      if (clinic) {
        c.set("identified", clinic);
        charges.push({ bucket: `clinic:${clinic.clinicId}`, limit: clinic.rateLimit ?? perClinic });
      }
      await hitRateLimits(deps.store, charges, windowSec, deps.clock.now());
    }
    await next();
  });

  app.get("/healthz", (c) => c.json({ ok: true }));

  app.get("/.well-known/jwks.json", async (c) => {
    c.header("cache-control", "public, max-age=300");
    return c.json({ keys: await deps.config.keys.publicJwks(deps.clock.now()) });
  });

  const clinicAuth = requireClinic();
  adminRoutes(app, deps);
  apiKeyRoutes(app, deps, clinicAuth);
  terminalRoutes(app, deps, clinicAuth);
  app.use("/v1/consultations", clinicAuth);
  app.use("/v1/consultations/*", clinicAuth);
  consultationRoutes(app, deps);
  nodeRoutes(app, deps);
  joinRoutes(app, deps);
  placementRoutes(app, deps);

  app.notFound(async (c) => {
    if (!isApiPath(c.req.path) && deps.assets && (c.req.method === "GET" || c.req.method === "HEAD")) {
      const res = await deps.assets(c.req.raw);
      if (res.status !== 404) return isSdkPath(c.req.path) ? withOpenCors(res) : res;
    }
    const err = notFound("route");
    return c.json(err.toJSON(), 404);
  });

  app.onError((err, c) => {
    if (err instanceof ApiError) {
      for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
      return c.json(err.toJSON(), err.status);
    }
    // The error's name only: messages of lower layers may quote input.
    log(`error ${c.req.method} ${routePath(c, -1)}: ${err?.name ?? "Error"}`);
    if (err instanceof PhiCipherError) {
      // A ciphertext that does not open for this record: moved, tampered, or its key retired.
      return c.json({ error: { code: "record_unreadable", message: "the record's protected fields cannot be read" } }, 500);
    }
    return c.json({ error: { code: "internal", message: "internal error" } }, 500);
  });

  return app;
}
