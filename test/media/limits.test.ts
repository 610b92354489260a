// Limits and keep-alive on a real media node process (settings made small through its env):
// malformed, oversized and out-of-group media dropped and counted, floods and stream abuse
// closing the session, a silent terminal dropped after 5 ping intervals.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { fragmentFrame } from "../../src/protocol/media.ts";
import { NodeHarness, once, RawClient, sleep, type TestGroup } from "./support.ts";
import type { TerminalSession } from "../../src/terminal/session.ts";

const t = suite("media node limits");
let h: NodeHarness;

t.before(async () => {
  h = await NodeHarness.start({ MEDIA_PING_INTERVAL_MS: "200", MEDIA_MAX_DATAGRAMS_PER_SEC: "400", MEDIA_ABUSE_DROPS_PER_SEC: "200" });
});
t.after(async () => {
  await h?.stop();
});

/** A raw member (index 0) joined beside a well-behaved TerminalSession (index 1). */
async function rawPair(joinExtra: Record<string, unknown> = {}): Promise<{ g: TestGroup; raw: RawClient; peer: TerminalSession; writer: WritableStreamDefaultWriter<Uint8Array> }> {
  const g = await h.group();
  const raw = await RawClient.open(h);
  await raw.send({ t: "join", v: 1, token: await h.token(g, 0), ...joinExtra });
  await raw.waitFor("welcome");
  const peer = await h.connect(await h.token(g, 1));
  const writer = raw.wt.datagrams.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>;
  return { g, raw, peer, writer };
}

const media = (size: number, seq = 0) => fragmentFrame({ flags: 0, track: 1, source: 0, sequence: seq, timestamp: 1 }, new Uint8Array(size), 1200)[0]!;

t("a terminal that stops pinging is dropped after 5 intervals with timeout; its peer is told", async () => {
  const { raw, peer } = await rawPair();
  const left = once<{ reason: string }>(peer, "peer-left", 4000);
  const err = await raw.waitFor("error", 4000);
  assert.is(err.code, "timeout");
  assert.is((await raw.waitClosed()).closeCode, 4010);
  assert.is((await left).reason, "timeout");
  assert.not.ok(peer.closed, "the pinging terminal stays");
  await peer.leave();
});

t("malformed and oversized datagrams are dropped and counted, not forwarded", async () => {
  const { raw, peer, writer } = await rawPair({ maxDatagramSize: 600 });
  const frames: unknown[] = [];
  peer.on("frame", (f) => frames.push(f));
  const before = (await h.stats()).counters;
  await writer.write(new Uint8Array([1, 2, 3]));
  const badVersion = media(100); badVersion[0] = 7;
  await writer.write(badVersion);
  await writer.write(media(1000)); // over the 600 bytes it declared
  await writer.write(media(100, 1)); // a good one
  await raw.send({ t: "ping", n: 1 });
  await sleep(300);
  const after = (await h.stats()).counters;
  assert.is(after.malformed - before.malformed, 2);
  assert.is(after.oversized - before.oversized, 1);
  assert.is(frames.length, 1, "only the well-formed datagram went through");
  assert.not.ok(raw.closeInfo, "a few bad datagrams do not close the session");
  raw.close();
  await peer.leave();
});

t("a datagram flood is rate-limited (drops counted) and then closed with limitExceeded", async () => {
  const { raw, peer, writer } = await rawPair();
  const before = (await h.stats()).counters;
  const d = media(200);
  const t0 = Date.now();
  for (let i = 0; i < 3000 && !raw.closeInfo; i++) {
    writer.write(d).catch(() => {});
    if (i % 50 === 0) await sleep(1);
  }
  const err = await raw.waitFor("error", 4000);
  const seconds = (Date.now() - t0) / 1000;
  assert.is(err.code, "limitExceeded");
  const after = (await h.stats()).counters;
  assert.ok(after.rateDropped - before.rateDropped > 200, `rate-dropped ${after.rateDropped - before.rateDropped}`);
  // One second's worth up front, then the refill rate: 400 + 400/s.
  const allowed = 400 + 400 * seconds + 5;
  assert.ok(peer.counters.datagramsReceived <= allowed, `the peer got ${peer.counters.datagramsReceived}, allowed ${allowed}`);
  await peer.leave();
});

t("too many streams close the session with limitExceeded", async () => {
  const { raw, peer } = await rawPair();
  for (let i = 0; i < 5; i++) {
    const s = await raw.wt.createUnidirectionalStream();
    const w = s.getWriter();
    w.write(new Uint8Array([0, 0, 0, 0])).catch(() => {});
  }
  assert.is((await raw.waitFor("error", 3000)).code, "limitExceeded");
  await peer.leave();
});

t("an object declared larger than allowed closes the session", async () => {
  const { raw, peer } = await rawPair();
  const s = await raw.wt.createUnidirectionalStream();
  await s.getWriter().write(new Uint8Array([0x7f, 0, 0, 0, 1, 2, 3]));
  assert.is((await raw.waitFor("error", 3000)).code, "limitExceeded");
  await peer.leave();
});

t("media sent before join is dropped and counted as out of group", async () => {
  const before = (await h.stats()).counters;
  const raw = await RawClient.open(h);
  const w = raw.wt.datagrams.writable.getWriter();
  for (let i = 0; i < 5; i++) await w.write(media(100));
  await sleep(200);
  const after = (await h.stats()).counters;
  assert.is(after.outOfGroup - before.outOfGroup, 5);
  raw.close();
});

t.run();
