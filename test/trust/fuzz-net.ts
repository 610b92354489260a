// Bad input against the running parts, over the network (fixed seeds, bounded counts): mutated
// and mangled JSON to every edge endpoint (with valid credentials, so it reaches validation),
// mutated control messages to the media node before and after join, mutated media datagrams
// from a joined member. A "crash" is an answer the API does not allow (5xx, not the JSON error
// shape), no answer within 10 s, a process that died, or a node that stops serving a genuine
// call. Used by bench/trust.ts (and, in small, test/trust/fuzz-net.deno.test.ts).
import { NodeSigner } from "../../src/node-credential.ts";
import { decodeNodeMessage, encodeControl } from "../../src/protocol/control.ts";
import { frame, FrameDecoder } from "../../src/protocol/framing.ts";
import { fragmentFrame } from "../../src/protocol/media.ts";
import { fromBase64 } from "../../src/bytes.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { ClinicClient, testPatient } from "../support/clinic-client.ts";
import { mangle, mutate, prng, randomBytesFrom, randomValue } from "../support/prng.ts";
import type { TrustStack } from "./stack.ts";

export interface FuzzResult {
  tried: number;
  crashes: number;
  notes: string[];
  statuses: Record<string, number>;
}

const ALLOWED = new Set([200, 201, 400, 401, 403, 404, 409, 410, 413, 415, 429]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fuzzes every JSON endpoint of the edge through `stack.edgeUrl`; `perEndpoint` inputs each. */
export async function fuzzEdge(stack: TrustStack, perEndpoint: number, seed = 0xed9e): Promise<FuzzResult> {
  const res: FuzzResult = { tried: 0, crashes: 0, notes: [], statuses: {} };
  const clinicKey = (await stack.clinic(`fuzz-${Date.now()}`, 1_000_000)).apiKey;
  const clinic = new ClinicClient(stack.edgeUrl, clinicKey);
  const t1 = await clinic.registerTerminal("Fuzz 1", "doctor");
  const t2 = await clinic.registerTerminal("Fuzz 2", "specialist");
  const created = (await clinic.createConsultation({ patient: testPatient("F"), requester: { terminalId: t1.id }, consultant: { terminalId: t2.id } })).body;
  const signer = new NodeSigner(stack.credential.nodeId, stack.credential.secret);
  const nodeId = stack.credential.nodeId;
  const hb = {
    region: "local", url: stack.node.url, apiUrl: stack.edgeToNode.url, certHashes: stack.node.certHashes,
    capacity: { maxSessions: 100, maxGroups: 50, maxKbpsOut: 100000 },
    load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0 }, draining: false,
  };
  type Ep = { method: string; path: string; auth: (body: string) => Promise<string>; body: unknown };
  const key = (k: string) => async () => k;
  const node = (path: string) => (body: string) => signer.sign("POST", path, body);
  const endpoints: Ep[] = [
    { method: "PUT", path: "/v1/admin/clinics/fuzzed", auth: key(stack.secrets.ADMIN_KEY), body: { name: "Fuzzed", rateLimit: 5000 } },
    { method: "POST", path: "/v1/terminals", auth: key(clinicKey), body: { label: "Room", kind: "doctor" } },
    { method: "POST", path: "/v1/consultations", auth: key(clinicKey), body: { patient: testPatient("G"), requester: { terminalId: t1.id }, consultant: { terminalId: t2.id }, reason: "r", region: "local" } },
    { method: "POST", path: `/v1/consultations/${created.id}/tokens`, auth: key(clinicKey), body: { terminalId: t1.id } },
    { method: "POST", path: `/v1/terminals/${t1.id}/measurements`, auth: key(t1.secret), body: { measurements: [{ nodeId, rttMs: 10, jitterMs: 1, loss: 0 }] } },
    { method: "POST", path: `/v1/nodes/${nodeId}/heartbeat`, auth: node(`/v1/nodes/${nodeId}/heartbeat`), body: hb },
    { method: "POST", path: `/v1/nodes/${nodeId}/events`, auth: node(`/v1/nodes/${nodeId}/events`), body: { events: [{ id: "ev-fuzz", type: "joined", consultationId: created.id, groupId: created.group.id, terminalId: t1.id, at: Date.now() }] } },
  ];
  const send = async (label: string, method: string, path: string, bearer: string, body?: string) => {
    res.tried++;
    try {
      const r = await fetch(`${stack.edgeUrl}${path}`, {
        method, body,
        headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        signal: AbortSignal.timeout(10_000),
      });
      const text = await r.text();
      res.statuses[r.status] = (res.statuses[r.status] ?? 0) + 1;
      let shape = true;
      try {
        const j = JSON.parse(text);
        if (r.status >= 400) shape = typeof j?.error?.code === "string" && typeof j?.error?.message === "string";
      } catch { shape = false; }
      if (!ALLOWED.has(r.status) || !shape) {
        res.crashes++;
        res.notes.push(`${label}: ${r.status} ${text.slice(0, 80)}`);
      }
    } catch (err) {
      res.crashes++;
      res.notes.push(`${label}: no answer (${(err as Error).name})`);
    }
  };
  for (const [n, ep] of endpoints.entries()) {
    const rand = prng(seed + n);
    const valid = new TextEncoder().encode(JSON.stringify(ep.body));
    for (let i = 0; i < perEndpoint; i++) {
      const kind = i % 4;
      const payload = kind === 0 ? new TextDecoder().decode(mutate(rand, valid))
        : kind === 3 ? new TextDecoder().decode(randomBytesFrom(rand, Math.floor(rand() * 300)))
        : JSON.stringify(mangle(rand, kind === 2 ? mangle(rand, ep.body) : ep.body));
      await send(`${ep.method} ${ep.path} #${i}`, ep.method, ep.path, await ep.auth(payload), payload);
    }
  }
  // Mangled tokens, ids and query strings.
  const rand = prng(seed ^ 0x70c3);
  const tokenBytes = new TextEncoder().encode(created.tokens[0]!.token);
  for (let i = 0; i < perEndpoint; i++) {
    const bad = new TextDecoder().decode(mutate(rand, tokenBytes)).replace(/[\s\u0000-\u001f\u007f-\uffff]/g, "") || "x";
    await send(`GET /v1/join #${i}`, "GET", "/v1/join", bad);
    const q = encodeURIComponent(String(randomValue(rand)).replace(/[\ud800-\udfff]/g, "?")).slice(0, 60);
    await send(`GET invitations #${i}`, "GET", `/v1/terminals/${t1.id}/invitations?wait=${q.slice(0, 8)}&after=${q}`, t1.secret);
    await send(`GET consultations #${i}`, "GET", `/v1/consultations?limit=${q.slice(0, 8)}&status=${q}&before=${q}`, clinicKey);
    await send(`GET consultation by odd id #${i}`, "GET", `/v1/consultations/${q || "x"}`, clinicKey);
  }
  if (!stack.edge.process.running) {
    res.crashes++;
    res.notes.push("the edge process died");
  }
  // Fuzzed heartbeats that pass validation are the node's own (signed) word: the registry holds
  // their made-up url or load until the node's next real heartbeat (every 500 ms here).
  await sleep(1500);
  return res;
}

