// The real parts (edge as a child process, one media node under Deno) wired through capturing
// proxies, so the trust tests and `bench/trust.ts` can see every plaintext byte between them,
// cut chosen calls, and stop and restart the edge on the same port and database.
//   clinic/terminals ──clinicProxy──▶ edge ◀──nodeToEdge── media node
//                                     edge ──edgeToNode──▶ media node control API
// Media itself flows over QUIC (encrypted), terminal ↔ node directly.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ensureClinic, freePort, generateEdgeSecrets, newSigningNodeCredential, nodeCredentialsJson, startEdge, startMediaNode,
  waitFor, waitForNodeRegistered, type EdgeProcess, type EdgeRuntime, type EdgeSecrets, type MediaNodeProcess, type NodeCredential,
} from "../../scripts/stack.ts";
import { randomId } from "../../src/bytes.ts";
import { nodeApiAudience } from "../../src/token/claims.ts";
import { loadKeySet } from "../../src/token/keys.ts";
import { signNodeApiToken } from "../../src/token/sign.ts";
import { CapturingProxy } from "./capture.ts";

export interface TrustStackOptions {
  runtime?: EdgeRuntime;
  edgeEnv?: Record<string, string>;
  nodeEnv?: Record<string, string>;
  secrets?: EdgeSecrets;
  /** Echo process output (debugging). */
  echo?: boolean;
}

export class TrustStack {
  clinicApiKey = "";
  clinicId = "";
  private constructor(
    readonly opts: TrustStackOptions,
    readonly secrets: EdgeSecrets,
    readonly credential: NodeCredential,
    readonly nodeCredentials: string,
    readonly stateDir: string,
    readonly edgePort: number,
    readonly clinicProxy: CapturingProxy,
    readonly nodeToEdge: CapturingProxy,
    readonly edgeToNode: CapturingProxy,
    public edge: EdgeProcess,
    public node: MediaNodeProcess,
    /** Every line every process printed, in order, never trimmed. */
    readonly lines: string[],
    private readonly log: (source: string, line: string) => void,
  ) {}

  get proxies(): CapturingProxy[] {
    return [this.clinicProxy, this.nodeToEdge, this.edgeToNode];
  }

  /** The edge as clinics and terminals reach it (through the capturing proxy). */
  get edgeUrl(): string {
    return this.clinicProxy.url;
  }

  static async start(opts: TrustStackOptions = {}): Promise<TrustStack> {
    const secrets = opts.secrets ?? (await generateEdgeSecrets());
    const credential = await newSigningNodeCredential(`node-${randomId("t", 4)}`);
    const nodeCredentials = await nodeCredentialsJson([credential]);
    const stateDir = await mkdtemp(join(tmpdir(), "huizhen-trust-"));
    const edgePort = await freePort();
    const apiPort = await freePort();
    const clinicProxy = await CapturingProxy.start("clinic→edge", edgePort);
    const nodeToEdge = await CapturingProxy.start("node→edge", edgePort);
    const edgeToNode = await CapturingProxy.start("edge→node", apiPort);
    const lines: string[] = [];
    const log = (source: string, line: string) => {
      lines.push(`[${source}] ${line}`);
      if (opts.echo) console.log(`[${source}] ${line}`);
    };
    const edge = await TrustStack.launchEdge(opts, secrets, nodeCredentials, stateDir, edgePort, clinicProxy.url, log);
    let node: MediaNodeProcess;
    try {
      node = await startMediaNode({
        credential, edgeUrl: nodeToEdge.url, apiPort, log,
        env: { MEDIA_HEARTBEAT_MS: "500", MEDIA_API_PUBLIC_URL: edgeToNode.url, ...opts.nodeEnv },
      });
    } catch (err) {
      await edge.stop();
      throw err;
    }
    const s = new TrustStack(opts, secrets, credential, nodeCredentials, stateDir, edgePort, clinicProxy, nodeToEdge, edgeToNode, edge, node, lines, log);
    try {
      await waitForNodeRegistered(edge, secrets.ADMIN_KEY, credential.nodeId);
      const clinic = await ensureClinic(s.edgeUrl, secrets.ADMIN_KEY, `trust-${randomId("c", 6)}`, "Trust clinic");
      s.clinicApiKey = clinic.apiKey!;
      s.clinicId = clinic.id;
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  private static launchEdge(opts: TrustStackOptions, secrets: EdgeSecrets, nodeCredentials: string, stateDir: string, port: number, publicUrl: string, log: (s: string, l: string) => void) {
    return startEdge({
      runtime: opts.runtime ?? "deno", port, stateDir, secrets, nodeCredentials, publicUrl, log,
      env: { NODE_TIMEOUT_MS: "5000", ...opts.edgeEnv },
    });
  }

  /** Another clinic on the same edge. */
  async clinic(slug: string, rateLimit?: number): Promise<{ id: string; apiKey: string }> {
    const res = await fetch(`${this.edgeUrl}/v1/admin/clinics/${slug}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${this.secrets.ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ name: `Clinic ${slug}`, ...(rateLimit ? { rateLimit } : {}) }),
    });
    const b = (await res.json()) as { id: string; apiKey?: string };
    if (!b.apiKey) throw new Error(`clinic ${slug}: ${res.status}`);
    return { id: b.id, apiKey: b.apiKey };
  }

  /** Stops the edge: SIGKILL (a crash) or SIGTERM. The database stays. */
  async stopEdge(crash = true): Promise<void> {
    if (crash) await this.edge.process.kill();
    else await this.edge.process.stop();
  }

  /** Starts the edge again on the same port, database and secrets (or new secrets: key rotation). */
  async startEdge(secrets: EdgeSecrets = this.secrets): Promise<void> {
    (this as { secrets: EdgeSecrets }).secrets = secrets;
    this.edge = await TrustStack.launchEdge(this.opts, secrets, this.nodeCredentials, this.stateDir, this.edgePort, this.clinicProxy.url, this.log);
  }

  /** A node-API call signed with the edge's key, straight to the node (operators' stats). */
  async nodeStats(): Promise<any> {
    const keys = await loadKeySet(this.secrets.SIGNING_KEYS);
    const tok = await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeApiAudience(this.credential.nodeId), jti: randomId("napi", 8) }, keys.active);
    const res = await fetch(`${this.node.apiUrl}/v1/stats`, { headers: { authorization: `Bearer ${tok}` } });
    return res.json();
  }

  /** Waits until the node has delivered every queued event to the edge. */
  async reporterDrained(timeoutMs = 20_000): Promise<void> {
    await waitFor("node reporter queue drained", async () => (await this.nodeStats()).reporterQueue === 0, this.node.process, timeoutMs);
  }

  async stop(): Promise<void> {
    await this.node.stop().catch(() => {});
    await this.edge.stop().catch(() => {});
    for (const p of this.proxies) await p.stop().catch(() => {});
    await rm(this.stateDir, { recursive: true, force: true });
  }
}
