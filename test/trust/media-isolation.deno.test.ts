// Media-node abuse limits the media tests do not already cover (test/media/limits.test.ts has
// malformed/oversized/out-of-group counting, datagram floods, stream counts, oversized
// objects; test/media/admission.test.ts has one live session per token): a member can never
// send into a group it did not join — whatever it writes in the header's source byte, on
// datagrams, objects or control messages — and a stream of malformed media closes the session.
// Real node process (QUIC); the edge is the FakeEdge of test/media/support.ts. Runs under Deno.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { encodeObject, fragmentFrame } from "../../src/protocol/media.ts";
import { frame } from "../../src/protocol/framing.ts";
import type { FrameEvent, TerminalSession } from "../../src/terminal/session.ts";
import { NodeHarness, once, RawClient, refusal, sleep } from "../media/support.ts";

const t = suite("media node: group isolation and abuse");
let h: NodeHarness;

t.before(async () => {
  h = await NodeHarness.start({ MEDIA_PING_INTERVAL_MS: "1000" });
});
t.after(async () => {
  await h?.stop();
});

function record(s: TerminalSession) {
  const seen = { frames: [] as FrameEvent[], control: 0 };
  s.on("frame", (f) => seen.frames.push(f));
  for (const e of ["signal", "keyframe-request", "peer-stats", "peer-joined", "peer-left"] as const) s.on(e, () => seen.control++);
  return seen;
}

t("a member can never send into a group it did not join (spoofed source, objects, control)", async () => {
  const g1 = await h.group();
  const raw = await RawClient.open(h);
  await raw.send({ t: "join", v: 1, token: await h.token(g1, 0) });
  const welcome = await raw.waitFor("welcome");
  const p1 = await h.connect(await h.token(g1, 1));
  const fromRaw = record(p1);
  // Another group on the same node, both members in.
  const { a: q1, b: q2 } = await h.pair();
  await sleep(200);
  const other = [record(q1), record(q2)];

  // Audio datagrams (forwarded without waiting for a keyframe) claiming every possible source slot.
  const w = raw.wt.datagrams.writable.getWriter();
  let sent = 0;
  for (let source = 0; source < 256; source++) {
    const d = fragmentFrame({ flags: 0, track: 0, source: 0, sequence: source, timestamp: source }, new Uint8Array(200).fill(source), 1200)[0]!;
    d[3] = source;
    await w.write(d);
    sent++;
    if (source % 32 === 0) await sleep(5);
  }
  // Reliable objects claiming other sources.
  const s = await raw.wt.createUnidirectionalStream();
  const sw = s.getWriter();
  for (let source = 1; source <= 8; source++) {
    const obj = encodeObject({ flags: 0, track: 0, source, sequence: 255 + source, timestamp: 1 }, new Uint8Array(3000).fill(source));
    await sw.write(frame(obj));
  }
  // Control messages aimed at other slots.
  for (const slot of [1, 2, 3, 200]) {
    await raw.send({ t: "signal", kind: "x", body: "hello", to: slot });
    await raw.send({ t: "keyframe-request", track: 1, slot });
    await raw.send({ t: "nack", track: 1, sequences: [1], slot });
  }
  await raw.send({ t: "stats", report: { loss: 0 } });
  await raw.send({ t: "ping", n: 1 });
  await sleep(800);

  for (const o of other) {
    assert.is(o.frames.length, 0, "a frame crossed into another group");
    assert.is(o.control, 0, "a control message crossed into another group");
  }
  // Inside its own group everything arrives stamped with the sender's real slot.
  assert.ok(fromRaw.frames.length >= sent * 0.9 + 8, `${fromRaw.frames.length} frames reached the member's own peer`);
  assert.ok(fromRaw.frames.every((f) => f.header.source === welcome.self.slot), "the node stamps the real source slot");

  // Joining a second group on the same session is a protocol error.
  await raw.send({ t: "join", v: 1, token: await h.token({ ...g1, groupId: "unused" } as never, 0) });
  assert.is((await raw.waitFor("error", 3000)).code, "protocolError");
  await p1.leave();
  for (const s of [q1, q2]) await s.leave();
});

t("a token for one group cannot be bent towards another group on the same node", async () => {
  const g1 = await h.group();
  const g2 = await h.group();
  // g1's member, with g2's ids in its token: not a member there.
  assert.is(await refusal(h.connect(await h.token(g1, 0, { gid: g2.groupId, cid: g2.consultationId }))), "tokenInvalid");
  // g1's ids with g2's consultation: the group's consultation does not match.
  assert.is(await refusal(h.connect(await h.token(g1, 0, { cid: g2.consultationId }))), "groupUnknown");
});

t("a stream of malformed media is dropped, counted, and closes the session with protocolError", async () => {
  const g = await h.group();
  const raw = await RawClient.open(h);
  await raw.send({ t: "join", v: 1, token: await h.token(g, 0) });
  await raw.waitFor("welcome");
  const peer = await h.connect(await h.token(g, 1));
  const seen = record(peer);
  const left = once<{ reason: string }>(peer, "peer-left", 5000);
  const before = (await h.stats()).counters;
  const w = raw.wt.datagrams.writable.getWriter();
  const bad = new Uint8Array(100).fill(0xff); // wrong version, track 255
  for (let i = 0; i < 600 && !raw.closeInfo; i++) {
    w.write(bad).catch(() => {});
    if (i % 50 === 0) await sleep(1);
  }
  assert.is((await raw.waitFor("error", 4000)).code, "protocolError");
  const after = (await h.stats()).counters;
  assert.ok(after.malformed - before.malformed > 200, `malformed counted: ${after.malformed - before.malformed}`);
  assert.is(seen.frames.length, 0, "nothing malformed was forwarded");
  assert.is((await left).reason, "protocolError", "the peer is told why");
  await peer.leave();
});

t.run();
