// Store over a SQLite file through the runtime's built-in `node:sqlite` (Deno, Node ≥ 22).
// Kysely's SqliteDialect expects better-sqlite3's statement shape (a `reader` flag, arrays of
// parameters); the adapter below gives `DatabaseSync` that shape.
import { Kysely, SqliteDialect, type SqliteDatabase, type SqliteStatement } from "kysely";
import type { Database } from "./schema.ts";
import type { Store } from "./store.ts";

/** The part of node:sqlite's DatabaseSync this adapter uses. */
export interface DatabaseSyncLike {
  prepare(sql: string): StatementSyncLike;
  exec(sql: string): void;
  close(): void;
}
interface StatementSyncLike {
  columns(): unknown[];
  all(...params: unknown[]): unknown[];
  run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  iterate(...params: unknown[]): IterableIterator<unknown>;
}

function toSqlite(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  return v;
}

export function adaptDatabaseSync(raw: DatabaseSyncLike): SqliteDatabase {
  return {
    close: () => raw.close(),
    prepare(sqlText: string): SqliteStatement {
      const stmt = raw.prepare(sqlText);
      const args = (p: ReadonlyArray<unknown>) => p.map(toSqlite);
      return {
        // A statement that yields columns returns rows (SELECT, RETURNING, some PRAGMAs).
        reader: stmt.columns().length > 0,
        all: (p) => stmt.all(...args(p)),
        run: (p) => stmt.run(...args(p)),
        iterate: (p) => stmt.iterate(...args(p)),
      };
    },
  };
}

export function sqliteStore(raw: DatabaseSyncLike): Store {
  raw.exec("PRAGMA journal_mode = WAL");
  raw.exec("PRAGMA foreign_keys = ON");
  raw.exec("PRAGMA busy_timeout = 5000");
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: adaptDatabaseSync(raw) }) });
  return {
    db,
    async batch(queries) {
      if (queries.length === 0) return;
      await db.transaction().execute(async (trx) => {
        for (const q of queries) await trx.executeQuery(q);
      });
    },
  };
}
