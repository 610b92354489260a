// An edge app in-process for Deno tests: the real app and SQLite store (node:sqlite, in
// memory), a recording stand-in for the nodes' control API (no node process needed to test
// the edge's own logic), a hand-driven clock, and a store that can fail a write halfway.
import { sql, type CompiledQuery } from "kysely";
import { createApp } from "../../edge/app.ts";
import { loadConfig } from "../../edge/config.ts";
import type { Clock, EdgeDeps } from "../../edge/context.ts";
import { migrate } from "../../edge/db/migrations.ts";
import { sqliteStore, type DatabaseSyncLike } from "../../edge/db/sqlite.ts";
import type { Store } from "../../edge/db/store.ts";
import type { GroupRequest, NodeApi } from "../../edge/node-api.ts";
import { randomBytes, sha256Hex, toBase64Url } from "../../src/bytes.ts";
import { PhiCipher } from "../../src/phi-cipher.ts";
import { generateSigningJwk } from "../../src/token/keys.ts";
import { testPatient } from "../support/clinic-client.ts";

// node:sqlite is Deno's (and Node ≥ 22's); Node 20's types do not know it.
export const { DatabaseSync } = (await import("node:sqlite" as string)) as { DatabaseSync: new (path: string) => DatabaseSyncLike };
export const ADMIN = `hza_${toBase64Url(randomBytes(24))}`;

/** Records calls instead of reaching a node; stands in for the node's control API. */
export class RecordingNodeApi implements NodeApi {
  reserved: { nodeId: string; req: GroupRequest }[] = [];
  closed: { nodeId: string; groupId: string; reason: string }[] = [];
  refuse = new Set<string>();
  async reserveGroup(node: { id: string }, req: GroupRequest) {
    if (this.refuse.has(node.id)) return { ok: false as const, reason: "status 503" };
    this.reserved.push({ nodeId: node.id, req });
    await Promise.resolve();
    return { ok: true as const };
  }
  async closeGroup(node: { id: string }, groupId: string, reason: string) {
    this.closed.push({ nodeId: node.id, groupId, reason });
    return { ok: true, closedSessions: 0 };
  }
  async revoke() {
    return { ok: true };
  }
}

export class ManualClock implements Clock {
  constructor(public t = Date.UTC(2026, 10, 26, 12)) {}
  now = () => this.t;
  sleep = async (ms: number) => {
    this.t += ms;
    await new Promise((r) => setTimeout(r, 1));
  };
}

/** A store whose next batch fails halfway (a failing statement in its middle), or lands but
 * reports failure (a lost answer). */
export function faultable(inner: Store) {
  const state = { failNext: false, loseAnswerNext: false };
  const store: Store = {
    db: inner.db,
    async batch(queries: CompiledQuery[]) {
      if (state.failNext && queries.length > 1) {
        state.failNext = false;
        const mid = Math.ceil(queries.length / 2);
        return inner.batch([...queries.slice(0, mid), sql.raw("INSERT INTO no_such_table VALUES (1)").compile(inner.db), ...queries.slice(mid)]);
      }
      if (state.loseAnswerNext && queries.length > 1) {
        state.loseAnswerNext = false;
        await inner.batch(queries);
        throw new Error("connection reset (the write landed, its answer did not)");
      }
      return inner.batch(queries);
    },
  };
  return { store, state };
}

export async function makeEdge(opts: { signingKeys?: string; nodes?: string[] } = {}) {
  const clock = new ManualClock();
  const raw = new DatabaseSync(":memory:");
  const base = sqliteStore(raw);
  await migrate(base);
  const { store, state } = faultable(base);
  const nodeSecrets = Object.fromEntries((opts.nodes ?? ["node-a", "node-b"]).map((id) => [id, `hzn_${id}_secret_value`]));
  const creds: Record<string, string> = {};
  for (const [id, s] of Object.entries(nodeSecrets)) creds[id] = await sha256Hex(s);
  const config = await loadConfig({
    SIGNING_KEYS: opts.signingKeys ?? JSON.stringify({ keys: [await generateSigningJwk("EdDSA")] }),
    PATIENT_HASH_KEY: toBase64Url(randomBytes(32)),
    PHI_KEYS: PhiCipher.generateSecret(),
    ADMIN_KEY: ADMIN,
    NODE_CREDENTIALS: JSON.stringify(creds),
    PUBLIC_URL: "https://edge.test",
  }, clock.now());
  const nodeApi = new RecordingNodeApi();
  const lines: string[] = [];
  const deps: EdgeDeps = { store, config, nodeApi, clock, log: (l) => lines.push(l) };
  const app = createApp(deps);
  const call = async (method: string, path: string, key?: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await app.request(path, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    }, { clientIp: "127.0.0.1" });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  };
  const heartbeat = (id: string, region = "eu") =>
    call("POST", `/v1/nodes/${id}/heartbeat`, nodeSecrets[id], {
      region, url: `https://${id}.test:4433/v1/session`, apiUrl: `http://${id}.test:4434`, certHashes: [],
      capacity: { maxSessions: 100, maxGroups: 50, maxKbpsOut: 100000 },
      load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0 }, draining: false,
    });
  const clinic = (await call("PUT", "/v1/admin/clinics/app-test", ADMIN, { name: "App test" })).body;
  const terminal = async (label: string) => (await call("POST", "/v1/terminals", clinic.apiKey, { label, kind: "doctor" })).body as { id: string; secret: string };
  const requester = await terminal("Requester");
  const consultant = await terminal("Consultant");
  const body = (over: Record<string, unknown> = {}) => ({ patient: testPatient(), requester: { terminalId: requester.id }, consultant: { terminalId: consultant.id }, region: "eu", ...over });
  const count = async (table: "consultations" | "participants" | "tokens" | "audit_log") =>
    Number((await base.db.selectFrom(table).select((eb) => eb.fn.countAll().as("n")).executeTakeFirstOrThrow()).n);
  return { app, call, clock, raw, base, state, nodeApi, nodeSecrets, heartbeat, clinic, requester, consultant, body, count, lines };
}

