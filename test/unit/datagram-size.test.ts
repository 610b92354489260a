// Issue 5's stall: after heavy loss QUIC lowers its path MTU (black-hole detection), and a
// datagram bigger than the new size is refused without a word, so every full-size fragment was
// lost and video stayed at 0 fps. Checked here without a network: the relay tells the group the
// smaller size, the node's session notices it before writing, and a terminal fragments to its
// own transport's size. The transports are stand-ins (Node 20 has no WebTransport); their
// `maxDatagramSize` is changed by the test as QUIC would change it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Relay, type GroupSpec, type RelayPeer } from "../../media/relay/relay.ts";
import { NodeSession } from "../../media/session.ts";
import type { TransportSession } from "../../media/transport/quic.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { decodeTerminalMessage, encodeControl, type NodeMessage } from "../../src/protocol/control.ts";
import { frame, FrameDecoder } from "../../src/protocol/framing.ts";
import { fragmentFrame, readHeader } from "../../src/protocol/media.ts";
import type { CloseReason } from "../../src/protocol/codes.ts";
import { DEFAULT_GROUP_ATTRIBUTES } from "../../src/types.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class FakePeer implements RelayPeer {
  control: NodeMessage[] = [];
  constructor(public maxDatagramSize = 1200) {}
  sendControl(msg: NodeMessage) { this.control.push(msg); }
  sendDatagram() { return true; }
  sendObject() { return true; }
  close(_reason: CloseReason) {}
  sizes() { return this.control.filter((m) => m.t === "datagram-size").map((m) => (m as { maxDatagramSize: number }).maxDatagramSize); }
}

function group() {
  const relay = new Relay({ now: () => 1_000_000 });
  const spec: GroupSpec = {
    groupId: "grp_1", consultationId: "cns_1", clinicId: "cln_1", attributes: { ...DEFAULT_GROUP_ATTRIBUTES },
    members: [{ terminalId: "trm_a", role: "requester" }, { terminalId: "trm_b", role: "consultant" }],
    expiresAt: 1_000_000 + 3600_000,
  };
  relay.reserve(spec);
  const admit = (i: 0 | 1, peer: RelayPeer) => {
    const r = relay.admit({ claims: { sub: spec.members[i]!.terminalId, role: spec.members[i]!.role, jti: `j${i}`, cid: "cns_1", gid: "grp_1", exp: 2e9 }, peer });
    if (!r.ok) throw new Error(r.message);
    return r.membership;
  };
  return { relay, admit };
}

test("relay: a member's smaller datagram size becomes the group's, and every member hears it once", () => {
  const { relay, admit } = group();
  const a = new FakePeer(1200);
  const b = new FakePeer(1200);
  admit(0, a);
  const mb = admit(1, b);
  b.maxDatagramSize = 1100;
  relay.datagramSizeChanged(mb);
  assert.equal(a.sizes(), [1100]);
  assert.equal(b.sizes(), [1100]);
  relay.datagramSizeChanged(mb); // nothing changed since
  assert.equal(a.sizes(), [1100]);
});

/** A stand-in for one QUIC session as the node sees it. */
function fakeTransport() {
  const written: Uint8Array[] = [];
  const t = {
    url: "https://node/v1/session",
    maxDatagramSize: 1200,
    datagrams: { readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>({ write: (d) => { written.push(d); } }) },
    incomingBidirectionalStreams: new ReadableStream(),
    incomingUnidirectionalStreams: new ReadableStream(),
    createUnidirectionalStream: async () => new WritableStream<Uint8Array>(),
    close() {},
    closed: new Promise(() => {}),
  };
  return { t: t as TransportSession & { maxDatagramSize: number }, written };
}

test("node session: a datagram over the transport's current size is not written; the group learns the new size", async () => {
  const { relay, admit } = group();
  const other = new FakePeer(1200);
  admit(0, other);
  const { t, written } = fakeTransport();
  const logs: string[] = [];
  const s = new NodeSession(t, { relay, verifyToken: async () => { throw new Error("unused"); }, log: (m) => logs.push(m) });
  s.membership = admit(1, s);
  const full = fragmentFrame({ flags: 0, track: 1, source: 1, sequence: 0, timestamp: 1 }, new Uint8Array(3000), 1200);
  assert.ok(s.sendDatagram(full[0]!), "fits while the path takes 1200");
  t.maxDatagramSize = 1150; // QUIC lowered the path MTU
  assert.not.ok(s.sendDatagram(full[1]!), "refused: it would be dropped by the transport anyway");
  assert.ok(s.sendDatagram(full[2]!), "the short last fragment still fits");
  await sleep(5);
  assert.equal(written.map((d) => d.length), [full[0]!.length, full[2]!.length]);
  assert.is(s.maxDatagramSize, 1150);
  assert.equal(other.sizes(), [1150], "the sender is told to fragment smaller");
  assert.ok(logs.includes("datagram size shrank"));
  const smaller = fragmentFrame({ flags: 0, track: 1, source: 1, sequence: 1, timestamp: 1 }, new Uint8Array(3000), 1150);
  for (const d of smaller) assert.ok(s.sendDatagram(d), "fragments of the new size go through");
});

test("terminal: fragments to its own transport's size when QUIC lowered it below the group's", async () => {
  const sent: Uint8Array[] = [];
  const control = (() => {
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    return { readable: new ReadableStream<Uint8Array>({ start: (c) => { ctl = c; } }), push: (m: NodeMessage) => ctl.enqueue(frame(encodeControl(m))) };
  })();
  const dec = new FrameDecoder();
  const datagrams = { maxDatagramSize: 1200, readable: new ReadableStream<Uint8Array>(), writable: new WritableStream<Uint8Array>({ write: (d) => { sent.push(d); } }) };
  class FakeWT {
    ready = Promise.resolve();
    closed = new Promise<WebTransportCloseInfo>(() => {});
    datagrams = datagrams;
    incomingUnidirectionalStreams = new ReadableStream();
    incomingBidirectionalStreams = new ReadableStream();
    constructor(readonly url: string) {}
    async createBidirectionalStream() {
      return {
        readable: control.readable,
        writable: new WritableStream<Uint8Array>({
          write: (chunk) => {
            for (const f of dec.push(chunk)) {
              if (decodeTerminalMessage(f).t !== "join") continue;
              control.push({
                t: "welcome", v: 1, sessionId: "s1", consultationId: "c1", groupId: "g1",
                self: { terminalId: "t1", role: "requester", slot: 1 }, members: [], maxDatagramSize: 1200, pingIntervalMs: 60_000,
              } as NodeMessage);
            }
          },
        }),
      };
    }
    close() {}
  }
  const s = await TerminalSession.connect({ url: "https://fake/v1/session", token: "a.b.c", WebTransport: FakeWT as unknown as typeof WebTransport });
  s.sendFrame(1, new Uint8Array(3000));
  await sleep(5);
  assert.ok(sent.every((d) => d.length <= 1200) && sent.some((d) => d.length > 1150), "the group's size while the transport takes it");
  sent.length = 0;
  datagrams.maxDatagramSize = 1150;
  s.sendFrame(1, new Uint8Array(3000));
  await sleep(5);
  assert.ok(sent.length >= 3, `fragments: ${sent.length}`);
  assert.ok(sent.every((d) => d.length <= 1150), `sizes ${sent.map((d) => d.length)}`);
  assert.is(readHeader(sent[0]!).fragmentCount, sent.length);
  await s.leave();
});

test.run();
