// Starts the real parts of Huizhen as child processes: the edge (workerd via `wrangler dev`
// with a local D1, or Deno with a SQLite file) and media nodes (Deno, QUIC). Used by
// `npm start`, the integration and browser tests, and the benches.
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { randomId, sha256Hex, toBase64Url, randomBytes } from "../src/bytes.ts";
import { generateSigningJwk } from "../src/token/keys.ts";
import { PhiCipher } from "../src/phi-cipher.ts";
import { generateNodeKey, isSigningSecret, publicJwkOfSecret } from "../src/node-credential.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(ROOT, "node_modules", ".bin");
export const DENO = join(BIN, "deno");

export type Log = (source: string, line: string) => void;
export type EdgeRuntime = "workerd" | "deno";

export interface EdgeSecrets {
  SIGNING_KEYS: string;
  PATIENT_HASH_KEY: string;
  ADMIN_KEY: string;
  /** AES-GCM key set for patient fields at rest (src/phi-cipher.ts). */
  PHI_KEYS: string;
}

export async function generateEdgeSecrets(): Promise<EdgeSecrets> {
  return {
    SIGNING_KEYS: JSON.stringify({ keys: [await generateSigningJwk("EdDSA")] }),
    PATIENT_HASH_KEY: toBase64Url(randomBytes(32)),
    ADMIN_KEY: `hza_${toBase64Url(randomBytes(24))}`,
    PHI_KEYS: PhiCipher.generateSecret(),
  };
}

export interface NodeCredential {
  nodeId: string;
  secret: string;
}

export function newNodeCredential(nodeId: string): NodeCredential {
  return { nodeId, secret: `hzn_${toBase64Url(randomBytes(24))}` };
}

/** A node key pair (src/node-credential.ts): the node signs its reports, the edge keeps the public key. */
export async function newSigningNodeCredential(nodeId: string): Promise<NodeCredential> {
  return { nodeId, secret: (await generateNodeKey()).secret };
}

export async function nodeCredentialsJson(creds: NodeCredential[]): Promise<string> {
  const map: Record<string, unknown> = {};
  for (const c of creds) map[c.nodeId] = isSigningSecret(c.secret) ? publicJwkOfSecret(c.secret) : await sha256Hex(c.secret);
  return JSON.stringify(map);
}

/** A port free for both TCP and UDP on 127.0.0.1 (the node uses the same number for QUIC and its TCP fallback). */
// Ports handed out by this process: a port is only checked free, not held, until its server binds it.
const handedOut = new Set<number>();

/**
 * A port free on TCP and UDP (QUIC and the TCP fallback share the number), picked below the
 * kernel's ephemeral range (32768–60999): a port from there can be taken by any outgoing
 * connection between this check and the server binding it (a restarted node once met
 * AddrInUse that way).
 */