/** A WebTransport session to the node; a handshake stuck in the client is abandoned and retried. */
async function openSession(url: string, hashes: { algorithm: string; value: BufferSource }[], attempts = 3): Promise<WebTransport> {
  for (let i = 1; ; i++) {
    const wt = new WebTransport(url, { serverCertificateHashes: hashes });
    wt.closed.catch(() => {});
    const ok = await Promise.race([wt.ready.then(() => true, () => false), sleep(5000).then(() => false)]);
    if (ok) return wt;
    try { wt.close(); } catch { /* never opened */ }
    if (i >= attempts) throw new Error("fuzz: the node accepts no new WebTransport session");
  }
}

/** Mutated control messages and media datagrams to the media node over QUIC. */
export async function fuzzNode(stack: TrustStack, sessions: number, datagrams: number, seed = 0x90de): Promise<FuzzResult> {
  const res: FuzzResult = { tried: 0, crashes: 0, notes: [], statuses: {} };
  const rand = prng(seed);
  const clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  const t1 = await clinic.registerTerminal("Fuzz node 1", "doctor");
  const t2 = await clinic.registerTerminal("Fuzz node 2", "specialist");
  const created = (await clinic.createConsultation({ patient: testPatient("N"), requester: { terminalId: t1.id }, consultant: { terminalId: t2.id } })).body;
  // The node's own address, not the registry's (an edge fuzz may just have rewritten it).
  const url = stack.node.url;
  const hashes = stack.node.certHashes.map((h) => ({ algorithm: "sha-256", value: fromBase64(h) as BufferSource }));
  const samples = [
    encodeControl({ t: "join", v: 1, token: created.tokens[0]!.token.slice(0, -6) + "AAAAAA", sdk: "fuzz" }),
    encodeControl({ t: "ping", n: 5, ts: 1.5 }),
    encodeControl({ t: "signal", kind: "k", body: { a: [1, 2] }, to: 1 }),
    encodeControl({ t: "nack", track: 1, sequences: [1, 2], slot: 1 }),
  ];
  // 1. Before join: one mutated control message per session (most close it at once).
  for (let i = 0; i < sessions; i++) {
    res.tried++;
    let wt: WebTransport | undefined;
    try {
      wt = await openSession(url, hashes, 1);
      const s = await wt.createBidirectionalStream();
      const w = s.writable.getWriter();
      const input = i % 3 === 0 ? randomBytesFrom(rand, Math.floor(rand() * 200)) : mutate(rand, samples[i % samples.length]!);
      await w.write(i % 5 === 0 ? input : frame(input));
      await Promise.race([wt.closed.catch(() => {}), sleep(40)]);
    } catch { /* refused: fine */ }
    try { wt?.close(); } catch { /* closed */ }
  }
  // 2. After join: mutated media datagrams from a member (a raw client speaking the protocol
  // itself), paced under the node's abuse limit so the session lives through them.
  let raw: WebTransport;
  try {
    raw = await openSession(url, hashes);
  } catch {
    res.crashes++;
    res.notes.push("the node accepted no new WebTransport session after the pre-join fuzz");
    return res;
  }
  let rawClosed = false;
  raw.closed.then(() => { rawClosed = true; }, () => { rawClosed = true; });
  const control = await raw.createBidirectionalStream();
  const cw = control.writable.getWriter();
  await cw.write(frame(encodeControl({ t: "join", v: 1, token: created.tokens[0]!.token, sdk: "fuzz" })));
  const decoder = new FrameDecoder();
  const cr = control.readable.getReader();
  for (let welcomed = false; !welcomed;) {
    const { value, done } = await cr.read();
    if (done) throw new Error("fuzz: the raw member was not admitted");
    welcomed = decoder.push(value).some((m) => decodeNodeMessage(m).t === "welcome");
  }
  let refusedWith = "";
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await cr.read();
        if (done) return;
        for (const m of decoder.push(value)) {
          const msg = decodeNodeMessage(m);
          if (msg.t === "error") refusedWith = msg.code;
        }
      }
    } catch { /* closed */ }
  })();
  const b = await TerminalSession.connect({ url, certHashes: stack.node.certHashes, token: created.tokens[1]!.token, sdk: "fuzz" });
  const good = fragmentFrame({ flags: 1, track: 1, source: 0, sequence: 1, timestamp: 1000 }, randomBytesFrom(rand, 3000), 1100);
  const w = raw.datagrams.writable.getWriter();
  for (let i = 0; i < datagrams && !rawClosed && !refusedWith; i++) {
    res.tried++;
    const d = i % 3 === 0 ? randomBytesFrom(rand, Math.floor(rand() * 1200)) : mutate(rand, good[i % good.length]!);
    await w.write(d).catch(() => {});
    if (i % 20 === 19) await sleep(120); // ~160/s: below the node's 200 malformed/s abuse limit
    if (i % 200 === 199) await cw.write(frame(encodeControl({ t: "ping", n: i }))).catch(() => {});
  }
  if (refusedWith) res.notes.push(`the fuzzing member was closed by the node (${refusedWith})`);
  try { raw.close(); } catch { /* closed */ }
  await b.leave().catch(() => {});
  // The node still serves: health, the process alive, and a fresh pair's media forwarded.
  const health = await fetch(`${stack.node.apiUrl}/health`).then((r) => r.ok, () => false);
  if (!health || !stack.node.process.running) {
    res.crashes++;
    res.notes.push("the node stopped serving");
  }
  const fresh = (await clinic.createConsultation({ patient: testPatient("N2"), requester: { terminalId: t1.id }, consultant: { terminalId: t2.id } })).body;
  const join = (i: number) => TerminalSession.connect({ url, certHashes: stack.node.certHashes, token: fresh.tokens[i]!.token, sdk: "fuzz" });
  const [p, q] = [await join(0), await join(1)];
  let got = 0;
  q.on("frame", () => got++);
  for (let i = 0; i < 10; i++) {
    p.sendFrame(0, new Uint8Array(100));
    await sleep(20);
  }
  await sleep(500);
  if (got < 10) {
    res.crashes++;
    res.notes.push(`after the fuzz a fresh pair got ${got}/10 frames through`);
  }
  await p.leave().catch(() => {});
  await q.leave().catch(() => {});
  return res;
}
