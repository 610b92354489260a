// Shared set-up for the media node tests (run under Deno). `FakeEdge` is a tiny Deno.serve that
// stands in for the edge: it serves the JWKS of keys the test holds (so the test can sign
// consultation tokens and node-API tokens itself) and records heartbeats and events. The node
// itself is real: a separate Deno process started by scripts/stack.ts, reached over QUIC.
import { loadKeySet, type KeySet } from "../../src/token/keys.ts";
import { signConsultationToken, signNodeApiToken } from "../../src/token/sign.ts";
import { nodeApiAudience, nodeAudience, type ConsultationClaims } from "../../src/token/claims.ts";
import { DEFAULT_GROUP_ATTRIBUTES, type GroupAttributes, type Role } from "../../src/types.ts";
import { randomId } from "../../src/bytes.ts";
import { generateEdgeSecrets, newNodeCredential, startMediaNode, type MediaNodeProcess } from "../../scripts/stack.ts";
import { TerminalSession, type ConnectOptions, type FrameEvent } from "../../src/terminal/session.ts";
import { Track } from "../../src/protocol/media.ts";
import * as assert from "uvu/assert";

export const ISSUER = "huizhen-edge";
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface DenoServe {
  serve(opts: { hostname: string; port: number; onListen?: (a: { port: number }) => void }, h: (r: Request) => Response | Promise<Response>): { shutdown(): Promise<void> };
}
const Deno = (globalThis as unknown as { Deno: DenoServe }).Deno;

export class FakeEdge {
  readonly heartbeats: any[] = [];
  readonly events: any[] = [];
  /** When false the fake edge answers 503 to reports (edge down). */
  up = true;
  url = "";
  private server?: { shutdown(): Promise<void> };
  constructor(readonly keys: KeySet, readonly nodeSecret: string) {}

  static async start(nodeSecret: string): Promise<FakeEdge> {
    const keys = await loadKeySet((await generateEdgeSecrets()).SIGNING_KEYS);
    const edge = new FakeEdge(keys, nodeSecret);
    await new Promise<void>((resolve) => {
      edge.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: (a) => { edge.url = `http://127.0.0.1:${a.port}`; resolve(); } }, (req) => edge.handle(req));
    });
    return edge;
  }

  private async handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (path === "/.well-known/jwks.json") return Response.json({ keys: this.keys.publicJwks });
    if (req.headers.get("authorization") !== `Bearer ${this.nodeSecret}`) return Response.json({ error: { code: "unauthorized", message: "" } }, { status: 401 });
    if (!this.up) return Response.json({ error: { code: "down", message: "" } }, { status: 503 });
    if (path.endsWith("/heartbeat")) {
      this.heartbeats.push(await req.json());
      return Response.json({ ok: true });
    }
    if (path.endsWith("/events")) {
      const body = await req.json();
      for (const e of body.events) if (!this.events.some((x) => x.id === e.id)) this.events.push(e);
      return Response.json({ accepted: body.events.length });
    }
    return Response.json({ error: { code: "not_found", message: "" } }, { status: 404 });
  }

  stop() {
    return this.server?.shutdown();
  }
}

export interface TestGroup {
  groupId: string;
  consultationId: string;
  members: { terminalId: string; role: Role }[];
  attributes: GroupAttributes;
}

export class NodeHarness {
  constructor(readonly edge: FakeEdge, readonly node: MediaNodeProcess, readonly nodeId: string) {}

  static async start(env: Record<string, string> = {}): Promise<NodeHarness> {
    const cred = newNodeCredential(`node-${randomId("t", 4)}`);
    const edge = await FakeEdge.start(cred.secret);
    let node: MediaNodeProcess;
    try {
      node = await startMediaNode({ credential: cred, edgeUrl: edge.url, env: { MEDIA_HEARTBEAT_MS: "500", ...env }, log: process.env.HZ_DEBUG ? (s, l) => console.log(`[${s}] ${l}`) : undefined });
    } catch (err) {
      await edge.stop(); // or its server keeps the test process alive
      throw err;
    }
    return new NodeHarness(edge, node, cred.nodeId);
  }

  async apiToken(): Promise<string> {
    return signNodeApiToken({ issuer: ISSUER, audience: nodeApiAudience(this.nodeId), jti: randomId("napi", 8) }, this.edge.keys.active);
  }

