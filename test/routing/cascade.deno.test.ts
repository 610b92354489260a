// Cascading on real parts: two media node processes (Deno, QUIC) trusting one stand-in edge
// (test/media/support.ts's FakeEdge: it serves the JWKS of keys the test holds, so the test
// signs what the edge would — group reservations, consultation and cascade tokens; the edge's
// own cascade placement is not built yet). Each terminal joins its own node; the nodes relay
// the group's media over one link per node pair, authenticated by an edge-signed cascade token.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FakeEdge, ISSUER, NodeHarness } from "../media/support.ts";
import { newNodeCredential, startMediaNode } from "../../scripts/stack.ts";
import { signCascadeToken } from "../../src/token/cascade.ts";
import { generateSigningJwk, loadKeySet } from "../../src/token/keys.ts";
import { randomId } from "../../src/bytes.ts";
import { Track } from "../../src/protocol/media.ts";
import type { TerminalSession } from "../../src/terminal/session.ts";

const t = suite("cascade between two nodes");
let edge: FakeEdge;
let A: NodeHarness;
let B: NodeHarness;
const open: TerminalSession[] = [];

function once<T>(s: TerminalSession, event: string, timeoutMs = 8000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    (s as any).on(event, (v: T) => { clearTimeout(timer); resolve(v); });
  });
}

function payload(tag: number, i: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (tag * 7919 + i * 104729 + 1) >>> 0;
  for (let k = 0; k < size; k++) { x = (x * 1103515245 + 12345) >>> 0; out[k] = x >>> 24; }
  return out;
}

const cascadeToken = (gid: string, dialer: string, listener: string, key = edge.keys.active) =>
  signCascadeToken({ issuer: ISSUER, dialer, listener, groupId: gid, ttlSeconds: 3600, jti: randomId("csc", 8) }, key);

/** A group reserved on both nodes, cascaded B → A. */
async function cascadedGroup() {
  const g = await A.group();
  const r = await B.api("POST", "/v1/groups", { ...g, clinicId: "cln_test", expiresAt: Date.now() + 3600_000 });
  assert.is(r.status, 201);
  const c = await B.api("POST", `/v1/groups/${g.groupId}/cascade`, { peerNodeId: A.nodeId, peerUrl: A.node.url, certHashes: A.node.certHashes, token: await cascadeToken(g.groupId, B.nodeId, A.nodeId) });
  assert.is(c.status, 200, JSON.stringify(c.body));
  return g;
}

t.before(async () => {
  const cred = newNodeCredential("node-ca");
  edge = await FakeEdge.start(cred.secret);
  const nodeA = await startMediaNode({ credential: cred, edgeUrl: edge.url, env: { MEDIA_HEARTBEAT_MS: "500" }});
  const nodeB = await startMediaNode({ credential: { nodeId: "node-cb", secret: cred.secret }, edgeUrl: edge.url, env: { MEDIA_HEARTBEAT_MS: "500" } });
  A = new NodeHarness(edge, nodeA, "node-ca");
  B = new NodeHarness(edge, nodeB, "node-cb");
});

t.after(async () => {
  for (const s of open) await s.leave().catch(() => {});
  await A?.node.stop();
  await B?.node.stop();
  await edge?.stop();
});

