// The edge crashes during a call: media goes on (the node does not depend on the edge per
// packet), a terminal leaves and comes back while the edge is down, and once the edge is up
// again on the same port and database the node's queued events reach it — nothing lost, each
// recorded once with the time it happened. Real edge (Deno/SQLite), real node; runs under Deno.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { TerminalSession, type FrameEvent } from "../../src/terminal/session.ts";
import { Track } from "../../src/protocol/media.ts";
import { ClinicClient, type CreatedConsultation } from "../support/clinic-client.ts";
import { once, payload, sleep } from "../media/support.ts";
import { TrustStack } from "./stack.ts";

const t = suite("edge restart during a call");
let stack: TrustStack;
let clinic: ClinicClient;
let created: CreatedConsultation;
const open: TerminalSession[] = [];
const join = async (token: string, resume?: string) => {
  const s = await TerminalSession.connect({ url: created.group.node.url, certHashes: created.group.node.certHashes, token, resume, sdk: "trust-test" });
  open.push(s);
  return s;
};

/** Sends `n` frames each way, 20 ms apart; resolves with how many arrived intact each way. */
async function exchange(a: TerminalSession, b: TerminalSession, n: number, tag: number): Promise<[number, number]> {
  const got = new Map<TerminalSession, number>([[a, 0], [b, 0]]);
  const offs = [a, b].map((s) => s.on("frame", (f: FrameEvent) => {
    const i = f.header.timestamp - tag * 1_000_000;
    if (i >= 0 && i < n && Buffer.from(f.payload).equals(Buffer.from(payload(f.header.track, i, f.payload.length)))) got.set(s, got.get(s)! + 1);
  }));
  for (let i = 0; i < n; i++) {
    for (const s of [a, b]) {
      s.sendFrame(Track.audio, payload(Track.audio, i, 160), { timestamp: tag * 1_000_000 + i });
      s.sendFrame(Track.video, payload(Track.video, i, i % 10 === 0 ? 6000 : 900), { timestamp: tag * 1_000_000 + i, keyframe: i % 10 === 0 });
    }
    await sleep(20);
  }
  await sleep(800);
  for (const off of offs) off();
  return [got.get(b)!, got.get(a)!];
}

t.before(async () => {
  stack = await TrustStack.start();
  clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  created = await clinic.newConsultation("K", ["Ward 3 cart", "Radiology, remote"]);
});

t.after(async () => {
  for (const s of open) await s.leave().catch(() => {});
  await stack?.stop();
});

t("calls go on while the edge is down; queued events arrive once it is back; nothing lost", async () => {
  const a = await join(created.tokens[0]!.token);
  const aConnected = once(a, "connected", 10_000);
  let b = await join(created.tokens[1]!.token);
  await aConnected;
  await clinic.waitForConsultation(created.id, (c) => c.status === "connected");
  await stack.reporterDrained();

  await stack.stopEdge(true); // SIGKILL: a crash, not a clean stop
  const downAt = Date.now();
  assert.is((await fetch(`${stack.edgeUrl}/healthz`).catch(() => ({ ok: false }))).ok, false, "the edge is down");

  // Media keeps flowing both ways through the node.
  const [toB, toA] = await exchange(a, b, 60, 1);
  assert.is(toB, 120, `a → b during the outage: ${toB}/120 frames`);
  assert.is(toA, 120, `b → a during the outage: ${toA}/120 frames`);

  // The consultant drops out and comes back (resume) while the edge is down: `left` and
  // `joined` are queued at the node.
  const resume = b.resume;
  const peerLeft = once<{ reason: string }>(a, "peer-left", 5000);
  await b.leave();
  assert.is((await peerLeft).reason, "bye");
  const leftAt = Date.now();
  const peerBack = once(a, "peer-joined", 5000);
  b = await join(created.tokens[1]!.token, resume);
  await peerBack;
  const [toB2, toA2] = await exchange(a, b, 30, 2);
  assert.equal([toB2, toA2], [60, 60], "media after the rejoin, edge still down");
  const queued = (await stack.nodeStats()).reporterQueue;
  assert.ok(queued >= 2, `events queued at the node while the edge is down: ${queued}`);
  assert.not.ok(a.closed || b.closed);

  await stack.startEdge();
  const upAt = Date.now();
  await stack.reporterDrained(25_000);
  const rec = await clinic.waitForConsultation(created.id, (c) => c.events.filter((e: any) => e.action === "join").length >= 3);
  const leaves = rec.events.filter((e: any) => e.action === "leave");
  const joins = rec.events.filter((e: any) => e.action === "join");
  assert.is(leaves.length, 1, "the leave during the outage, recorded once");
  assert.is(joins.length, 3, "two joins, then the rejoin during the outage, each once");
  const leaveAt = Date.parse(leaves[0].at);
  assert.ok(leaveAt >= downAt - 50 && leaveAt <= leftAt + 1000 && leaveAt < upAt, "recorded with the time it happened, not when it arrived");
  const consultant = rec.participants.find((p: any) => p.role === "consultant");
  assert.ok(consultant.joinedAt && consultant.leftAt === null, "back in after the rejoin");
  assert.is(rec.status, "connected");

  // The node's delivery is retried, never duplicated: one more round of heartbeats changes nothing.
  await sleep(1200);
  const again = (await clinic.getConsultation(created.id)).body;
  assert.is(again.events.length, rec.events.length);

  // And the edge works again end to end: ending reaches both terminals.
  const ended = once<string>(a, "ended", 5000);
  assert.is((await clinic.endConsultation(created.id)).status, 200);
  assert.is(await ended, "consultationEnded");
});

t.run();
