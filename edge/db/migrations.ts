// The schema's history, applied in order at startup (Deno) or on a Worker's first request.
// Each migration runs as one atomic batch whose first statement records it; a concurrent
// runner (another isolate) fails on that primary key, its batch rolls back, and it re-reads.
import { sql } from "kysely";
import type { Store } from "./store.ts";

export interface Migration {
  id: number;
  name: string;
  statements: string[];
}

export const MIGRATIONS: Migration[] = [
  {
    id: 1,
    name: "initial",
    statements: [
      `CREATE TABLE clinics (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        rate_limit INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      )`,
      `CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics(id),
        key_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
      )`,
      `CREATE INDEX api_keys_clinic ON api_keys (clinic_id)`,
      `CREATE TABLE terminals (
        id TEXT PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics(id),
        label TEXT NOT NULL,
        kind TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      )`,
      `CREATE INDEX terminals_clinic ON terminals (clinic_id, id)`,
      `CREATE TABLE consultations (
        id TEXT PRIMARY KEY,
        clinic_id TEXT NOT NULL REFERENCES clinics(id),
        status TEXT NOT NULL CHECK (status IN ('pending', 'connected', 'ended')),
        patient_ref TEXT NOT NULL,
        patient_enc TEXT NOT NULL,
        details_enc TEXT,
        region TEXT,
        node_id TEXT NOT NULL,
        node_url TEXT NOT NULL,
        node_api_url TEXT NOT NULL,
        cert_hashes TEXT NOT NULL,
        group_id TEXT NOT NULL UNIQUE,
        attributes TEXT NOT NULL,
        idempotency_key TEXT,
        request_hash TEXT,
        created_at INTEGER NOT NULL,
        connected_at INTEGER,
        ended_at INTEGER,
        end_reason TEXT,
        UNIQUE (clinic_id, idempotency_key)
      )`,
      `CREATE INDEX consultations_clinic ON consultations (clinic_id, created_at)`,
      `CREATE INDEX consultations_node_ended ON consultations (node_id, ended_at)`,
      `CREATE TABLE participants (
        consultation_id TEXT NOT NULL REFERENCES consultations(id),
        clinic_id TEXT NOT NULL,
        terminal_id TEXT NOT NULL REFERENCES terminals(id),
        role TEXT NOT NULL CHECK (role IN ('requester', 'consultant')),
        joined_at INTEGER,
        left_at INTEGER,
        PRIMARY KEY (consultation_id, role)
      )`,
      `CREATE INDEX participants_terminal ON participants (terminal_id)`,
      `CREATE TABLE tokens (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        jti TEXT NOT NULL UNIQUE,
        clinic_id TEXT NOT NULL,
        consultation_id TEXT NOT NULL REFERENCES consultations(id),
        terminal_id TEXT NOT NULL REFERENCES terminals(id),
        role TEXT NOT NULL,
        token_enc TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        first_used_at INTEGER,
        delivered_at INTEGER,
        revoked_at INTEGER
      )`,
      `CREATE INDEX tokens_terminal ON tokens (terminal_id, seq)`,
      `CREATE INDEX tokens_consultation ON tokens (consultation_id)`,
      `CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL`,
      `CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        clinic_id TEXT NOT NULL,
        consultation_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        action TEXT NOT NULL,
        terminal_id TEXT,
        detail TEXT
      )`,
      `CREATE INDEX audit_log_consultation ON audit_log (clinic_id, consultation_id, id)`,
      // Append-only in the database itself, not only by convention in the code.
      `CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END`,
      `CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END`,
      `CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        region TEXT NOT NULL,
        url TEXT NOT NULL,
        api_url TEXT NOT NULL,
        cert_hashes TEXT NOT NULL,
        capacity TEXT NOT NULL,
        load TEXT NOT NULL,
        draining INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        registered_at INTEGER NOT NULL
      )`,
      `CREATE TABLE node_events (
        node_id TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        consultation_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (node_id, id)
      )`,
      `CREATE TABLE path_measurements (
        clinic_id TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        rtt_ms REAL NOT NULL,
        jitter_ms REAL NOT NULL,
        loss REAL NOT NULL,
        measured_at INTEGER NOT NULL,
        PRIMARY KEY (terminal_id, node_id)
      )`,
      `CREATE TABLE rate_limits (
        bucket TEXT NOT NULL,
        window INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (bucket, window)
      )`,
    ],
  },
  {
    id: 2,
    name: "cascade legs",
    statements: [
      // A cascaded consultation's terminals that sit on a node other than the consultation's
      // node (src/routing/cascade.ts, edge/cascade.ts).
      `CREATE TABLE consultation_legs (
        consultation_id TEXT NOT NULL REFERENCES consultations(id),
        clinic_id TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        node_url TEXT NOT NULL,
        node_api_url TEXT NOT NULL,
        cert_hashes TEXT NOT NULL,
        PRIMARY KEY (consultation_id, terminal_id)
      )`,
      `CREATE INDEX consultation_legs_node ON consultation_legs (node_id)`,
    ],
  },
  {
    id: 3,
    name: "node report replay guard",
    statements: [
      // The jti of every signed node report still within its lifetime: a captured report
      // cannot be sent again (src/node-credential.ts, edge/auth.ts).
      `CREATE TABLE node_report_jtis (
        jti TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      )`,
      `CREATE INDEX node_report_jtis_expiry ON node_report_jtis (expires_at)`,
    ],
  },
  {
    id: 4,
    name: "node TCP fallback URL",
    statements: [
      // WebTransport over WebSocket on TCP, for terminals whose network blocks UDP (null: none).
      `ALTER TABLE nodes ADD COLUMN fallback_url TEXT`,
    ],
  },
];

async function appliedIds(store: Store): Promise<Set<number>> {
  await sql`CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`.execute(store.db);
  const rows = await store.db.selectFrom("schema_migrations").select("id").execute();
  return new Set(rows.map((r) => r.id));
}

/** Applies what is missing; safe to call from several isolates at once. Returns ids applied here. */
export async function migrate(store: Store, now = Date.now()): Promise<number[]> {
  const done = await appliedIds(store);
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (done.has(m.id)) continue;
    const record = store.db.insertInto("schema_migrations").values({ id: m.id, name: m.name, applied_at: now }).compile();
    try {
      await store.batch([record, ...m.statements.map((s) => sql.raw(s).compile(store.db))]);
      applied.push(m.id);
    } catch (err) {
      // Lost the race to another runner (its record or tables exist): fine if it is now applied.
      if (!(await appliedIds(store)).has(m.id)) throw err;
    }
  }
  return applied;
}