export async function freePort(): Promise<number> {
  const free = (port: number) => new Promise<boolean>((res) => {
    const srv = createServer();
    srv.once("error", () => res(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => res(true)));
  }).then((tcp) => tcp && new Promise<boolean>((res) => {
    const s = createSocket("udp4");
    s.once("error", () => res(false));
    s.bind(port, "127.0.0.1", () => s.close(() => res(true)));
  }));
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_700);
    if (handedOut.has(port) || !(await free(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error("no free port found");
}

export class ManagedProcess {
  readonly output: string[] = [];
  private exited: Promise<number | null>;
  exitCode: number | null | undefined = undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    log?: Log,
  ) {
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line.trim()) continue;
        this.output.push(line);
        if (this.output.length > 5000) this.output.splice(0, 1000);
        log?.(name, line);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    this.exited = new Promise((res) => child.once("exit", (code) => { this.exitCode = code; res(code); }));
    LIVE.add(this);
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Signals the whole process group (wrangler spawns workerd), then waits, then kills. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 3000): Promise<void> {
    LIVE.delete(this);
    if (!this.running) return;
    killGroup(this.child, signal);
    const timer = new Promise((res) => setTimeout(res, graceMs, "timeout"));
    if ((await Promise.race([this.exited, timer])) === "timeout") {
      killGroup(this.child, "SIGKILL");
      await this.exited;
    }
  }

  /** Kills at once without a chance to drain (failure tests). */
  kill(): Promise<void> {
    return this.stop("SIGKILL", 2000);
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

const LIVE = new Set<ManagedProcess>();
process.once("exit", () => {
  for (const p of LIVE) killGroup(p.child, "SIGKILL");
});

function run(name: string, cmd: string, args: string[], env: Record<string, string>, log?: Log): ManagedProcess {
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  return new ManagedProcess(name, child, log);
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  proc: ManagedProcess | undefined,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && !proc.running) {
      throw new Error(`${what}: process exited (${proc.exitCode})\n${proc.output.slice(-40).join("\n")}`);
    }
    try {
      if (await check()) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms\n${proc?.output.slice(-40).join("\n") ?? ""}`);
}

export interface EdgeOptions {
  runtime?: EdgeRuntime;
  port?: number;
  /** Where the local database lives; a temp dir when omitted (removed on stop). */
  stateDir?: string;
  secrets: EdgeSecrets;
  nodeCredentials: string;
  publicUrl?: string;
  tokenTtlSeconds?: number;
  /** Further edge settings (e.g. RATE_LIMIT_IP, CLIENT_IP_HEADER; see docs/internal-apis.md). */
  env?: Record<string, string>;
  log?: Log;
}

/** dotenv keeps single-quoted values literally; double quotes would keep JSON's backslashes. */
function dotenvValue(v: string): string {
  if (!/['\n\r]/.test(v)) return `'${v}'`;
  throw new Error("an edge setting holds a quote or newline and cannot go into the env file");
}

export interface EdgeProcess {
  runtime: EdgeRuntime;
  url: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

export async function startEdge(opts: EdgeOptions): Promise<EdgeProcess> {
  const runtime = opts.runtime ?? "workerd";
  const port = opts.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const ownState = !opts.stateDir;
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), "huizhen-edge-")));
  await mkdir(stateDir, { recursive: true });
  const env: Record<string, string> = {
    ...opts.secrets,
    NODE_CREDENTIALS: opts.nodeCredentials,
    PUBLIC_URL: opts.publicUrl ?? url,
    ISSUER: "huizhen-edge",
    TOKEN_TTL_SECONDS: String(opts.tokenTtlSeconds ?? 600),
    ...opts.env,
  };
  let proc: ManagedProcess;
  if (runtime === "workerd") {
    const envFile = join(stateDir, "edge.env");
    await writeFile(envFile, Object.entries(env).map(([k, v]) => `${k}=${dotenvValue(v)}`).join("\n") + "\n", { mode: 0o600 });
    await mkdir(join(ROOT, "dist", "public"), { recursive: true });
    proc = run("edge", join(BIN, "wrangler"), [
      "dev", "--config", join(ROOT, "wrangler.toml"), "--env-file", envFile,
      "--ip", "127.0.0.1", "--port", String(port), "--persist-to", join(stateDir, "d1"),
      "--inspector-port", String(await freePort()), "--show-interactive-dev-session=false", "--log-level", "info",
    ], {
      // Offline: no metrics, and no fetch of the `Request.cf` object from workers.cloudflare.com.
      WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", CI: "true", NO_COLOR: "1",
    }, opts.log);
  } else {
    proc = run("edge", DENO, ["run", "--allow-all", join(ROOT, "edge", "deno.ts")], {
      ...env,
      EDGE_PORT: String(port),
      EDGE_HOST: "127.0.0.1",
      DB_PATH: join(stateDir, "huizhen.sqlite"),
    }, opts.log);
  }
  await waitFor(`edge (${runtime})`, async () => (await fetch(`${url}/healthz`)).ok, proc, 90_000);
  return {
    runtime,
    url,
    process: proc,
    async stop() {
      await proc.stop();
      if (ownState) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

export interface MediaNodeOptions {
  credential: NodeCredential;
  edgeUrl: string;
  region?: string;
  port?: number;
  apiPort?: number;
  /** The node's MEDIA_STATE_DIR (its event journal); a temp dir when omitted (removed on stop/kill). */
  stateDir?: string;
  env?: Record<string, string>;
  log?: Log;
}

export interface MediaNodeProcess {
  id: string;
  region: string;
  url: string;
  apiUrl: string;
  port: number;
  certHashes: string[];
  process: ManagedProcess;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export async function startMediaNode(opts: MediaNodeOptions): Promise<MediaNodeProcess> {
  const port = opts.port ?? (await freePort());
  const apiPort = opts.apiPort ?? (await freePort());
  const region = opts.region ?? "local";
  const url = `https://127.0.0.1:${port}/v1/session`;
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  // Never the node's default (.huizhen/<id> in the repo): test nodes share ids across runs.
  const ownState = !opts.stateDir;
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), "huizhen-node-")));
  const dropState = async () => {
    if (ownState) await rm(stateDir, { recursive: true, force: true });
  };
  const proc = run(opts.credential.nodeId, DENO, ["run", "--allow-all", "--unstable-net", join(ROOT, "media", "main.ts")], {
    NODE_ID: opts.credential.nodeId,
    NODE_SECRET: opts.credential.secret,
    NODE_REGION: region,
    EDGE_URL: opts.edgeUrl,
    EDGE_ISSUER: "huizhen-edge",
    MEDIA_HOST: "127.0.0.1",
    MEDIA_PORT: String(port),
    MEDIA_PUBLIC_URL: url,
    MEDIA_API_HOST: "127.0.0.1",
    MEDIA_API_PORT: String(apiPort),
    MEDIA_STATE_DIR: stateDir,
    ...opts.env,
  }, opts.log);
  let certHashes: string[] = [];
  try {
    await waitFor(`media node ${opts.credential.nodeId}`, async () => {
      const res = await fetch(`${apiUrl}/cert-hashes`);
      if (!res.ok) return false;
      certHashes = ((await res.json()) as { certHashes: string[] }).certHashes;
      return true;
    }, proc, 30_000);
  } catch (err) {
    await proc.stop();
    await dropState();
    throw err;
  }
  return {
    id: opts.credential.nodeId, region, url, apiUrl, port, certHashes, process: proc,
    stop: () => proc.stop().then(dropState),
    kill: () => proc.kill().then(dropState),
  };
}

