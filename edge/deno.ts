// Deno adapter: Deno.serve on EDGE_HOST:EDGE_PORT, SQLite file at DB_PATH (node:sqlite),
// migrations before the first request, and the built page (dist/public/) for non-API paths.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { createApp } from "./app.ts";
import { loadConfig } from "./config.ts";
import { systemClock } from "./context.ts";
import { migrate } from "./db/migrations.ts";
import { sqliteStore, type DatabaseSyncLike } from "./db/sqlite.ts";
import { fetchNodeApi } from "./node-api.ts";

declare const Deno: {
  env: { toObject(): Record<string, string> };
  readFile(path: string | URL): Promise<Uint8Array>;
  serve(
    opts: { hostname: string; port: number; onListen?: (addr: { hostname: string; port: number }) => void },
    handler: (req: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  ): { shutdown(): Promise<void>; finished: Promise<void> };
  addSignalListener(signal: "SIGTERM" | "SIGINT", fn: () => void): void;
  exit(code: number): never;
};

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  json: "application/json",
  map: "application/json",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
  wasm: "application/wasm",
  txt: "text/plain; charset=utf-8",
};

const PUBLIC_DIR = new URL("../dist/public/", import.meta.url);

async function serveStatic(req: Request): Promise<Response> {
  const notFound = () => Response.json({ error: { code: "not_found", message: "not found" } }, { status: 404 });
  let path: string;
  try {
    path = decodeURIComponent(new URL(req.url).pathname);
  } catch {
    return notFound();
  }
  const parts = path.split("/").filter(Boolean);
  if (parts.some((p) => p === ".." || p === "." || p.includes("\\") || p.includes("\0"))) return notFound();
  const rel = parts.join("/");
  const candidates = rel === "" ? ["index.html"] : path.endsWith("/") ? [`${rel}/index.html`] : [rel, `${rel}.html`, `${rel}/index.html`];
  for (const candidate of candidates) {
    try {
      const data = await Deno.readFile(new URL(candidate, PUBLIC_DIR));
      const ext = candidate.split(".").pop() ?? "";
      return new Response(req.method === "HEAD" ? null : (data as BodyInit), {
        headers: { "content-type": TYPES[ext] ?? "application/octet-stream", "cache-control": "no-cache", "x-content-type-options": "nosniff" },
      });
    } catch {
      // try the next form, e.g. /join → join.html
    }
  }
  return notFound();
}

async function main() {
  const env = Deno.env.toObject();
  const config = await loadConfig(env, Date.now());
  const { DatabaseSync } = (await import("node:sqlite" as string)) as { DatabaseSync: new (path: string) => DatabaseSyncLike };
  // Default beside the other local state, which git ignores.
  const dbPath = env.DB_PATH ?? ".huizhen/edge-deno.sqlite";
  mkdirSync(dirname(dbPath), { recursive: true });
  const raw = new DatabaseSync(dbPath);
  const store = sqliteStore(raw);
  const applied = await migrate(store);
  if (applied.length) console.log(`migrations applied: ${applied.join(", ")}`);
  const app = createApp({
    store,
    config,
    clock: systemClock,
    log: (line) => console.log(line),
    nodeApi: fetchNodeApi({ issuer: config.issuer, keys: config.keys, timeoutMs: config.nodeTimeoutMs, now: () => Date.now() }),
    assets: serveStatic,
  });
  const server = Deno.serve(
    {
      hostname: env.EDGE_HOST ?? "127.0.0.1",
      port: Number(env.EDGE_PORT ?? 8787),
      onListen: (addr) => console.log(`edge (deno) listening on http://${addr.hostname}:${addr.port}`),
    },
    (req, info) => app.fetch(req, { clientIp: info.remoteAddr.hostname }),
  );
  const stop = async () => {
    await server.shutdown();
    raw.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}

main().catch((err) => {
  console.error(`edge failed to start: ${(err as Error)?.message ?? err}`);
  Deno.exit(1);
});
