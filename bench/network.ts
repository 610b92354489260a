// `npm run bench:network`: media quality per network profile, with adaptation on and off.
// Two headless terminals (Deno WebTransport, synthetic audio/video following the node's target;
// see test/network/harness.ts) join one consultation on a real media node, each behind its own
// seeded userspace impairment relay with the profile. "Adaptation off" is the terminal as it
// was before this work: a fixed 720p at 2.5 Mbit/s, loopback reorder/nack timing, no audio
// redundancy, QUIC's default congestion control (the node's per-subscriber policy is the same
// in both runs). Adaptation on: see the sender model in test/network/harness.ts.
// Latency is capture to decode (one clock: both terminals run in one process); a freeze is a
// gap between decoded frames over max(3 frame intervals, 1 + 150 ms), the wait for the first
// frame included.
// Per profile the table shows the worse of the two directions for freezes and latency and the
// mean for frame rate and audio. Prints both tables; the last line is one JSON object with
// adaptation on. Env: NETWORK_BENCH_MS (call length per profile, default 12000),
// NETWORK_BENCH_PROFILES (comma-separated names, default all).
import { spawn } from "node:child_process";
import { join } from "node:path";
import { cpus, loadavg } from "node:os";
import { DENO, ROOT } from "../scripts/stack.ts";

const DURATION_MS = Number(process.env.NETWORK_BENCH_MS ?? 12_000);
const ORDER = ["clean", "3% loss", "10% loss", "200 ms RTT + jitter", "1 Mbit/s uplink", "300 kbit/s uplink", "1 Mbit/s + 3% loss", "bandwidth drop"];
const NAMES = process.env.NETWORK_BENCH_PROFILES ? process.env.NETWORK_BENCH_PROFILES.split(",").map((s) => s.trim()) : ORDER;

interface Direction { resolution: string; fps: number; freezePct: number; maxFreezeMs: number; audioDecodedPct: number; p95LatencyMs: number }
interface Line { name: string; adaptive: boolean; ab: Direction; ba: Direction }
interface Row { name: string; resolution: string; fps: number; freezePct: number; maxFreezeMs: number; audioDecodedPct: number; p95LatencyMs: number }

function run(mode: "on" | "off"): Promise<Line[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(DENO, ["run", "--allow-all", "--unstable-net", join(ROOT, "bench", "network-terminals.ts"), mode, String(DURATION_MS), ...NAMES], {
      cwd: ROOT, stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: Line[] = [];
    let buf = "";
    child.stdout.on("data", (b: Buffer) => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (l.startsWith("{")) {
          const parsed = JSON.parse(l) as Line;
          lines.push(parsed);
          process.stderr.write(`  ${mode}: ${parsed.name} done\n`);
        }
      }
    });
    let err = "";
    child.stderr.on("data", (b: Buffer) => { err += b.toString(); });
    child.on("exit", (code) => (code === 0 ? resolve(lines) : reject(new Error(`network-terminals ${mode} exited ${code}: ${err.slice(-2000)}`))));
  });
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

function row(l: Line): Row {
  const [a, b] = [l.ab, l.ba];
  return {
    name: l.name,
    resolution: a.resolution,
    fps: round((a.fps + b.fps) / 2),
    freezePct: round(Math.max(a.freezePct, b.freezePct)),
    maxFreezeMs: Math.max(a.maxFreezeMs, b.maxFreezeMs),
    audioDecodedPct: round((a.audioDecodedPct + b.audioDecodedPct) / 2),
    p95LatencyMs: Math.max(a.p95LatencyMs, b.p95LatencyMs),
  };
}

function table(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  const head = ["profile", "resolution", "fps", "freeze %", "longest freeze ms", "audio decoded %", "latency p95 ms"];
  const cells = rows.map((r) => [r.name, r.resolution, String(r.fps), String(r.freezePct), String(r.maxFreezeMs), String(r.audioDecodedPct), String(r.p95LatencyMs)]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const fmt = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join("  ");
  console.log(fmt(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const c of cells) console.log(fmt(c));
}

console.log(`bench:network — ${NAMES.length} profiles × ${DURATION_MS / 1000} s, adaptation on and off; ${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)}`);
const on = (await run("on")).map(row);
const off = (await run("off")).map(row);
table("adaptation ON (estimate → encoder rung and pacing, RTT-driven reorder/nack, audio redundancy)", on);
table("adaptation OFF (fixed 720p at 2.5 Mbit/s, loopback timing, no redundancy)", off);
const key = on.find((r) => r.name === "1 Mbit/s + 3% loss");
if (key) {
  const ok = key.maxFreezeMs <= 1000 && key.p95LatencyMs < 250;
  console.log(`\n"1 Mbit/s + 3% loss" target (longest freeze ≤ 1000 ms, p95 < 250 ms): ${ok ? "met" : "NOT met"} (${key.maxFreezeMs} ms, ${key.p95LatencyMs} ms)`);
}
console.log(JSON.stringify({ profiles: on }));
