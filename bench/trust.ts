// `npm run bench:trust` (Deno): the attacks and faults of issue 6 against a real stack — the
// edge on Deno/SQLite and one media node (QUIC), every plaintext HTTP byte between them going
// through capturing proxies (test/trust/stack.ts) — and a table of what was tried and what
// got through. Counts are counts of real attempts:
//   bad inputs     fuzzed HTTP to every edge endpoint, fuzzed control messages and media
//                  datagrams to the node over QUIC, and the in-process decoders (control
//                  messages, stream framing, media header/reassembly); crashed = a 5xx or
//                  malformed answer, no answer, an exception of the wrong kind, a process
//                  that died, or a node that stopped forwarding;
//   token attacks  test/trust/attacks.ts on the node (join) and the edge; accepted = admitted/2xx;
//   cross-clinic   test/trust/tenancy.ts: clinic B on every endpoint with clinic A's ids;
//                  leaked = a 2xx or an answer carrying A's ids/PHI, or A's record changed;
//   faults         1,000 concurrent consultation requests with lost answers and duplicate
//                  sends; the edge killed mid-call; lost edge → node revocation calls; store
//                  writes failing halfway or losing their answer (in-process edge, SQLite);
//                  lost = a request missing or doubled, a frame or node event missing, a
//                  revoked session left open, a record half-written.
// The edge runs on Deno/SQLite here: the workerd edge's local D1 (miniflare) manages only
// ~30 consultation creates/s on this machine, which would make the 1,000-request run a
// measurement of the local simulator. The trust tests run the same code paths in seconds.
// Env: TRUST_REQUESTS (1000), TRUST_FUZZ (300 per endpoint). The last line is one JSON object.
import { Packr } from "msgpackr";
import { decodeTerminalMessage, encodeControl, ProtocolError } from "../src/protocol/control.ts";
import { frame, FrameDecoder, FramingError } from "../src/protocol/framing.ts";
import { fragmentFrame, MediaHeaderError, readHeader, Reassembler } from "../src/protocol/media.ts";
import { ClinicClient } from "../test/support/clinic-client.ts";
import { mutate, prng, randomBytesFrom } from "../test/support/prng.ts";
import { runTokenAttacks } from "../test/trust/attacks.ts";
import { edgeCrashDuringCall, lostRevocationPushes, type FaultResult } from "../test/trust/faults.ts";
import { fuzzEdge, fuzzNode } from "../test/trust/fuzz-net.ts";
import { concurrentCreates } from "../test/trust/load.ts";
import { TrustStack } from "../test/trust/stack.ts";
import { runCrossTenantReads } from "../test/trust/tenancy.ts";

const env = (globalThis as unknown as { Deno: { env: { get(n: string): string | undefined }; exit(c: number): never } }).Deno;
const REQUESTS = Number(env.env.get("TRUST_REQUESTS") ?? 1000);
const FUZZ = Number(env.env.get("TRUST_FUZZ") ?? 300);
const log = (s: string) => console.log(s);

/** The parsers a peer reaches, in process: decoded or refused with their own error class. */
function fuzzDecoders(iterations: number) {
  let tried = 0;
  let crashes = 0;
  const only = (cls: new (...a: never[]) => Error, fn: () => unknown) => {
    tried++;
    try { fn(); } catch (e) { if (!(e instanceof cls) && !(e instanceof RangeError && cls === ProtocolError)) crashes++; }
  };
  const samples = [
    encodeControl({ t: "join", v: 1, token: "eyJhbGciOiJFZERTQSJ9.e30.sig", sdk: "x" }),
    encodeControl({ t: "signal", kind: "k", body: { a: [1, { b: "c" }] }, to: 1 }),
    new Packr({ useRecords: false }).pack({ t: "stats", report: { a: 1 } }),
  ];
  for (const seed of [1, 7, 2026]) {
    const rand = prng(seed);
    const r = new Reassembler({ maxPending: 16, maxFrameBytes: 64 * 1024 });
    const good = fragmentFrame({ flags: 1, track: 1, source: 0, sequence: 1, timestamp: 1000 }, randomBytesFrom(rand, 5000), 1200);
    for (let i = 0; i < iterations; i++) {
      const ctl = i % 2 ? mutate(rand, samples[i % samples.length]!) : randomBytesFrom(rand, Math.floor(rand() * 64));
      only(ProtocolError, () => decodeTerminalMessage(ctl));
      const d = i % 3 === 0 ? randomBytesFrom(rand, Math.floor(rand() * 1300)) : mutate(rand, good[i % good.length]!);
      only(MediaHeaderError, () => readHeader(d));
      only(MediaHeaderError, () => r.push(d, i));
      const fd = new FrameDecoder(4096);
      only(FramingError, () => { fd.push(randomBytesFrom(rand, Math.floor(rand() * 40))); fd.push(frame(randomBytesFrom(rand, Math.floor(rand() * 100)))); });
    }
  }
  return { tried, crashes };
}

