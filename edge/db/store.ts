// What the query code needs from a database, whatever runs it: Kysely for queries, and one
// atomic multi-statement write. D1 refuses BEGIN, so atomicity is a D1 batch there and a
// transaction on SQLite; the dialect files decide which.
import type { CompiledQuery, Kysely } from "kysely";
import type { Database } from "./schema.ts";

export interface Store {
  db: Kysely<Database>;
  /** Runs every query or none. */
  batch(queries: CompiledQuery[]): Promise<void>;
}

/** Both SQLite and D1 report constraint failures with this text. */
export function isUniqueViolation(err: unknown): boolean {
  return /UNIQUE constraint failed|PRIMARY KEY/i.test(String((err as { message?: string })?.message ?? err));
}
