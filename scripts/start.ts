// `npm start`: the whole system on this machine — the edge in workerd with a local D1, one
// media node under Deno, the browser page — with state kept in .huizhen/ across starts.
import { existsSync } from "node:fs";
import { isSigningSecret } from "../src/node-credential.ts";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
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
// The node's TCP fallback (WebTransport over WebSocket) is on unless MEDIA_FALLBACK=off; by
// default on TCP with the QUIC port's number. The node reads these same variables itself.
const FALLBACK_ON = (process.env.MEDIA_FALLBACK ?? "on").toLowerCase() !== "off";
const FALLBACK_PORT = Number(process.env.MEDIA_FALLBACK_PORT || MEDIA_PORT);

const COLORS: Record<string, string> = { edge: "36", "node-1": "35", huizhen: "32" };
/** Sources inside the fallback package's "cannot load the HTTP/3 transport" stack trace. */
const inHttp3Trace = new Set<string>();
function log(source: string, line: string) {
  const tag = process.stdout.isTTY ? `\x1b[${COLORS[source] ?? "33"}m${source.padEnd(7)}\x1b[0m` : source.padEnd(7);
  // The fallback's package looks for its native HTTP/3 part, which is not installed (only its
  // HTTP/2 / WebSocket part is used): one line instead of two stack traces.
  if (inHttp3Trace.has(source)) {
    if (/^\s/.test(line)) return;
    inHttp3Trace.delete(source);
    if (line === "}") return;
  }
  if (line.startsWith("http3 loader: ")) return void inHttp3Trace.add(source);
  if (line.startsWith("Did you install @fails-components/webtransport-transport-http3-quiche")) return;
  if (line === "Problem loading http3-quiche transport") line = "TCP fallback: the package's HTTP/3 part is not installed (not needed: only its WebSocket/HTTP-2 part is used)";
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

interface FallbackCheck {
  /** The certificate is the node's self-made one (its hash is among the published ones). */
  selfMade: boolean;
  /** This machine's CAs (or NODE_EXTRA_CA_CERTS) accept it for 127.0.0.1. */
  trusted: boolean;
}

/** One TLS handshake to the fallback: is it up, and which kind of certificate does it show. */
function checkFallback(port: number, certHashes: string[]): Promise<FallbackCheck | undefined> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false, ALPNProtocols: ["h2", "http/1.1"], timeout: 3000 }, () => {
      const fp = s.getPeerCertificate()?.fingerprint256 ?? "";
      const hash = Buffer.from(fp.replaceAll(":", ""), "hex").toString("base64");
      resolve({ selfMade: certHashes.includes(hash), trusted: s.authorized });
      s.destroy();
    });
    s.on("timeout", () => { s.destroy(); resolve(undefined); });
    s.on("error", () => resolve(undefined));
  });
}

/** Lines saying where the fallback listens and how a developer's browser gets to trust it. */
async function fallbackLines(certHashes: string[]): Promise<string[]> {
  if (!FALLBACK_ON) return ["TCP fallback   off (MEDIA_FALLBACK=off)"];
  const url = process.env.MEDIA_FALLBACK_PUBLIC_URL || `https://127.0.0.1:${FALLBACK_PORT}/v1/session`;
  const check = await checkFallback(FALLBACK_PORT, certHashes);
  if (!check) return [`TCP fallback   not answering on TCP ${FALLBACK_PORT} (see the node-1 lines above)`];
  const head = `TCP fallback   ${url}  (TCP ${FALLBACK_PORT}, WebTransport over WebSocket, for networks that block UDP)`;
  if (check.trusted) return [head, "               its certificate chains to a CA Node trusts (bundled or NODE_EXTRA_CA_CERTS); the browser must trust that CA too"];
  if (!check.selfMade) {
    return [head, "               certificate from MEDIA_FALLBACK_TLS_CERT_FILE (re-read every minute): the browser must trust its CA (README, local system)"];
  }
  return [
    head,
    "               it shows the node's self-made certificate, which a browser's WebSocket cannot pin by hash: to try it,",
    "               start a throwaway Chromium with --ignore-certificate-errors --user-data-dir=$(mktemp -d), or set",
    "               MEDIA_FALLBACK_TLS_CERT_FILE/MEDIA_FALLBACK_TLS_KEY_FILE to a pair from a local CA your browser trusts (README)",
  ];
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
  for (const line of await fallbackLines(node.certHashes)) log("huizhen", line);
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
