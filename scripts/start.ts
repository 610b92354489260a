// `npm start`: the whole system on this machine — the edge in workerd with a local D1, one
// media node under Deno, the browser page — with state kept in .huizhen/ across starts.
import { existsSync } from "node:fs";
import { isSigningSecret } from "../src/node-credential.ts";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ROOT, ensureClinic, generateEdgeSecrets, newSigningNodeCredential, nodeCredentialsJson, startEdge, startMediaNode,
  waitForNodeRegistered, type EdgeSecrets, type NodeCredential,
} from "./stack.ts";
import { buildClient } from "./build-client.ts";
import { createDemoConsultation } from "./demo.ts";

interface LocalState {
  secrets: EdgeSecrets;
  node: NodeCredential;
  clinic?: { id: string; slug: string };
  /** Kept so `npm run demo` can create consultations for the local demo clinic. Local only. */
  clinicApiKey?: string;
}

const STATE_DIR = join(ROOT, ".huizhen");
const STATE_FILE = join(STATE_DIR, "local.json");
const EDGE_PORT = Number(process.env.EDGE_PORT ?? 8787);
const MEDIA_PORT = Number(process.env.MEDIA_PORT ?? 4433);
const MEDIA_API_PORT = Number(process.env.MEDIA_API_PORT ?? MEDIA_PORT + 1);

const COLORS: Record<string, string> = { edge: "36", "node-1": "35", huizhen: "32" };
function log(source: string, line: string) {
  const tag = process.stdout.isTTY ? `\x1b[${COLORS[source] ?? "33"}m${source.padEnd(7)}\x1b[0m` : source.padEnd(7);
  // wrangler prints its own banners and blank frames; keep the log readable.
  if (/^[\s─╭╮╰╯│⎔]*$/.test(line)) return;
  // wrangler repeats every request the edge already logs; node reports every few seconds are
  // noise unless they fail.
  if (line.startsWith("[wrangler:info] ") && !/Ready on|error/i.test(line)) return;
  if (/ \/v1\/nodes\/:nodeId\/(heartbeat|revocations|events) 200 /.test(line)) return;
  console.log(`${tag} │ ${line}`);
}

async function loadState(): Promise<LocalState> {
  await mkdir(STATE_DIR, { recursive: true, mode: 0o700 });
  if (existsSync(STATE_FILE)) {
    const saved = JSON.parse(await readFile(STATE_FILE, "utf8")) as LocalState;
    // State from before a secret existed gets it added, once.
    if (!saved.secrets.PHI_KEYS) {
      saved.secrets.PHI_KEYS = (await generateEdgeSecrets()).PHI_KEYS;
      await saveState(saved);
    }
    if (!isSigningSecret(saved.node.secret)) {
      // State from before nodes signed their reports: give the node a key pair.
      saved.node = await newSigningNodeCredential(saved.node.nodeId);
      await saveState(saved);
    }
    return saved;
  }
  log("huizhen", "first start: generating signing keys, node credential and secrets in .huizhen/");
  const state: LocalState = { secrets: await generateEdgeSecrets(), node: await newSigningNodeCredential("node-1") };
  await saveState(state);
  return state;
}

async function saveState(state: LocalState) {
  await writeFile(STATE_FILE, JSON.stringify(state, null, 2), { mode: 0o600 });
  await chmod(STATE_FILE, 0o600);
}

async function main() {
  const state = await loadState();
  log("huizhen", "building the browser SDK and page");
  await buildClient();

  const edge = await startEdge({
    runtime: "workerd",
    port: EDGE_PORT,
    stateDir: join(STATE_DIR, "edge"),
    secrets: state.secrets,
    nodeCredentials: await nodeCredentialsJson([state.node]),
    publicUrl: process.env.PUBLIC_URL ?? `http://127.0.0.1:${EDGE_PORT}`,
    log,
  });
  const node = await startMediaNode({
    credential: state.node,
    edgeUrl: edge.url,
    region: process.env.NODE_REGION ?? "local",
    port: MEDIA_PORT,
    apiPort: MEDIA_API_PORT,
    stateDir: join(STATE_DIR, "node-1"),
    log,
  });
  const stop = async () => {
    log("huizhen", "stopping");
    await node.stop();
    await edge.stop();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  await waitForNodeRegistered(edge, state.secrets.ADMIN_KEY, node.id);

  const wanted = process.env.CLINIC_API_KEY;
  if (!state.clinic || (wanted && wanted !== state.clinicApiKey)) {
    const clinic = await ensureClinic(edge.url, state.secrets.ADMIN_KEY, "demo", "Demo clinic", wanted);
    state.clinic = { id: clinic.id, slug: clinic.slug };
    if (clinic.apiKey) {
      state.clinicApiKey = clinic.apiKey;
      if (!wanted) log("huizhen", `demo clinic created. Its API key (shown once, keep it): ${clinic.apiKey}`);
      else log("huizhen", "demo clinic uses the API key from CLINIC_API_KEY");
    }
    await saveState(state);
  }

  const demo = state.clinicApiKey ? await createDemoConsultation(edge.url, state.clinicApiKey) : undefined;
  log("huizhen", "");
  log("huizhen", `edge API       ${edge.url}/v1   (docs/api.md)`);
  log("huizhen", `media node     ${node.url}  (UDP ${MEDIA_PORT}, control ${node.apiUrl})`);
  if (demo) {
    log("huizhen", `demo           ${demo.demoUrl}`);
    log("huizhen", "               opens both join links of a fresh demo consultation (valid 10 min; `npm run demo` makes another)");
  }
  log("huizhen", "Ctrl-C stops everything.");
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
