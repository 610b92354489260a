// Forwarding through a real media node process over QUIC, between two headless terminals
// (TerminalSession on Deno's WebTransport): datagrams with multi-datagram frames, reliable
// objects, ordering across both paths, and the control messages relayed between members.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Flag, Track } from "../../src/protocol/media.ts";
import type { TerminalSession, FrameEvent } from "../../src/terminal/session.ts";
import { NodeHarness, once, payload, sleep } from "./support.ts";

const t = suite("media node forwarding");
let h: NodeHarness;
let a: TerminalSession;
let b: TerminalSession;

t.before(async () => {
  h = await NodeHarness.start();
  ({ a, b } = await h.pair());
});
t.after(async () => {
  await a?.leave().catch(() => {});
  await b?.leave().catch(() => {});
  await h?.stop();
});

function collect(s: TerminalSession): FrameEvent[] {
  const got: FrameEvent[] = [];
  s.on("frame", (f) => got.push(f));
  return got;
}

t("frames of every size arrive intact, in order, stamped with the publisher's slot, both ways", async () => {
  const atB = collect(b);
  const atA = collect(a);
  const N = 200;
  const size = (i: number) => (i % 25 === 0 ? 60_000 : i % 10 === 0 ? 24_000 : 300 + ((i * 977) % 12_000));
  const sent = new Map<TerminalSession, { track: number; seq: number; i: number; size: number; key: boolean }[]>([[a, []], [b, []]]);
  for (let i = 0; i < N; i++) {
    for (const s of [a, b]) {
      sent.get(s)!.push({ track: 0, i, size: 160, key: false, seq: s.sendFrame(Track.audio, payload(0, i, 160), { timestamp: i * 20_000 }) });
      const key = i % 25 === 0;
      sent.get(s)!.push({ track: 1, i, size: size(i), key, seq: s.sendFrame(Track.video, payload(1, i, size(i)), { keyframe: key, timestamp: i * 20_000 }) });
    }
    await sleep(10);
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && (atA.length < 2 * N || atB.length < 2 * N)) await sleep(50);
  for (const [from, got] of [[a, atB], [b, atA]] as const) {
    for (const track of [0, 1]) {
      const want = sent.get(from)!.filter((x) => x.track === track);
      const have = got.filter((f) => f.header.track === track);
      assert.is(have.length, want.length, `track ${track}: ${have.length}/${want.length}`);
      for (let i = 0; i < want.length; i++) {
        const f = have[i]!;
        assert.is(f.header.sequence, want[i]!.seq);
        assert.is(f.header.source, from.self.slot);
        assert.is(f.header.timestamp, want[i]!.i * 20_000);
        assert.is((f.header.flags & Flag.keyframe) !== 0, want[i]!.key);
        assert.equal(f.payload, payload(track, want[i]!.i, want[i]!.size));
      }
    }
  }
  // The 60 kB frames needed more datagrams than allowed per frame, so they took the reliable stream.
  assert.ok(a.counters.objectsSent >= N / 25, `objects sent ${a.counters.objectsSent}`);
  assert.ok(a.counters.datagramsSent > N, `datagrams sent ${a.counters.datagramsSent}`);
  assert.is(b.counters.lost, 0);
  const stats = await h.stats();
  assert.is(stats.counters.malformed, 0);
  assert.is(stats.counters.datagramsIn, stats.counters.datagramsOut, "every datagram forwarded once");
});

t("a reliable frame followed at once by a datagram frame is still delivered first", async () => {
  const got = collect(b);
  const big = payload(1, 9001, 400_000);
  const s1 = a.sendFrame(Track.video, big, { reliable: true, keyframe: true });
  const s2 = a.sendFrame(Track.video, payload(1, 9002, 500));
  const s3 = a.sendFrame(Track.video, payload(1, 9003, 3000));
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && got.length < 3) await sleep(20);
  assert.equal(got.map((f) => f.header.sequence), [s1, s2, s3]);
  assert.equal(got[0]!.payload, big);
  assert.ok((got[0]!.header.flags & Flag.reliable) !== 0);
});

t("a gap that never fills is skipped after the reorder window and counted as lost", async () => {
  const got = collect(b);
  // Make the sender skip a sequence number, as if that frame had been lost on the way.
  const seqs = (a as any).sequences as Map<number, number>;
  const before = b.counters.lost;
  const s1 = a.sendFrame(Track.video, payload(1, 1, 100));
  seqs.set(Track.video, seqs.get(Track.video)! + 1);
  const s3 = a.sendFrame(Track.video, payload(1, 3, 100));
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline && got.length < 2) await sleep(20);
  assert.equal(got.map((f) => f.header.sequence), [s1, s3]);
  assert.is(b.counters.lost - before, 1);
});

t("frames lost on the way are asked for again (nack) and re-sent: nothing is missing, order holds", async () => {
  const got = collect(b);
  // Stand in for a lossy path: A's datagram writer drops some datagrams before they leave.
  const writer = (a as any).datagramWriter as WritableStreamDefaultWriter<Uint8Array>;
  let n = 0;
  const dropped = new Set([3, 10, 11, 12, 30]);
  (a as any).datagramWriter = { write: (d: Uint8Array) => (dropped.has(n++) ? Promise.resolve() : writer.write(d)) };
  const sent: { seq: number; i: number; size: number }[] = [];
  for (let i = 0; i < 20; i++) {
    const size = 400 + i * 500;
    sent.push({ seq: a.sendFrame(Track.video, payload(1, 500 + i, size)), i, size });
    await sleep(5);
  }
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && got.length < sent.length) await sleep(20);
  (a as any).datagramWriter = writer;
  assert.equal(got.map((f) => f.header.sequence), sent.map((x) => x.seq));
  for (let k = 0; k < sent.length; k++) assert.equal(got[k]!.payload, payload(1, 500 + sent[k]!.i, sent[k]!.size));
  assert.ok(b.counters.nacked >= 3, `nacked ${b.counters.nacked}`);
  assert.ok(a.counters.retransmitted >= 3, `retransmitted ${a.counters.retransmitted}`);
});

t("keyframe requests reach the publisher with the asker's slot; stats and signals are relayed; rtt is measured", async () => {
  const kr = once<{ track: number; from?: number }>(a, "keyframe-request");
  b.requestKeyframe(Track.video, a.self.slot);
  assert.equal(await kr, { track: Track.video, from: b.self.slot });
  const ps = once<{ from: number; report: Record<string, unknown> }>(b, "peer-stats");
  a.sendStats({ loss: 0.01, kbpsIn: 2400, resolution: "1280x720" });
  assert.equal(await ps, { from: a.self.slot, report: { loss: 0.01, kbpsIn: 2400, resolution: "1280x720" } });
  const sig = once<{ kind: string; body?: unknown; from?: number }>(b, "signal");
  a.sendSignal("still-request", { w: 1920 });
  assert.equal(await sig, { kind: "still-request", body: { w: 1920 }, from: a.self.slot });
  const rtt = await once<number>(a, "rtt", 5000);
  assert.ok(rtt >= 0 && rtt < 1000, `rtt ${rtt} ms`); // a sanity bound: this machine is shared
});

t.run();
