// The terminal's pacer queue with a deadline for video (`maxVideoQueueMs`): video that waited
// too long for the pacer is dropped with the rest of its frame instead of being sent late;
// audio is never dropped; without the option nothing is. The transport is a stand-in (Node 20
// has no WebTransport) that records what the pacer hands it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TerminalSession, type ConnectOptions } from "../../src/terminal/session.ts";
import { decodeTerminalMessage, encodeControl, type NodeMessage } from "../../src/protocol/control.ts";
import { frame, FrameDecoder } from "../../src/protocol/framing.ts";
import { readHeader } from "../../src/protocol/media.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function open(opts: Partial<ConnectOptions>) {
  const sent: Uint8Array[] = [];
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const control = new ReadableStream<Uint8Array>({ start: (c) => { ctl = c; } });
  const dec = new FrameDecoder();
  class FakeWT {
    ready = Promise.resolve();
    closed = new Promise<WebTransportCloseInfo>(() => {});
    datagrams = { maxDatagramSize: 1200, readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>({ write: (d) => { sent.push(d); } }) };
    incomingUnidirectionalStreams = new ReadableStream();
    incomingBidirectionalStreams = new ReadableStream();
    constructor(readonly url: string) {}
    async createBidirectionalStream() {
      return {
        readable: control,
        writable: new WritableStream<Uint8Array>({
          write: (chunk) => {
            for (const f of dec.push(chunk)) {
              if (decodeTerminalMessage(f).t !== "join") continue;
              ctl.enqueue(frame(encodeControl({
                t: "welcome", v: 1, sessionId: "s1", consultationId: "c1", groupId: "g1",
                self: { terminalId: "t1", role: "requester", slot: 1 }, members: [], maxDatagramSize: 1200, pingIntervalMs: 60_000,
              } as NodeMessage)));
            }
          },
        }),
      };
    }
    close() {}
  }
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "a.b.c", WebTransport: FakeWT as unknown as typeof WebTransport, ...opts });
  return { s, sent };
}

const seqs = (ds: Uint8Array[], track: number) => [...new Set(ds.filter((d) => d[2] === track).map((d) => readHeader(d).sequence))];

test("video that waited past the deadline is dropped as whole frames; audio and fresh video still go", async () => {
  // 24 kB/s: a 10-fragment frame takes ~0.5 s to leave, far beyond a 100 ms deadline.
  const { s, sent } = await open({ paceBytesPerSec: 24_000, maxVideoQueueMs: 100, maxDatagramFragments: 100 });
  for (let i = 0; i < 4; i++) s.sendFrame(1, new Uint8Array(10 * 1150));
  s.sendFrame(0, new Uint8Array(80));
  await sleep(400);
  const frames = new Map<number, number>();
  for (const d of sent.filter((d) => d[2] === 1)) frames.set(readHeader(d).sequence, (frames.get(readHeader(d).sequence) ?? 0) + 1);
  assert.ok(seqs(sent, 0).includes(0), "audio went");
  assert.ok(s.counters.sendDropped > 0, "stale video was dropped");
  // What left of the dropped frames: never a frame's tail without the rest of what was queued.
  assert.ok(!frames.has(3), `the last frame waited ~1.5 s worth of pacing: dropped (${[...frames]})`);
  assert.is(s.queuedBytes, 0, "nothing stale is left waiting");
  s.sendFrame(1, new Uint8Array(500));
  await sleep(60);
  assert.ok(seqs(sent, 1).includes(4), "a fresh frame goes out");
  await s.leave();
});

test("without a deadline, every queued datagram is eventually sent", async () => {
  const { s, sent } = await open({ paceBytesPerSec: 200_000, maxDatagramFragments: 100 });
  for (let i = 0; i < 3; i++) s.sendFrame(1, new Uint8Array(10 * 1150));
  await sleep(300);
  assert.is(s.counters.sendDropped, 0);
  assert.equal(seqs(sent, 1), [0, 1, 2]);
  assert.is(sent.filter((d) => d[2] === 1).length, 30);
  await s.leave();
});

test.run();
