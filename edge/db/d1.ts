// Store over Cloudflare D1 (Workers binding).
import { Kysely } from "kysely";
import { D1Dialect } from "kysely-d1";
import type { D1Database } from "@cloudflare/workers-types";
import type { Database } from "./schema.ts";
import type { Store } from "./store.ts";

export function d1Store(d1: D1Database): Store {
  const db = new Kysely<Database>({ dialect: new D1Dialect({ database: d1 }) });
  return {
    db,
    async batch(queries) {
      if (queries.length === 0) return;
      // One D1 batch is one SQLite transaction: all statements or none.
      await d1.batch(queries.map((q) => d1.prepare(q.sql).bind(...q.parameters.map(toD1))));
    },
  };
}

function toD1(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  return v;
}
