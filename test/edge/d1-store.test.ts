// The D1 store (edge/db/d1.ts) and the migrations on workerd's real local D1, through
// miniflare (the engine under `wrangler dev`): D1 refuses BEGIN, so atomicity rests on
// `batch()` — checked here with a statement failing halfway (see miniflare#484).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Miniflare } from "miniflare";
import { sql } from "kysely";
import type { D1Database } from "@cloudflare/workers-types";
import { d1Store } from "../../edge/db/d1.ts";
import { migrate, MIGRATIONS } from "../../edge/db/migrations.ts";
import type { Store } from "../../edge/db/store.ts";
import { isUniqueViolation } from "../../edge/db/store.ts";

const t = suite("D1 store on workerd");
let mf: Miniflare;
let store: Store;

t.before(async () => {
  mf = new Miniflare({ modules: true, script: "export default { fetch() { return new Response('') } }", d1Databases: ["DB"] });
  store = d1Store((await mf.getD1Database("DB")) as unknown as D1Database);
});
t.after(() => mf.dispose());

t("migrations apply once, also when runners race", async () => {
  const results = await Promise.all([migrate(store), migrate(store), migrate(store)]);
  assert.equal(results.flat(), MIGRATIONS.map((m) => m.id));
  assert.equal(await migrate(store), []);
  const tables = await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`.execute(store.db);
  for (const name of ["clinics", "consultations", "tokens", "audit_log", "rate_limits"]) {
    assert.ok(tables.rows.some((r) => r.name === name), `missing table ${name}`);
  }
});

t("a batch failing at its third statement leaves nothing of the first two", async () => {
  const now = Date.now();
  const clinic = (id: string) => store.db.insertInto("clinics").values({ id, slug: id, name: id, rate_limit: null, created_at: now, updated_at: now }).compile();
  await store.batch([clinic("cln_keep")]);
  let failed: unknown;
  try {
    await store.batch([clinic("cln_new1"), clinic("cln_new2"), clinic("cln_keep")]);
  } catch (err) {
    failed = err;
  }
  assert.ok(failed, "the batch should fail");
  assert.ok(isUniqueViolation(failed), String(failed));
  const ids = (await store.db.selectFrom("clinics").select("id").execute()).map((r) => r.id);
  assert.equal(ids, ["cln_keep"]);
});

t("the audit log refuses UPDATE and DELETE on D1 too", async () => {
  await store.batch([
    store.db.insertInto("audit_log").values({ clinic_id: "cln_keep", consultation_id: "cns_x", at: 1, actor_type: "clinic", actor_id: "key_x", action: "create", terminal_id: null, detail: null }).compile(),
  ]);
  for (const q of [sql`UPDATE audit_log SET action = 'x'`, sql`DELETE FROM audit_log`]) {
    let err: unknown;
    try { await q.execute(store.db); } catch (e) { err = e; }
    assert.match(String(err), /append-only/);
  }
  assert.is((await store.db.selectFrom("audit_log").select("action").executeTakeFirstOrThrow()).action, "create");
});

t("rate-limit counters upsert with RETURNING", async () => {
  const hit = () => store.db.insertInto("rate_limits").values({ bucket: "b", window: 1, count: 1 })
    .onConflict((oc) => oc.columns(["bucket", "window"]).doUpdateSet((eb) => ({ count: eb("rate_limits.count", "+", 1) })))
    .returning("count").executeTakeFirstOrThrow();
  assert.is((await hit()).count, 1);
  assert.is((await hit()).count, 2);
});

t.run();
