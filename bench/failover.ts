// `npm run bench:failover`: a live two-terminal consultation, the media node hosting it killed
// (SIGKILL) under it, 20 times. Real parts: edge (Deno + SQLite), three media nodes (Deno,
// QUIC) on loopback, two headless terminals (FailoverSession on Deno's WebTransport) sending
// audio frames every 20 ms both ways. Each run is a fresh consultation; the killed node is
// restarted for the next run. Interruption = from the kill to media flowing both ways again
// (a frame sent after the kill received by each terminal). Lost = consultations whose media did
// not come back (or that ended); duplicated = consultations recorded beyond one per run.
// Prints a table; the last line is one JSON object. Target: p95 < 3000 ms, nothing lost or
// duplicated. Runs under Deno (it needs a QUIC client): RUNS=n overrides the run count.
import { startMediaNode, startStack, waitForNodeRegistered } from "../scripts/stack.ts";
import { ClinicClient, testPatient } from "../test/support/clinic-client.ts";
import { interruptionAfter, now, startCall, type Call } from "../test/routing/support.ts";

declare const Deno: { env: { get(name: string): string | undefined }; exit(code: number): never };

const RUNS = Number(Deno.env.get("RUNS") ?? 20);
const fast = { MEDIA_HEARTBEAT_MS: "400", MEDIA_PING_INTERVAL_MS: "500" };
const stack = await startStack({
  edge: "deno",
  edgeEnv: { NODE_STALE_MS: "2000" },
  nodes: [{ id: "node-a", env: fast }, { id: "node-b", env: fast }, { id: "node-c", env: fast }],
});
const clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
const requester = await clinic.registerTerminal("Bench clinic", "doctor");
const consultant = await clinic.registerTerminal("Bench specialist", "specialist");

interface Row { run: number; killed: string; movedTo: string; interruptionMs: number; rejoinA: number; rejoinB: number; ok: boolean }
const rows: Row[] = [];
let lost = 0;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};

try {
  for (let run = 1; run <= RUNS; run++) {
    const r = await clinic.createConsultation({ patient: testPatient(`B${run}`), requester: { terminalId: requester.id }, consultant: { terminalId: consultant.id } }, `bench-failover-${run}`);
    if (r.status !== 201) throw new Error(`run ${run}: create ${r.status} ${JSON.stringify(r.body)}`);
    const created = r.body;
    const killed = created.group.node.id;
    let call: Call | undefined;
    let row: Row = { run, killed, movedTo: "-", interruptionMs: NaN, rejoinA: NaN, rejoinB: NaN, ok: false };
    try {
      call = await startCall(stack.edgeUrl, created);
      await new Promise((res) => setTimeout(res, 500));
      const node = stack.nodes.find((n) => n.id === killed)!;
      const t = now();
      await node.kill();
      const ms = await interruptionAfter(call, t, 10_000);
      const [ma, mb] = call.moves();
      row = { run, killed, movedTo: ma!.at(-1)?.to ?? "-", interruptionMs: Math.round(ms), rejoinA: ma!.at(-1)?.rejoinMs ?? NaN, rejoinB: mb!.at(-1)?.rejoinMs ?? NaN, ok: true };
      const rec = await clinic.getConsultation(created.id);
      if (rec.body.status === "ended" || rec.body.group.node.id === killed) row.ok = false;
    } catch (err) {
      console.error(`run ${run}: ${(err as Error).message}`);
    }
    if (!row.ok) lost++;
    rows.push(row);
    await call?.stop().catch(() => {});
    await clinic.endConsultation(created.id);
    // Bring the killed node back (new ports, same credential) for the next run.
    const i = stack.nodes.findIndex((n) => n.id === killed);
    const cred = stack.credentials.find((c) => c.nodeId === killed)!;
    stack.nodes[i] = await startMediaNode({ credential: cred, edgeUrl: stack.edgeUrl, env: fast });
    await waitForNodeRegistered(stack.edge, stack.adminKey, killed);
    // Wait for its fresh heartbeat (the edge keeps the old URL until then).
    await new Promise((res) => setTimeout(res, 500));
    console.error(`run ${run}/${RUNS}: ${row.ok ? `${row.interruptionMs} ms` : "LOST"}`);
  }
  const list = (await clinic.call("GET", "/v1/consultations?limit=200")).body.consultations as { id: string }[];
  const duplicated = Math.max(0, list.length - RUNS);

  console.log("run  killed  moved to  interruption ms  rejoin ms (a/b)");
  for (const r of rows) {
    console.log(`${String(r.run).padStart(3)}  ${r.killed.padEnd(6)}  ${r.movedTo.padEnd(8)}  ${String(r.ok ? r.interruptionMs : "lost").padStart(15)}  ${r.rejoinA}/${r.rejoinB}`);
  }
  const ok = rows.filter((r) => r.ok).map((r) => r.interruptionMs);
  console.log(`p50 ${pct(ok, 50)} ms, p95 ${pct(ok, 95)} ms, max ${Math.max(...ok)} ms over ${ok.length} runs; lost ${lost}, duplicated ${duplicated}`);
  console.log(JSON.stringify({ runs: rows.length, interruptionP50Ms: pct(ok, 50), interruptionP95Ms: pct(ok, 95), lost, duplicated }));
} finally {
  await stack.stop();
}
Deno.exit(0);
