// A stand-in for a media node's control API (HTTP) and its reports to the edge. The real node
// (media/) is exercised end to end by test/integration/flow.deno.test.ts; this one exists so
// the edge's placement can be driven into refusals and timeouts on purpose, which a real
// node cannot be made to do on demand. It checks the node-API JWT exactly as a node must.
import { createServer, type IncomingMessage, type Server } from "node:http";
import { createRemoteJWKSet } from "jose";
import { nodeApiAudience } from "../../src/token/claims.ts";
import { verifyNodeApiToken } from "../../src/token/verify.ts";
import type { NodeCredential } from "../../scripts/stack.ts";

export type Behaviour = "accept" | "refuse" | "hang";

export interface NodeCall {
  method: string;
  path: string;
  body: any;
  authorized: boolean;
  authError?: string;
}

export class FakeNode {
  behaviour: Behaviour = "accept";
  readonly calls: NodeCall[] = [];
  private server!: Server;
  apiUrl = "";
  private jwks;

  constructor(readonly credential: NodeCredential, readonly edgeUrl: string, readonly region: string) {
    this.jwks = createRemoteJWKSet(new URL(`${edgeUrl}/.well-known/jwks.json`));
  }

  get id() {
    return this.credential.nodeId;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.apiUrl = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  /** Fields every periodic heartbeat carries (region, load, …). */
  heartbeatOverrides: Record<string, unknown> = {};
  private timer?: ReturnType<typeof setInterval>;

  /** Heartbeats every 3 s like a node, so it stays live in the registry. */
  keepAlive() {
    this.timer ??= setInterval(() => void this.heartbeat().catch(() => {}), 3000);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private async handle(req: IncomingMessage, res: import("node:http").ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    const call: NodeCall = { method: req.method!, path: req.url!, body: text ? JSON.parse(text) : undefined, authorized: false };
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    try {
      if (!auth) throw new Error("no bearer");
      await verifyNodeApiToken(auth, this.jwks, { issuer: "huizhen-edge", audience: nodeApiAudience(this.id) });
      call.authorized = true;
    } catch (err) {
      call.authError = String((err as Error).message);
    }
    this.calls.push(call);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (!call.authorized) return send(401, { error: { code: "unauthorized", message: "bad node-API token" } });
    if (this.behaviour === "hang") return; // never answers: the edge must time out
    if (req.method === "POST" && req.url === "/v1/groups") {
      if (this.behaviour === "refuse") return send(503, { error: { code: "node_full", message: "full" } });
      return send(201, { groupId: call.body.groupId });
    }
    if (req.method === "DELETE" && req.url?.startsWith("/v1/groups/")) return send(200, { closedSessions: 0 });
    if (req.method === "POST" && /^\/v1\/groups\/[^/]+\/revocations$/.test(req.url ?? "")) return send(200, { closedSessions: 0 });
    send(404, { error: { code: "not_found", message: "unknown" } });
  }

  heartbeatBody(over: Record<string, unknown> = {}) {
    return {
      region: this.region,
      url: `https://127.0.0.1:1/${this.id}`,
      apiUrl: this.apiUrl,
      certHashes: ["q2FuIGJlIGFueXRoaW5nIGhlcmUgZm9yIHRoZSB0ZXN0IQ=="],
      capacity: { maxSessions: 100, maxGroups: 50, maxKbpsOut: 100_000 },
      load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0.05, loopLagMs: 1, lossRate: 0 },
      draining: false,
      ...over,
    };
  }

  report(path: "heartbeat" | "events", body: unknown, secret = this.credential.secret) {
    return fetch(`${this.edgeUrl}/v1/nodes/${this.id}/${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  heartbeat(over: Record<string, unknown> = {}) {
    return this.report("heartbeat", this.heartbeatBody({ ...this.heartbeatOverrides, ...over }));
  }
}
