// The "QUIC streams only" rung against a real media node process: a terminal whose network
// drops QUIC datagrams joins with `datagrams: false` and exchanges media both ways with a
// terminal on datagrams; everything it sends and gets rides the session's streams.
// The datagram-dropping network is a stand-in: a middlebox that passes QUIC streams but drops
// DATAGRAM frames cannot be built on loopback (QUIC packets are encrypted, so a relay cannot
// tell the two apart). The terminal's WebTransport is wrapped so that its datagrams go nowhere
// in either direction, which is what such a network does to it.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { pinnedCertificates } from "../../src/terminal/pinning.ts";
import { encodeControl } from "../../src/protocol/control.ts";
import { frame } from "../../src/protocol/framing.ts";
import { exchangeBothWays, NodeHarness, once, sleep } from "./support.ts";

const t = suite("media node: QUIC streams only (datagrams blocked)");
let h: NodeHarness;

t.before(async () => {
  h = await NodeHarness.start();
});
t.after(async () => {
  await h?.stop();
});

/** Native WebTransport whose datagrams are dropped both ways (written: swallowed; readable: never yields). */
function datagramsBlocked(counter: { writes: number }): typeof WebTransport {
  const Native = globalThis.WebTransport;
  return function (url: string, init: WebTransportOptions) {
    const wt = new Native(url, init);
    const datagrams = {
      maxDatagramSize: wt.datagrams.maxDatagramSize,
      readable: new ReadableStream<Uint8Array>({}),
      writable: new WritableStream<Uint8Array>({ write() { counter.writes++; } }),
    };
    return new Proxy(wt, {
      get(target, prop) {
        if (prop === "datagrams") return datagrams;
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  } as unknown as typeof WebTransport;
}

t("a terminal whose datagrams are blocked exchanges media both ways over streams", async () => {
  const g = await h.group();
  const a = await h.connect(await h.token(g, 0));
  const connectedA = once(a, "connected", 5000);
  const blocked = { writes: 0 };
  const b = await h.connect(await h.token(g, 1), { WebTransport: datagramsBlocked(blocked), streamsOnly: true });
  try {
    await connectedA;
    // Frames of many fragments (big keyframes) and frames of one.
    await exchangeBothWays(a, b, ["datagram", "streams-only"], (i) => (i % 20 === 0 ? 20_000 : 300 + ((i * 977) % 5000)));
    assert.is(blocked.writes, 0, "the streams-only terminal wrote no datagram");
    // Its receive reports still feed the node's estimate of the path to it.
    await sleep(700);
    const stats = await h.api("GET", "/v1/stats");
    assert.is(stats.status, 200);
    // The node forwards them as the datagrams they stand for (same policy, same counters), and refused none.
    const c = stats.body.counters;
    assert.ok(c.datagramsIn >= 4 * 60 && c.queueDropped === 0, `forwarded as datagrams, nothing refused: ${JSON.stringify(c)}`);
    const q = b.quality.receive.get(a.self.slot);
    assert.ok(q && (q.estimateKbps ?? 0) > 0, `the node reports what the streams-only terminal receives: ${JSON.stringify(q)}`);
  } finally {
    await a.leave().catch(() => {});
    await b.leave().catch(() => {});
  }
});

t("a join with a malformed datagrams flag is refused as a protocol error", async () => {
  const g = await h.group();
  const token = await h.token(g, 0);
  const wt = new WebTransport(h.node.url, pinnedCertificates(h.node.certHashes));
  await wt.ready;
  const bidi = await wt.createBidirectionalStream();
  const w = bidi.writable.getWriter();
  await w.write(frame(encodeControl({ t: "join", v: 1, token, datagrams: "no" } as never)));
  const info = await Promise.race([wt.closed, sleep(5000).then(() => undefined)]).catch((e) => e);
  assert.ok(info, "the node closed the session");
  assert.is((info as WebTransportCloseInfo).reason, "protocolError");
});

t.run();
