// Cloudflare Workers adapter: D1 store, bindings as config, static assets for page paths.
// The schema is migrated on an isolate's first API request (idempotent across isolates).
import type { D1Database, Fetcher } from "@cloudflare/workers-types";
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { systemClock, type AppEnv } from "./context.ts";
import { d1Store } from "./db/d1.ts";
import { migrate } from "./db/migrations.ts";
import { fetchNodeApi } from "./node-api.ts";

interface Env {
  DB: D1Database;
  ASSETS?: Fetcher;
  [name: string]: unknown;
}

// One app per isolate: keys are imported once, not per request.
let built: Promise<Hono<AppEnv>> | undefined;

function build(env: Env): Promise<Hono<AppEnv>> {
  return (async () => {
    const config = await loadConfig(env, Date.now(), { clientIpHeader: "cf-connecting-ip" });
    const store = d1Store(env.DB);
    let migrated: Promise<unknown> | undefined;
    return createApp({
      store,
      config,
      clock: systemClock,
      // wrangler shows console.info at its default level; console.log only at "log".
      log: (line) => console.info(line),
      nodeApi: fetchNodeApi({ issuer: config.issuer, keys: config.keys, timeoutMs: config.nodeTimeoutMs, now: () => Date.now() }),
      assets: env.ASSETS ? (req) => env.ASSETS!.fetch(req as never) as unknown as Promise<Response> : undefined,
      ready: async () => {
        migrated ??= migrate(store).then((applied) => {
          if (applied.length) console.info(`migrations applied: ${applied.join(", ")}`);
        }, (err) => {
          migrated = undefined; // let the next request try again
          throw err;
        });
        await migrated;
      },
    });
  })();
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    built ??= build(env);
    let app: Hono<AppEnv>;
    try {
      app = await built;
    } catch (err) {
      built = undefined;
      console.error(`edge configuration error: ${(err as Error)?.message ?? "unknown"}`);
      return Response.json({ error: { code: "misconfigured", message: "the edge is not configured" } }, { status: 503 });
    }
    return app.fetch(req, {});
  },
};
