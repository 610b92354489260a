// Operator command: rotate the edge's token signing key with overlap.
//   npm run keys:rotate                       local: updates .huizhen/local.json (restart `npm start`)
//   wrangler secret get … | npm run keys:rotate -- --stdin | wrangler secret put SIGNING_KEYS
// The new key is published at once and signs only after --ahead seconds (≥ the JWKS cache
// lifetime); old keys stay published for --ttl seconds more (the longest token lifetime).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { rotateKeySet } from "../src/token/keys.ts";
import { ROOT } from "./stack.ts";

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}

async function main() {
  const ahead = arg("ahead", 300);
  const ttl = arg("ttl", 3600);
  if (process.argv.includes("--stdin")) {
    const { secret, newKid, activeFrom } = await rotateKeySet(await readStdin(), { publishAheadSec: ahead, tokenTtlSec: ttl });
    process.stderr.write(`new key ${newKid} signs from ${new Date(activeFrom * 1000).toISOString()}\n`);
    process.stdout.write(secret + "\n");
    return;
  }
  const file = join(ROOT, ".huizhen", "local.json");
  if (!existsSync(file)) throw new Error("no local state: run `npm start` once, or use --stdin for a deployment");
  const state = JSON.parse(readFileSync(file, "utf8"));
  const { secret, newKid, activeFrom } = await rotateKeySet(state.secrets.SIGNING_KEYS, { publishAheadSec: ahead, tokenTtlSec: ttl });
  state.secrets.SIGNING_KEYS = secret;
  writeFileSync(file, JSON.stringify(state, null, 2), { mode: 0o600 });
  console.log(`new key ${newKid} published; it signs from ${new Date(activeFrom * 1000).toISOString()}. Restart \`npm start\` to load it.`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
