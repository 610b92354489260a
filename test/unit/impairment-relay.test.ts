// The impairment relay over real UDP sockets on loopback: loss is seeded and repeatable,
// delay and rate limits shape delivery, replies find their way back, profiles switch live.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createSocket, type Socket } from "node:dgram";
import { ImpairmentRelay, type RelayProfile } from "../support/impairment-relay.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Arrival { index: number; at: number }

async function bound(): Promise<Socket> {
  const s = createSocket("udp4");
  await new Promise<void>((res) => s.bind(0, "127.0.0.1", () => res()));
  return s;
}

/** A target that records what reaches it and echoes it back; a client that sends through the relay. */
const open = new Set<() => Promise<void>>();
test.after.each(async () => {
  for (const close of open) await close();
  open.clear();
});

async function rig(profile: RelayProfile, seed = 7) {
  const target = await bound();
  const atTarget: Arrival[] = [];
  target.on("message", (m, r) => {
    atTarget.push({ index: m.readUInt32BE(0), at: performance.now() });
    target.send(m, r.port, r.address);
  });
  const relay = await ImpairmentRelay.start({ target: { port: target.address().port }, profile, seed });
  const client = await bound();
  const echoed: Arrival[] = [];
  client.on("message", (m) => echoed.push({ index: m.readUInt32BE(0), at: performance.now() }));
  const sentAt: number[] = [];
  const send = (index: number, size = 1000) => {
    const b = Buffer.alloc(size);
    b.writeUInt32BE(index, 0);
    sentAt[index] = performance.now();
    client.send(b, relay.port, "127.0.0.1");
  };
  const close = async () => {
    if (!open.delete(close)) return;
    await relay.close();
    client.close();
    target.close();
  };
  open.add(close);
  return { relay, send, atTarget, echoed, sentAt, close };
}

async function sendPaced(send: (i: number) => void, n: number, perMs = 10) {
  for (let i = 0; i < n; i++) {
    send(i);
    if (i % perMs === perMs - 1) await sleep(1);
  }
}

test("clean profile: every packet arrives, in order, and replies come back", async () => {
  const r = await rig({});
  await sendPaced(r.send, 300);
  await sleep(150);
  assert.is(r.atTarget.length, 300);
  assert.equal(r.atTarget.map((a) => a.index), [...Array(300).keys()]);
  assert.is(r.echoed.length, 300);
  assert.is(r.relay.stats().flows, 1);
  await r.close();
});

test("loss is seeded: the same seed drops the same packets, another seed others", async () => {
  const runs: number[][] = [];
  for (const seed of [11, 11, 12]) {
    const r = await rig({ up: { loss: 0.1 } }, seed);
    await sendPaced(r.send, 1000);
    await sleep(150);
    const got = new Set(r.atTarget.map((a) => a.index));
    runs.push([...Array(1000).keys()].filter((i) => !got.has(i)));
    assert.is(r.relay.stats().up.dropped, runs.at(-1)!.length);
    await r.close();
  }
  assert.ok(runs[0]!.length > 50 && runs[0]!.length < 150, `dropped ${runs[0]!.length} of 1000 at 10%`);
  assert.equal(runs[0], runs[1]);
  assert.not.equal(runs[0], runs[2]);
});

test("burst loss drops in runs", async () => {
  const r = await rig({ up: { burst: { enter: 0.02, leave: 0.2, loss: 1 } } }, 3);
  await sendPaced(r.send, 2000);
  await sleep(150);
  const got = new Set(r.atTarget.map((a) => a.index));
  let runs = 0, lost = 0;
  for (let i = 0; i < 2000; i++) {
    if (!got.has(i)) {
      lost++;
      if (got.has(i - 1) || i === 0) runs++;
    }
  }
  assert.ok(lost > 0 && runs > 0);
  assert.ok(lost / runs > 2, `mean burst ${lost / runs} packets`);
  await r.close();
});

test("delay and jitter hold each packet back without reordering it", async () => {
  const r = await rig({ up: { delayMs: 40, jitterMs: 20 } });
  await sendPaced(r.send, 100, 5);
  await sleep(200);
  assert.is(r.atTarget.length, 100);
  for (const a of r.atTarget) assert.ok(a.at - r.sentAt[a.index]! >= 39, `packet ${a.index} early`);
  assert.equal(r.atTarget.map((a) => a.index), [...Array(100).keys()]);
  await r.close();
});

test("a rate limit serialises packets and drops what overflows its queue", async () => {
  // 400 kbit/s: a 1,000-byte packet takes 20 ms; a 100 ms queue holds about 5.
  const r = await rig({ up: { rateKbps: 400, queueMs: 100 } });
  for (let i = 0; i < 40; i++) r.send(i);
  await sleep(400);
  const s = r.relay.stats().up;
  assert.ok(s.queueDrops > 20, `queue drops ${s.queueDrops}`);
  assert.is(r.atTarget.length, s.delivered);
  const first = r.atTarget[0]!.at;
  const last = r.atTarget.at(-1)!.at;
  assert.ok(last - first >= (r.atTarget.length - 1) * 20 - 5, `spread ${last - first} ms for ${r.atTarget.length}`);
  await r.close();
});

test("blocked drops everything; switching the profile live restores the path", async () => {
  const r = await rig({ name: "UDP blocked", up: { blocked: true }, down: { blocked: true } });
  for (let i = 0; i < 20; i++) r.send(i);
  await sleep(50);
  assert.is(r.atTarget.length, 0);
  r.relay.setProfile({ name: "clean" });
  for (let i = 20; i < 40; i++) r.send(i);
  await sleep(50);
  assert.is(r.atTarget.length, 20);
  assert.is(r.echoed.length, 20);
  assert.is(r.relay.profileName, "clean");
  await r.close();
});

test("downlink impairment applies to replies only", async () => {
  const r = await rig({ down: { loss: 1 } });
  for (let i = 0; i < 20; i++) r.send(i);
  await sleep(50);
  assert.is(r.atTarget.length, 20);
  assert.is(r.echoed.length, 0);
  await r.close();
});

test.run();
