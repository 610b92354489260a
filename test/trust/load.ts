// Many consultation requests at once, each retried the way a clinic's system would: some first
// attempts lose their answer (the client gives up mid-flight and sends again), some are sent
// twice at once, 429/5xx are retried after a pause. Every request carries its own
// Idempotency-Key. Afterwards the edge's own list is compared with what the clients were told:
// no duplicate, no lost request. Used by test/trust/concurrency.deno.test.ts and bench/trust.ts.
import { ClinicClient, testPatient } from "../support/clinic-client.ts";
import { prng } from "../support/prng.ts";

export interface LoadOptions {
  edgeUrl: string;
  apiKey: string;
  terminals: [string, string];
  requests: number;
  seed?: number;
  /** Share of first attempts cut after a few ms (their answer is lost; the edge may have acted). */
  abortRate?: number;
  /** Share of requests sent twice at once. */
  duplicateRate?: number;
  maxAttempts?: number;
}

export interface LoadResult {
  requests: number;
  attempts: number;
  /** Attempts whose answer was lost on purpose (faults injected). */
  cutAnswers: number;
  concurrentDuplicates: number;
  retriesAfterStatus: Record<string, number>;
  /** Requests that never got a 201. */
  lost: number;
  /** Requests answered with more than one consultation id. */
  duplicates: number;
  /** Consultations the edge holds that no client was told about (created twice). */
  orphans: number;
  /** Consultations the edge lists for the clinic. */
  listed: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  seconds: number;
  ids: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function concurrentCreates(o: LoadOptions): Promise<LoadResult> {
  const rand = prng(o.seed ?? 1000);
  const abortRate = o.abortRate ?? 0.2;
  const duplicateRate = o.duplicateRate ?? 0.2;
  const maxAttempts = o.maxAttempts ?? 40;
  const res: LoadResult = {
    requests: o.requests, attempts: 0, cutAnswers: 0, concurrentDuplicates: 0, retriesAfterStatus: {}, lost: 0, duplicates: 0, orphans: 0,
    listed: 0, latencyMs: { p50: 0, p90: 0, p99: 0, max: 0 }, seconds: 0, ids: [],
  };
  // Decide every request's faults up front, so a seed gives the same run.
  const plans = Array.from({ length: o.requests }, () => ({ cutAfterMs: rand() < abortRate ? Math.floor(rand() * 40) : -1, duplicate: rand() < duplicateRate }));
  const latencies: number[] = [];
  const answered = new Map<string, Set<string>>();
  const started = performance.now();

  async function attempt(key: string, body: unknown, cutAfterMs: number): Promise<{ status: number; id?: string; retryAfter?: number }> {
    res.attempts++;
    const ctl = new AbortController();
    const timer = cutAfterMs >= 0 ? setTimeout(() => ctl.abort(), cutAfterMs) : undefined;
    try {
      const r = await fetch(`${o.edgeUrl}/v1/consultations`, {
        method: "POST",
        headers: { authorization: `Bearer ${o.apiKey}`, "content-type": "application/json", "idempotency-key": key },
        body: JSON.stringify(body),
        signal: ctl.signal,
      });
      const text = await r.text();
      const parsed = text ? JSON.parse(text) : {};
      return { status: r.status, id: r.status === 201 ? parsed.id : undefined, retryAfter: Number(r.headers.get("retry-after")) || undefined };
    } catch {
      if (cutAfterMs >= 0) res.cutAnswers++;
      return { status: 0 };
    } finally {
      clearTimeout(timer);
    }
  }

  async function one(i: number): Promise<void> {
    const key = `load-${o.seed ?? 1000}-${i}`;
    const body = { patient: testPatient(`L${i}`), requester: { terminalId: o.terminals[0] }, consultant: { terminalId: o.terminals[1] }, region: "local" };
    const ids = new Set<string>();
    answered.set(key, ids);
    const t0 = performance.now();
    const plan = plans[i]!;
    let done = false;
    const note = (r: { status: number; id?: string }) => {
      if (r.id) {
        ids.add(r.id);
        if (!done) latencies.push(performance.now() - t0);
        done = true;
      }
    };
    const twin = plan.duplicate ? (res.concurrentDuplicates++, attempt(key, body, -1).then(note)) : Promise.resolve();
    let backoff = 50;
    for (let n = 0; n < maxAttempts && !done; n++) {
      const r = await attempt(key, body, n === 0 ? plan.cutAfterMs : -1);
      note(r);
      if (done) break;
      res.retriesAfterStatus[r.status] = (res.retriesAfterStatus[r.status] ?? 0) + 1;
      await sleep(r.retryAfter ? Math.min(2000, r.retryAfter * 1000) : backoff + rand() * backoff);
      backoff = Math.min(2000, backoff * 2);
    }
    await twin;
  }

  await Promise.all(Array.from({ length: o.requests }, (_, i) => one(i)));
  res.seconds = (performance.now() - started) / 1000;
  const sorted = latencies.sort((a, b) => a - b);
  res.latencyMs = { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted.at(-1) ?? 0 };
  for (const ids of answered.values()) {
    if (ids.size === 0) res.lost++;
    if (ids.size > 1) res.duplicates++;
    res.ids.push(...ids);
  }

  // The edge's own view: every consultation of this clinic, page by page.
  const clinic = new ClinicClient(o.edgeUrl, o.apiKey);
  const listed: string[] = [];
  let before: string | undefined;
  for (;;) {
    const page = await clinic.call("GET", `/v1/consultations?limit=200${before ? `&before=${before}` : ""}`);
    if (page.status === 429) { await sleep(1000); continue; }
    if (page.status !== 200) throw new Error(`listing: ${page.status}`);
    listed.push(...page.body.consultations.map((c: { id: string }) => c.id));
    if (!page.body.next) break;
    before = page.body.next;
  }
  res.listed = listed.length;
  const told = new Set(res.ids);
  res.orphans = listed.filter((id) => !told.has(id)).length;
  res.duplicates += listed.length - new Set(listed).size;
  res.lost += res.ids.filter((id) => !listed.includes(id)).length;
  return res;
}
