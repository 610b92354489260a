// Fixed-window counters in the database, so every Worker isolate (and the Deno process)
// counts against the same budget. All counters a request is charged to move in one statement
// (one write, one round trip to D1).
import type { Store } from "./db/store.ts";
import { tooManyRequests } from "./errors.ts";

export interface Charge {
  bucket: string;
  limit: number;
}

export async function hitRateLimits(store: Store, charges: Charge[], windowSec: number, nowMs: number): Promise<void> {
  if (charges.length === 0) return;
  const windowMs = windowSec * 1000;
  const window = Math.floor(nowMs / windowMs);
  const rows = await store.db
    .insertInto("rate_limits")
    .values(charges.map((c) => ({ bucket: c.bucket, window, count: 1 })))
    .onConflict((oc) => oc.columns(["bucket", "window"]).doUpdateSet((eb) => ({ count: eb("rate_limits.count", "+", 1) })))
    .returning(["bucket", "count"])
    .execute();
  if (rows.some((r) => r.count === 1)) {
    // First hit of a new window: drop finished windows so the table stays small.
    await store.db.deleteFrom("rate_limits").where("window", "<", window).execute();
  }
  const over = rows.some((r) => r.count > (charges.find((c) => c.bucket === r.bucket)?.limit ?? Infinity));
  if (over) throw tooManyRequests(Math.max(1, Math.ceil(((window + 1) * windowMs - nowMs) / 1000)));
}
