// Concurrent consultation requests with retries on the real edge (Deno/SQLite) and a real
// media node: no duplicate, no lost request; every group the edge reserved but did not keep is
// released on the node. 100 here (seconds); `npm run bench:trust` runs 1,000 and reports p99.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ClinicClient } from "../support/clinic-client.ts";
import { concurrentCreates } from "./load.ts";
import { TrustStack } from "./stack.ts";
import { sleep } from "../media/support.ts";

const N = Number(process.env.TRUST_CONCURRENT ?? 100);

test(`${N} concurrent requests, some answers lost, some sent twice: each made once, none lost`, async () => {
  const stack = await TrustStack.start({ nodeEnv: { MAX_GROUPS: String(N * 4), MAX_SESSIONS: String(N * 8) } });
  try {
    const clinic = await stack.clinic("load", 1_000_000);
    const c = new ClinicClient(stack.edgeUrl, clinic.apiKey);
    const t1 = await c.registerTerminal("Load room 1", "doctor");
    const t2 = await c.registerTerminal("Load room 2", "specialist");
    const r = await concurrentCreates({ edgeUrl: stack.edgeUrl, apiKey: clinic.apiKey, terminals: [t1.id, t2.id], requests: N, seed: 7 });
    console.log(`${N} requests, ${r.attempts} attempts (${r.cutAnswers} answers cut, ${r.concurrentDuplicates} sent twice at once), p50 ${r.latencyMs.p50.toFixed(0)} ms, p99 ${r.latencyMs.p99.toFixed(0)} ms, ${r.seconds.toFixed(1)} s`);
    assert.ok(r.cutAnswers > 0 && r.concurrentDuplicates > 0, "the faults were injected");
    assert.is(r.lost, 0, "a request never made it");
    assert.is(r.duplicates, 0, "a request made twice");
    assert.is(r.orphans, 0, "a consultation no client was told about");
    assert.is(r.listed, N);
    // Groups reserved for attempts that lost the race are released on the node (they would hold its capacity).
    let groups = -1;
    for (let i = 0; i < 30 && groups !== N; i++) {
      groups = (await stack.nodeStats()).groups;
      if (groups !== N) await sleep(200);
    }
    assert.is(groups, N, "groups held by the node = consultations recorded");
  } finally {
    await stack.stop();
  }
});

test.run();