  async api(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }> {
    const res = await fetch(`${this.node.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token ?? (await this.apiToken())}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  async group(over: Partial<TestGroup> & { expiresAt?: number } = {}): Promise<TestGroup> {
    const g: TestGroup = {
      groupId: randomId("grp", 8),
      consultationId: randomId("cns", 8),
      members: [{ terminalId: randomId("trm", 6), role: "requester" }, { terminalId: randomId("trm", 6), role: "consultant" }],
      attributes: { ...DEFAULT_GROUP_ATTRIBUTES },
      ...over,
    };
    const r = await this.api("POST", "/v1/groups", { ...g, clinicId: "cln_test", expiresAt: over.expiresAt ?? Date.now() + 3600_000 });
    if (r.status !== 201) throw new Error(`reserve: ${r.status} ${JSON.stringify(r.body)}`);
    return g;
  }

  async token(g: TestGroup, index: number, over: Partial<ConsultationClaims> = {}): Promise<string> {
    const m = g.members[index]!;
    const now = Math.floor(Date.now() / 1000);
    const claims: ConsultationClaims = {
      iss: ISSUER, aud: nodeAudience(this.nodeId), sub: m.terminalId, iat: now, nbf: now, exp: now + 600,
      jti: randomId("jti", 8), cid: g.consultationId, gid: g.groupId, role: m.role, ten: "cln_test", grp: g.attributes,
      ...over,
    };
    return signConsultationToken(claims, this.edge.keys.active);
  }

  connect(token: string, over: Partial<ConnectOptions> = {}): Promise<TerminalSession> {
    return TerminalSession.connect({ url: this.node.url, certHashes: this.node.certHashes, token, sdk: "media-test", ...over });
  }

  /** Both members of a fresh group, joined. */
  async pair(over: Partial<ConnectOptions> = {}) {
    const g = await this.group();
    const a = await this.connect(await this.token(g, 0), over);
    const b = await this.connect(await this.token(g, 1), over);
    return { g, a, b };
  }

  async stats(): Promise<any> {
    return (await this.api("GET", "/v1/stats")).body;
  }

  async stop() {
    await this.node.stop();
    await this.edge.stop();
  }
}

/** Resolves with the first value of `event`, or rejects after `timeoutMs`. */
export function once<T>(s: TerminalSession, event: string, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    const off = (s as any).on(event, (v: T) => {
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

export async function refusal(p: Promise<TerminalSession>): Promise<string> {
  try {
    const s = await p;
    await s.leave();
    return "admitted";
  } catch (err) {
    return (err as { reason?: string }).reason ?? String(err);
  }
}

/** Deterministic payload whose bytes identify the frame. */
export function payload(track: number, index: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (track * 7919 + index * 104729 + 1) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** A hand-driven client: speaks the wire protocol directly, for tests that break it on purpose. */
export class RawClient {
  readonly messages: any[] = [];
  closeInfo?: { closeCode?: number; reason?: string };
  private waiters: (() => void)[] = [];
  private constructor(readonly wt: WebTransport, readonly control: WritableStreamDefaultWriter<Uint8Array>) {}

  static async open(h: NodeHarness, path = "/v1/session"): Promise<RawClient> {
    const { fromBase64 } = await import("../../src/bytes.ts");
    const url = h.node.url.replace("/v1/session", path);
    const wt = new WebTransport(url, { serverCertificateHashes: h.node.certHashes.map((x) => ({ algorithm: "sha-256", value: fromBase64(x) as BufferSource })) });
    await wt.ready;
    const bidi = await wt.createBidirectionalStream();
    const c = new RawClient(wt, bidi.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>);
    wt.closed.then((i) => { c.closeInfo = i; c.wake(); }, (e) => { c.closeInfo = { closeCode: e?.closeCode, reason: String(e) }; c.wake(); });
    void c.read(bidi.readable as ReadableStream<Uint8Array>);
    return c;
  }

  private async read(readable: ReadableStream<Uint8Array>) {
    const { FrameDecoder } = await import("../../src/protocol/framing.ts");
    const { decodeNodeMessage } = await import("../../src/protocol/control.ts");
    const dec = new FrameDecoder();
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        for (const f of dec.push(value)) this.messages.push(decodeNodeMessage(f));
        this.wake();
      }
    } catch { /* closed */ }
  }

  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  async send(msg: unknown): Promise<void> {
    const { encodeControl } = await import("../../src/protocol/control.ts");
    const { frame } = await import("../../src/protocol/framing.ts");
    await this.control.write(frame(encodeControl(msg as any)));
  }

  /** Waits for a control message of type `t` (or for the session to close, then undefined). */
  async waitFor(t: string, timeoutMs = 5000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find((x) => x.t === t);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no ${t} within ${timeoutMs} ms (got ${this.messages.map((x) => x.t).join(",")})`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
  }

  async waitClosed(timeoutMs = 5000): Promise<{ closeCode?: number; reason?: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closeInfo) {
      if (Date.now() > deadline) throw new Error(`session not closed within ${timeoutMs} ms`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 50); });
    }
    return this.closeInfo;
  }

  close() {
    try { this.wt.close(); } catch { /* closed */ }
  }
}

/**
 * `n` audio and `n` video frames each way between two joined terminals (video of `size(i)`
 * bytes, a keyframe every 20), then asserts that each side got every frame of the other, in
 * order and intact. `names` label the senders in failure messages.
 */
export async function exchangeBothWays(a: TerminalSession, b: TerminalSession, names: [string, string], size: (i: number) => number, n = 60): Promise<void> {
  const atA: FrameEvent[] = [];
  const atB: FrameEvent[] = [];
  a.on("frame", (f) => atA.push(f));
  b.on("frame", (f) => atB.push(f));
  for (let i = 0; i < n; i++) {
    for (const s of [a, b]) {
      s.sendFrame(Track.audio, payload(0, i, 120), { timestamp: i * 20_000 });
      s.sendFrame(Track.video, payload(1, i, size(i)), { keyframe: i % 20 === 0, timestamp: i * 20_000 });
    }
    await sleep(10);
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && (atA.length < 2 * n || atB.length < 2 * n)) await sleep(50);
  for (const [got, from, name] of [[atA, b, names[1]], [atB, a, names[0]]] as const) {
    const video = got.filter((f) => f.header.track === Track.video);
    const audio = got.filter((f) => f.header.track === Track.audio);
    assert.is(audio.length, n, `audio from the ${name} terminal`);
    assert.is(video.length, n, `video from the ${name} terminal`);
    for (let i = 0; i < n; i++) {
      assert.is(video[i]!.header.source, from.self.slot);
      assert.equal(video[i]!.payload, payload(1, i, size(i)));
    }
  }
}
