// `npm run node:add -- node.json`: adds a media node. Reads the operator's config file (fields
// of media/config-file.ts, without `secret`), makes the node's own Ed25519 credential, writes
// the node's full config beside it (`<id>.node.json`, mode 600, holds the private key) and
// prints what to set on the edge (the node's public key in NODE_CREDENTIALS) and how to start
// the node. The credential is the node's alone: the edge's signing key is not involved.
//   --out <file>           where to write the node's config (default: <dir>/<id>.node.json)
//   --credentials <file>   a NODE_CREDENTIALS JSON file to merge the new entry into
import { readFile, writeFile, access } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { generateNodeKey } from "../src/node-credential.ts";
import { CONFIG_FIELDS, ConfigFileError, configFileEnv } from "../media/config-file.ts";

function usage(msg: string): never {
  console.error(`node:add: ${msg}\nusage: npm run node:add -- <config.json> [--out <file>] [--credentials <NODE_CREDENTIALS file>]`);
  process.exit(2);
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

const args = process.argv.slice(2);
const input = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--"));
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] ?? usage(`${name} needs a value`) : undefined;
};
if (!input) usage("a config file is required");

let cfg: Record<string, unknown>;
try {
  cfg = JSON.parse(await readFile(input, "utf8")) as Record<string, unknown>;
  configFileEnv(cfg); // same checks as the node applies
} catch (err) {
  usage(err instanceof ConfigFileError || err instanceof SyntaxError ? (err as Error).message : `cannot read ${input}`);
}
if ("secret" in cfg) usage("the config already holds a secret; node:add makes the credential itself");
for (const need of ["id", "edgeUrl"] as const) if (typeof cfg[need] !== "string" || !cfg[need]) usage(`field "${need}" is required`);
const id = cfg.id as string;
if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) usage(`id must be 1-64 letters, digits, '-' or '_'`);

const out = resolve(opt("--out") ?? join(dirname(resolve(input)), `${id}.node.json`));
if (await exists(out)) usage(`${out} exists; a node's credential is made once (remove it to re-key the node)`);

const key = await generateNodeKey();
const nodeConfig = { ...cfg, secret: key.secret };
await writeFile(out, JSON.stringify(nodeConfig, null, 2) + "\n", { mode: 0o600, flag: "wx" });

let merged: Record<string, unknown> = { [id]: key.publicJwk };
const credFile = opt("--credentials");
if (credFile) {
  const current = (await exists(credFile)) ? (JSON.parse(await readFile(credFile, "utf8")) as Record<string, unknown>) : {};
  merged = { ...current, [id]: key.publicJwk };
  await writeFile(credFile, JSON.stringify(merged, null, 2) + "\n", { mode: 0o600 });
}

const fields = Object.keys(CONFIG_FIELDS).filter((k) => k in nodeConfig && k !== "secret");
console.log(`node ${id}: credential made; node config written to ${out} (mode 600: it holds the node's private key)`);
console.log(`  fields: ${fields.join(", ")}`);
console.log("");
console.log("On the edge, add this entry to NODE_CREDENTIALS (public key only):");
console.log(`  ${JSON.stringify({ [id]: key.publicJwk })}`);
if (credFile) console.log(`  merged into ${credFile}; deploy it with: npx wrangler secret put NODE_CREDENTIALS < ${credFile}`);
else console.log("  e.g. npx wrangler secret put NODE_CREDENTIALS  (paste the whole map, this entry included)");
// The fallback is on unless the file turns it off; browsers reach it over a WebSocket, which
// cannot pin the self-made certificate's hash.
const fallbackOn = !(cfg.fallback === false || String(cfg.fallback ?? "on").toLowerCase() === "off");
if (fallbackOn && !cfg.fallbackTlsCertFile && !cfg.tlsCertFile) {
  console.log("");
  console.log(`TCP fallback: on (port ${String(cfg.fallbackPort ?? cfg.mediaPort ?? 4433)}) with the node's self-made certificate, which browsers refuse`);
  console.log("  over WebSocket: set fallbackTlsCertFile/fallbackTlsKeyFile to a CA-signed pair for fallbackPublicUrl's host, or \"fallback\": \"off\".");
}
console.log("");
console.log("Start the node with:");
console.log(`  npm run media -- ${out}`);