/** Waits until the edge lists the node as live (it has heartbeated). */
export async function waitForNodeRegistered(edge: EdgeProcess, adminKey: string, nodeId: string, timeoutMs = 20_000) {
  await waitFor(`node ${nodeId} registered at the edge`, async () => {
    const res = await fetch(`${edge.url}/v1/nodes`, { headers: { authorization: `Bearer ${adminKey}` } });
    if (!res.ok) return false;
    const body = (await res.json()) as { nodes: { id: string }[] };
    return body.nodes.some((n) => n.id === nodeId);
  }, edge.process, timeoutMs);
}

export async function ensureClinic(edgeUrl: string, adminKey: string, slug: string, name: string, apiKey?: string) {
  const res = await fetch(`${edgeUrl}/v1/admin/clinics/${encodeURIComponent(slug)}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
    body: JSON.stringify(apiKey ? { name, apiKey } : { name }),
  });
  if (!res.ok) throw new Error(`creating clinic ${slug}: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; slug: string; apiKey?: string };
}

export interface StackOptions {
  edge?: EdgeRuntime;
  nodes?: { id?: string; region?: string; env?: Record<string, string> }[];
  tokenTtlSeconds?: number;
  /** Further edge settings (e.g. NODE_STALE_MS for failover tests). */
  edgeEnv?: Record<string, string>;
  /** Known secrets, so a test can sign its own (bad) tokens with the edge's key. */
  secrets?: EdgeSecrets;
  log?: Log;
}

export interface Stack {
  secrets: EdgeSecrets;
  edge: EdgeProcess;
  edgeUrl: string;
  adminKey: string;
  nodes: MediaNodeProcess[];
  /** The first node (most tests use one). */
  node: MediaNodeProcess;
  clinicApiKey: string;
  clinicId: string;
  credentials: NodeCredential[];
  /** Every line any process printed, for PHI/token scans. */
  output(): string[];
  stop(): Promise<void>;
}

/** Edge + media nodes + one clinic, all on fresh free ports and temp state. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const specs = opts.nodes ?? [{}];
  const credentials = await Promise.all(specs.map((s, i) => newSigningNodeCredential(s.id ?? `node-${i + 1}`)));
  const secrets = opts.secrets ?? (await generateEdgeSecrets());
  const edge = await startEdge({
    runtime: opts.edge,
    secrets,
    nodeCredentials: await nodeCredentialsJson(credentials),
    tokenTtlSeconds: opts.tokenTtlSeconds,
    env: opts.edgeEnv,
    log: opts.log,
  });
  const nodes: MediaNodeProcess[] = [];
  try {
    for (const [i, spec] of specs.entries()) {
      nodes.push(await startMediaNode({ credential: credentials[i]!, edgeUrl: edge.url, region: spec.region, env: spec.env, log: opts.log }));
    }
    for (const n of nodes) await waitForNodeRegistered(edge, secrets.ADMIN_KEY, n.id);
    const clinic = await ensureClinic(edge.url, secrets.ADMIN_KEY, `test-${randomId("c", 6)}`, "Test clinic");
    return {
      secrets, edge, edgeUrl: edge.url, adminKey: secrets.ADMIN_KEY, nodes, node: nodes[0]!, credentials,
      clinicApiKey: clinic.apiKey!, clinicId: clinic.id,
      output: () => [edge.process, ...nodes.map((n) => n.process)].flatMap((p) => p.output),
      async stop() {
        await Promise.all(nodes.map((n) => n.stop()));
        await edge.stop();
      },
    };
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    await edge.stop();
    throw err;
  }
}
