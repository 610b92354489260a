// `npm test`: brings what the tests need (Debian's chromium, the built page), typechecks,
// then runs every test file — Node files with tsx, Deno files (test/media/, *.deno.test.ts)
// with the pinned Deno — and ends with one "N passed, N failed" line.
//
// Real-time suites (test/browser/, test/network/: real Chromium encoders, QUIC, impairment
// relays on a shared 2-core machine) assert on timing-dependent media quality. A file of
// those that fails is run once more, and the summary names it as flaky with its first
// failure; it counts as failed only when it fails twice. Every other file gets one run.
// HZ_NO_RETRY=1 turns the second run off (to measure how often a suite fails).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT, DENO } from "./stack.ts";
import { buildClient } from "./build-client.ts";

const CHROMIUM = "/usr/bin/chromium";
const FILE_TIMEOUT_MS = 8 * 60_000;

function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  const isRoot = process.getuid?.() === 0;
  const sudo = isRoot ? [] : ["sudo", "-n"];
  console.log("chromium is missing: installing Debian's chromium (apt-get)");
  for (const args of [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]]) {
    const cmd = [...sudo, ...args];
    const r = spawnSync(cmd[0]!, cmd.slice(1), { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    if (r.status !== 0) throw new Error(`\`${cmd.join(" ")}\` failed; install chromium (Debian package) and run again`);
  }
}

function findTests(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

function isDenoTest(file: string): boolean {
  const rel = relative(join(ROOT, "test"), file);
  return rel.startsWith("media/") || file.endsWith(".deno.test.ts");
}

interface FileResult { file: string; passed: number; failed: number; skipped: number; ok: boolean; ms: number; failures: string[]; flaky?: string[] }

/** Files whose assertions measure live media quality: one more run when they fail. */
function isRealTimeTest(file: string): boolean {
  const rel = relative(join(ROOT, "test"), file);
  return rel.startsWith("browser/") || rel.startsWith("network/");
}

function runFile(file: string): Promise<FileResult> {
  const deno = isDenoTest(file);
  const [cmd, args] = deno
    ? [DENO, ["run", "--allow-all", "--unstable-net", file]]
    : [process.execPath, ["--import", "tsx", file]];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, FORCE_COLOR: "0" } });
    let out = "";
    const onData = (b: Buffer) => {
      out += b.toString();
      process.stdout.write(b);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setTimeout(() => {
      console.log(`\n!! ${relative(ROOT, file)} timed out after ${FILE_TIMEOUT_MS / 1000} s`);
      try { process.kill(-child.pid!, "SIGKILL"); } catch { /* gone */ }
    }, FILE_TIMEOUT_MS);
    child.on("exit", (code) => {
      clearTimeout(timer);
      const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
      const num = (label: string) => {
        const all = [...plain.matchAll(new RegExp(`${label}:\\s+(\\d+)`, "g"))];
        return all.reduce((s, m) => s + Number(m[1]), 0);
      };
      const total = num("Total");
      const passed = num("Passed");
      const skipped = num("Skipped");
      let failed = Math.max(0, total - passed - skipped);
      if (code !== 0 && failed === 0) failed = 1; // crashed before or after its suites
      if (total === 0 && code === 0) failed = 1; // a test file that ran no test is a failure
      // uvu prints each failure as "FAIL  <suite>  \"<test>\"".
      const failures = [...plain.matchAll(/FAIL\s+(.+)$/gm)].map((m) => m[1]!.trim());
      if (failed && !failures.length) failures.push(code === 0 ? "no test ran" : `exit code ${code}`);
      resolve({ file: relative(ROOT, file), passed, failed, skipped, ok: failed === 0, ms: Date.now() - started, failures });
    });
  });
}

async function main() {
  const only = process.argv.slice(2);
  ensureChromium();
  console.log("building the browser SDK and page");
  await buildClient();

  console.log("typechecking (tsc --noEmit)");
  const tsc = spawnSync(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", "."], { cwd: ROOT, stdio: "inherit" });
  const results: FileResult[] = [];
  if (tsc.status !== 0) results.push({ file: "typecheck", passed: 0, failed: 1, skipped: 0, ok: false, ms: 0, failures: ["tsc"] });

  let files = findTests(join(ROOT, "test"));
  if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
  for (const file of files) {
    console.log(`\n── ${relative(ROOT, file)} ${isDenoTest(file) ? "(deno)" : "(node)"}`);
    let r = await runFile(file);
    if (!r.ok && isRealTimeTest(file) && !process.env.HZ_NO_RETRY) {
      console.log(`\n── ${relative(ROOT, file)}: failed (${r.failures.join("; ")}); real-time suite, running it once more`);
      const again = await runFile(file);
      r = again.ok ? { ...again, flaky: r.failures, ms: r.ms + again.ms } : { ...again, ms: r.ms + again.ms };
    }
    results.push(r);
  }

  console.log("\n── summary");
  for (const r of results) {
    console.log(`${r.ok ? (r.flaky ? "ok* " : "ok  ") : "FAIL"} ${r.file.padEnd(48)} ${String(r.passed).padStart(4)} passed ${String(r.failed).padStart(3)} failed  ${(r.ms / 1000).toFixed(1)} s`);
  }
  const flaky = results.filter((r) => r.flaky);
  if (flaky.length) {
    console.log(`\nflaky (failed once, passed on the second run):`);
    for (const r of flaky) console.log(`  ${r.file}: ${r.flaky!.join("; ")}`);
  }
  const passed = results.reduce((s, r) => s + r.passed, 0);
  const failed = results.reduce((s, r) => s + r.failed, 0);
  const skipped = results.reduce((s, r) => s + r.skipped, 0);
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  console.log("0 passed, 1 failed");
  process.exit(1);
});
