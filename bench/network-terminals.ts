// The Deno half of `npm run bench:network` (bench/network.ts starts it): runs one call per
// profile through the impairment relay with adaptation on or off and prints one JSON line per
// profile. Usage: deno run --allow-all --unstable-net bench/network-terminals.ts <on|off> <durationMs> <profile>…
import { NetworkLab } from "../test/network/harness.ts";
import { denoApi } from "../media/transport/deno.ts";
import { BENCH_PROFILES, scaled } from "../test/network/profiles.ts";

const Deno = denoApi() as unknown as { args: string[]; exit(code: number): never };
const [mode = "on", duration = "10000", ...names] = Deno.args;
const lab = await NetworkLab.start();
try {
  for (const name of names.length ? names : Object.keys(BENCH_PROFILES)) {
    const p = BENCH_PROFILES[name];
    if (!p) throw new Error(`unknown profile ${name}`);
    const q = scaled(p, Number(duration));
    const r = await lab.call(q.profile, { adaptive: mode === "on", durationMs: Number(duration), changes: q.changes });
    console.log(JSON.stringify({ name, adaptive: mode === "on", ...r }));
  }
} finally {
  await lab.stop();
}
Deno.exit(0);