/** Store writes failing halfway and writes whose answer is lost, on the in-process edge (SQLite). */
async function halfwayWrites(rounds: number): Promise<FaultResult> {
  const { makeEdge } = await import("../test/edge/harness.ts");
  let lost = 0;
  for (let i = 0; i < rounds; i++) {
    const e = await makeEdge();
    await e.heartbeat("node-a");
    const key = { "idempotency-key": `half-${i}` };
    if (i % 2 === 0) e.state.failNext = true;
    else e.state.loseAnswerNext = true;
    const first = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), key);
    if (i % 2 === 0 && (first.status !== 500 || (await e.count("consultations")) !== 0 || (await e.count("tokens")) !== 0 || (await e.count("audit_log")) !== 0)) lost++;
    const retry = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), key);
    const again = await e.call("POST", "/v1/consultations", e.clinic.apiKey, e.body(), key);
    if (retry.status !== 201 || again.body?.id !== retry.body?.id) lost++;
    if ((await e.count("consultations")) !== 1 || (await e.count("tokens")) !== 2) lost++;
    e.raw.close();
  }
  return { name: "store write failing halfway / answer lost (in-process edge)", injected: rounds, lost, detail: `${rounds} writes: half failed halfway, half landed with the answer lost; each retried with its Idempotency-Key` };
}