t("each terminal on its own node: connection success and media both ways, intact and in order", async () => {
  const g = await cascadedGroup();
  // Listen for connection success as soon as each has joined: it may come at once.
  const a = await A.connect(await A.token(g, 0));
  const connA = once<{ terminalId: string }[]>(a, "connected");
  const b = await B.connect(await B.token(g, 1));
  const connB = once<{ terminalId: string }[]>(b, "connected");
  open.push(a, b);
  const [ca, cb] = await Promise.all([connA, connB]);
  assert.equal(ca.map((m) => m.terminalId).sort(), g.members.map((m) => m.terminalId).sort());
  assert.equal(cb.map((m) => m.terminalId).sort(), g.members.map((m) => m.terminalId).sort());

  const got = { a: [] as Uint8Array[], b: [] as Uint8Array[] };
  a.on("frame", (f) => { if (f.header.track === Track.video) got.a.push(f.payload); });
  b.on("frame", (f) => { if (f.header.track === Track.video) got.b.push(f.payload); });
  const N = 120;
  const size = (i: number) => (i % 20 === 0 ? 9000 : 400 + ((i * 977) % 2500)); // some span several datagrams
  for (let i = 0; i < N; i++) {
    a.sendFrame(Track.video, payload(1, i, size(i)), { keyframe: i % 20 === 0 });
    b.sendFrame(Track.video, payload(2, i, size(i)), { keyframe: i % 20 === 0 });
    await new Promise((r) => setTimeout(r, 10));
  }
  const deadline = Date.now() + 5000;
  while ((got.a.length < N || got.b.length < N) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  console.log(`  across the link: A→B ${got.b.length}/${N} frames, B→A ${got.a.length}/${N}`);
  // Loopback loses little; every frame that arrives is intact and in order.
  assert.ok(got.b.length >= N * 0.95, `B received ${got.b.length}/${N} of A's frames across the link`);
  assert.ok(got.a.length >= N * 0.95, `A received ${got.a.length}/${N} of B's frames across the link`);
  const check = (list: Uint8Array[], tag: number) => {
    const sent = Array.from({ length: N }, (_, k) => payload(tag, k, size(k)));
    const same = (x: Uint8Array, y: Uint8Array) => x.length === y.length && x.every((v, j) => v === y[j]);
    let k = 0;
    for (const p of list) {
      while (k < N && !same(p, sent[k]!)) k++;
      assert.ok(k < N, "a frame arrived corrupted or out of order");
      k++;
    }
  };
  check(got.b, 1);
  check(got.a, 2);
  // Nodes report their own terminals' joins only, not the link's stand-ins.
  await new Promise((r) => setTimeout(r, 600));
  const joins = edge.events.filter((e) => e.type === "joined" && e.groupId === g.groupId);
  assert.is(joins.length, 2, JSON.stringify(joins));
  assert.ok(joins.every((e) => !String(e.jti).startsWith("cascade:")));
});

t("a second group of the same pair shares the one link; a leave crosses it", async () => {
  const g = await cascadedGroup();
  const a = await A.connect(await A.token(g, 0));
  const connA = once(a, "connected");
  const b = await B.connect(await B.token(g, 1));
  const connB = once(b, "connected");
  open.push(a, b);
  await Promise.all([connA, connB]);
  const stats = (await B.api("GET", "/v1/stats")).body.cascade.links;
  assert.is(stats.length, 1, JSON.stringify(stats));
  assert.is(stats[0].peer, A.nodeId);
  assert.is(stats[0].groups, 2);
  assert.ok(stats[0].datagramsOut > 0 && stats[0].datagramsIn > 0);
  const left = once<{ member: { terminalId: string } }>(a, "peer-left");
  await b.leave();
  assert.is((await left).member.terminalId, g.members[1]!.terminalId);
});

t("simulcast: a layer-1 nack and keyframe-request cross the link with their layer", async () => {
  const g = await cascadedGroup();
  const a = await A.connect(await A.token(g, 0));
  const connA = once(a, "connected");
  const b = await B.connect(await B.token(g, 1));
  const connB = once(b, "connected");
  open.push(a, b);
  await Promise.all([connA, connB]);
  const aSlot = a.self.slot;
  const bSlot = b.self.slot;
  const asked: { from?: number; layer?: number }[] = [];
  a.on("keyframe-request", (k) => { if (k.track === Track.video) asked.push(k); });
  // `a` publishes layer 1 only: it keeps no layer-0 history, so only a nack that arrives with
  // layer 1 can be answered (one that lost its layer on the link asks for layer 0 in vain).
  let heard = 0;
  b.on("frame", (f) => { if (f.header.source === aSlot && f.header.track === Track.video) heard++; });
  for (let i = 0; i < 6; i++) {
    a.sendFrame(Track.video, payload(3, i, 600), { keyframe: i === 0, layer: 1 });
    await new Promise((r) => setTimeout(r, 20));
  }
  const until = async (done: () => boolean, ms = 4000) => {
    const deadline = Date.now() + ms;
    while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  };
  await until(() => heard >= 6);
  const before = a.counters.retransmitted;
  // The terminal SDK sends nacks only for frames it misses (none on loopback), so the test
  // sends the control message a terminal would: the session's own control writer.
  (b as any).sendControl({ t: "nack", slot: aSlot, track: Track.video, sequences: [2, 3], layer: 1 });
  await until(() => a.counters.retransmitted >= before + 2);
  assert.is(a.counters.retransmitted - before, 2, "a's node handed a the nack with layer 1");
  (b as any).sendControl({ t: "keyframe-request", slot: aSlot, track: Track.video, layer: 1 });
  await until(() => asked.some((k) => k.from === bSlot && k.layer === 1));
  assert.ok(asked.some((k) => k.from === bSlot && k.layer === 1), `keyframe requests a got: ${JSON.stringify(asked)}`);
});

t("node-to-node authentication: a token for another group, node or edge key is refused", async () => {
  const g = await A.group();
  await B.api("POST", "/v1/groups", { ...g, clinicId: "cln_test", expiresAt: Date.now() + 3600_000 });
  const other = await loadKeySet(JSON.stringify({ keys: [await generateSigningJwk("EdDSA")] }));
  const bad = [
    await cascadeToken("grp_other", B.nodeId, A.nodeId),
    await cascadeToken(g.groupId, B.nodeId, "node-elsewhere"),
    await cascadeToken(g.groupId, B.nodeId, A.nodeId, other.active),
  ];
  for (const token of bad) {
    const c = await B.api("POST", `/v1/groups/${g.groupId}/cascade`, { peerNodeId: A.nodeId, peerUrl: A.node.url, certHashes: A.node.certHashes, token });
    assert.is(c.status, 502, JSON.stringify(c.body));
  }
  // The control call itself needs the edge's node-API token.
  assert.is((await B.api("POST", `/v1/groups/${g.groupId}/cascade`, { peerNodeId: A.nodeId, peerUrl: A.node.url, token: "x" }, "not-a-jwt")).status, 401);
});

t.run();