const started = Date.now();
log(`starting edge (Deno/SQLite) and media node …`);
const stack = await TrustStack.start({
  edgeEnv: { RATE_LIMIT_IP: "10000000" },
  nodeEnv: { MAX_GROUPS: String(REQUESTS * 3 + 500), MAX_SESSIONS: String(REQUESTS * 4 + 500), MEDIA_REVOCATION_CHECK_MS: "500" },
});
let exitCode = 0;
try {
  // 1. Bad inputs.
  log(`bad inputs: edge HTTP fuzz (${FUZZ} per endpoint) …`);
  const fe = await fuzzEdge(stack, FUZZ);
  log(`bad inputs: node QUIC fuzz …`);
  const fn = await fuzzNode(stack, Math.max(20, FUZZ / 2), FUZZ * 10);
  const fd = fuzzDecoders(FUZZ * 30);
  for (const n of [...fe.notes, ...fn.notes].slice(0, 10)) log(`  note: ${n}`);

  // 2. Token attacks.
  log(`token attacks …`);
  const ta = await runTokenAttacks(stack, new ClinicClient(stack.edgeUrl, stack.clinicApiKey));
  for (const n of ta.acceptedNames) log(`  ACCEPTED: ${n}`);

  // 3. Cross-clinic reads.
  log(`cross-clinic reads …`);
  const ct = await runCrossTenantReads(stack, 10);
  for (const n of ct.leaks) log(`  LEAK: ${n}`);

  // 4. Faults.
  log(`faults: ${REQUESTS} concurrent consultation requests with retries …`);
  const loadClinic = await stack.clinic(`load-${Date.now()}`, 1_000_000);
  const lc = new ClinicClient(stack.edgeUrl, loadClinic.apiKey);
  const lt1 = await lc.registerTerminal("Load 1", "doctor");
  const lt2 = await lc.registerTerminal("Load 2", "specialist");
  const groupsBefore = (await stack.nodeStats()).groups as number;
  const load = await concurrentCreates({ edgeUrl: stack.edgeUrl, apiKey: loadClinic.apiKey, terminals: [lt1.id, lt2.id], requests: REQUESTS, seed: 2026 });
  let groupsAfter = -1;
  for (let i = 0; i < 50 && groupsAfter !== groupsBefore + REQUESTS; i++) {
    groupsAfter = (await stack.nodeStats()).groups;
    if (groupsAfter !== groupsBefore + REQUESTS) await new Promise((r) => setTimeout(r, 200));
  }
  const groupLeak = Math.abs(groupsAfter - groupsBefore - REQUESTS);
  const loadFault: FaultResult = {
    name: `${REQUESTS} concurrent requests (answers cut, duplicates sent)`,
    injected: load.cutAnswers + load.concurrentDuplicates,
    lost: load.lost + load.duplicates + load.orphans + groupLeak,
    detail: `${load.attempts} attempts, ${load.cutAnswers} answers cut, ${load.concurrentDuplicates} sent twice at once, retried after ${JSON.stringify(load.retriesAfterStatus)}; ` +
      `${load.listed} recorded, ${load.lost} lost, ${load.duplicates} duplicated, ${load.orphans} orphans, node groups +${groupsAfter - groupsBefore}; ` +
      `latency p50 ${load.latencyMs.p50.toFixed(0)} ms, p90 ${load.latencyMs.p90.toFixed(0)} ms, p99 ${load.latencyMs.p99.toFixed(0)} ms, max ${load.latencyMs.max.toFixed(0)} ms; ${load.seconds.toFixed(1)} s (${(REQUESTS / load.seconds).toFixed(0)} requests/s)`,
  };
  log(`faults: edge killed during a call …`);
  const crash = await edgeCrashDuringCall(stack);
  log(`faults: lost revocation calls …`);
  const revs = await lostRevocationPushes(stack, 5, 3000);
  log(`faults: store writes failing halfway …`);
  const half = await halfwayWrites(10);
  const faults = [loadFault, crash, revs, half];

  const badInputs = fe.tried + fn.tried + fd.tried;
  const crashes = fe.crashes + fn.crashes + fd.crashes;
  const rows = [
    ["check", "tried", "failed", "must be"],
    ["bad inputs / crashed", String(badInputs), String(crashes), "0"],
    ["  edge HTTP (every JSON endpoint, tokens, queries)", String(fe.tried), String(fe.crashes), ""],
    ["  node QUIC (control before join, media datagrams)", String(fn.tried), String(fn.crashes), ""],
    ["  decoders in process (control, framing, media)", String(fd.tried), String(fd.crashes), ""],
    ["token attacks / accepted", String(ta.tried), String(ta.accepted), "0"],
    ["cross-clinic reads / leaked", String(ct.tried), String(ct.leaked), "0"],
    ["faults injected / data lost", String(faults.reduce((s, f) => s + f.injected, 0)), String(faults.reduce((s, f) => s + f.lost, 0)), "0"],
    ...faults.map((f) => [`  ${f.name}`, String(f.injected), String(f.lost), ""]),
  ];
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  log("");
  for (const r of rows) log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  log("");
  for (const f of faults) log(`${f.name}: ${f.detail}`);
  log(`edge HTTP answers: ${JSON.stringify(fe.statuses)}; captured ${(stack.proxies.reduce((s, p) => s + p.bytes, 0) / 1e6).toFixed(1)} MB of plaintext HTTP; ${((Date.now() - started) / 1000).toFixed(0)} s in all`);
  const result = {
    badInputs, crashes,
    tokenAttacks: ta.tried, accepted: ta.accepted,
    crossTenantReads: ct.tried, leaked: ct.leaked,
    faults: faults.reduce((s, f) => s + f.injected, 0), lost: faults.reduce((s, f) => s + f.lost, 0),
  };
  if (result.crashes || result.accepted || result.leaked || result.lost) exitCode = 1;
  log(JSON.stringify(result));
} catch (err) {
  console.error(err);
  exitCode = 2;
} finally {
  await stack.stop();
}
env.exit(exitCode);
