// The connectivity ladder's decisions (client/sdk/connect.ts) and the readiness report's
// wording (client/sdk/readiness.ts), with fake WebTransport constructors: which rung is tried
// when, who wins a race, that the loser is closed, and what a blocked network is told to open.
// Fakes stand in for the browser's WebTransport and the WebSocket ponyfill, which need a
// browser and a network; the real ones are exercised in test/browser/fallback.test.ts.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Connector, droppedIsAnError, LadderError, openLadder, openedAs } from "../../client/sdk/connect.ts";
import { buildReport } from "../../client/sdk/readiness.ts";

type Behaviour = { readyAfterMs?: number; failAfterMs?: number; throws?: boolean };

/** A fake WebTransport whose `ready` settles as told; records every instance and close. */
function fakeTransport(name: string, b: Behaviour, log: string[]) {
  return class Fake {
    readonly ready: Promise<void>;
    readonly closed: Promise<void>;
    private closeIt!: () => void;
    closedCalls = 0;
    constructor(readonly url: string) {
      if (b.throws) throw new Error(`${name} refused the URL`);
      log.push(`${name}:open`);
      this.closed = new Promise((r) => { this.closeIt = r; });
      this.ready = new Promise((resolve, reject) => {
        if (b.readyAfterMs !== undefined) setTimeout(() => { log.push(`${name}:ready`); resolve(); }, b.readyAfterMs);
        else if (b.failAfterMs !== undefined) setTimeout(() => { log.push(`${name}:failed`); reject(new Error(`${name} failed`)); }, b.failAfterMs);
      });
      this.ready.catch(() => {});
    }
    close() {
      this.closedCalls++;
      log.push(`${name}:close`);
      this.closeIt();
    }
  } as unknown as typeof WebTransport;
}

const target = { url: "https://node.example:4433/v1/session", fallbackUrl: "https://node.example:4433/v1/session" };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const t = suite("connectivity ladder");

t("QUIC ready within its head start wins; the fallback is never started", async () => {
  const log: string[] = [];
  const o = await openLadder(target, { headStartMs: 100, native: fakeTransport("quic", { readyAfterMs: 20 }, log), fallback: fakeTransport("ws", { readyAfterMs: 1 }, log) });
  assert.is(o.rung, "quic");
  await sleep(150);
  assert.equal(log, ["quic:open", "quic:ready"]);
});

t("QUIC silent (UDP dropped): the fallback starts after the head start and wins; QUIC is closed", async () => {
  const log: string[] = [];
  const t0 = Date.now();
  const o = await openLadder(target, { headStartMs: 80, native: fakeTransport("quic", {}, log), fallback: fakeTransport("ws", { readyAfterMs: 10 }, log) });
  assert.is(o.rung, "websocket");
  assert.is(o.url, target.fallbackUrl);
  assert.is(o.quicError, "not ready in time");
  assert.ok(Date.now() - t0 >= 80, "the fallback waited for the head start");
  assert.equal(log, ["quic:open", "ws:open", "ws:ready", "quic:close"]);
});

t("QUIC failing fast (port unreachable) starts the fallback at once, without the head start", async () => {
  const log: string[] = [];
  const t0 = Date.now();
  const o = await openLadder(target, { headStartMs: 5000, native: fakeTransport("quic", { failAfterMs: 10 }, log), fallback: fakeTransport("ws", { readyAfterMs: 10 }, log) });
  assert.is(o.rung, "websocket");
  assert.is(o.quicError, "quic failed");
  assert.ok(Date.now() - t0 < 1000, "no head start waited");
});

t("QUIC ready after the fallback started still wins when it is first; the WebSocket is closed", async () => {
  const log: string[] = [];
  const o = await openLadder(target, { headStartMs: 20, native: fakeTransport("quic", { readyAfterMs: 40 }, log), fallback: fakeTransport("ws", { readyAfterMs: 200 }, log) });
  assert.is(o.rung, "quic");
  await sleep(250);
  assert.ok(log.includes("ws:close"), `the losing WebSocket is closed: ${log.join(", ")}`);
});

t("no fallback URL: QUIC only, and its failure is the error", async () => {
  const log: string[] = [];
  try {
    await openLadder({ url: target.url }, { native: fakeTransport("quic", { failAfterMs: 5 }, log), fallback: fakeTransport("ws", { readyAfterMs: 1 }, log) });
    assert.unreachable("should fail");
  } catch (err) {
    assert.instance(err, LadderError);
    assert.equal((err as LadderError).attempts, [{ rung: "quic", error: "quic failed" }]);
  }
  assert.not.ok(log.some((l) => l.startsWith("ws")), "no WebSocket without a fallback URL");
});

t("both rungs failing reject with what each did", async () => {
  const log: string[] = [];
  try {
    await openLadder(target, { headStartMs: 10, native: fakeTransport("quic", { failAfterMs: 30 }, log), fallback: fakeTransport("ws", { failAfterMs: 5 }, log) });
    assert.unreachable("should fail");
  } catch (err) {
    assert.instance(err, LadderError);
    const rungs = (err as LadderError).attempts.map((a) => a.rung).sort();
    assert.equal(rungs, ["quic", "websocket"]);
  }
});

t("nothing ready in time: timeout names both rungs and closes them", async () => {
  const log: string[] = [];
  try {
    await openLadder(target, { headStartMs: 10, timeoutMs: 60, native: fakeTransport("quic", {}, log), fallback: fakeTransport("ws", {}, log) });
    assert.unreachable("should time out");
  } catch (err) {
    assert.match((err as Error).message, /quic: not ready within 60 ms; websocket: not ready within 60 ms/);
  }
  assert.ok(log.includes("quic:close") && log.includes("ws:close"));
});

t("datagrams blocked (QUIC streams only): a QUIC session is the quic-streams rung, with the fallback still racing it", async () => {
  const log: string[] = [];
  const o = await openLadder(target, { headStartMs: 100, datagramsBlocked: true, native: fakeTransport("quic", { readyAfterMs: 20 }, log), fallback: fakeTransport("ws", { readyAfterMs: 1 }, log) });
  assert.is(o.rung, "quic-streams");
  assert.equal(log, ["quic:open", "quic:ready"]);
  // QUIC does not open after all: the fallback after the head start, and the failure is named by its rung.
  const o2 = await openLadder(target, { headStartMs: 50, datagramsBlocked: true, native: fakeTransport("quic", { failAfterMs: 10 }, []), fallback: fakeTransport("ws", { readyAfterMs: 5 }, []) });
  assert.is(o2.rung, "websocket");
  assert.is(o2.quicError, "quic failed");
  // And the fallback wins when it is ready first once it started.
  const o3 = await openLadder(target, { headStartMs: 10, datagramsBlocked: true, native: fakeTransport("quic", { readyAfterMs: 200 }, []), fallback: fakeTransport("ws", { readyAfterMs: 5 }, []) });
  assert.is(o3.rung, "websocket");
});

t("skipQuic and a browser without WebTransport go straight to the fallback", async () => {
  const log: string[] = [];
  const o = await openLadder(target, { headStartMs: 5000, skipQuic: true, native: fakeTransport("quic", { readyAfterMs: 1 }, log), fallback: fakeTransport("ws", { readyAfterMs: 5 }, log) });
  assert.is(o.rung, "websocket");
  assert.is(o.quicError, "skipped");
  assert.equal(log, ["ws:open", "ws:ready"]);
  const o2 = await openLadder(target, { native: undefined, fallback: fakeTransport("ws", { readyAfterMs: 5 }, []) });
  assert.is(o2.rung, "websocket");
});

t("a constructor that throws counts as a failed rung", async () => {
  const o = await openLadder(target, { headStartMs: 5000, native: fakeTransport("quic", { throws: true }, []), fallback: fakeTransport("ws", { readyAfterMs: 5 }, []) });
  assert.is(o.rung, "websocket");
  assert.is(o.quicError, "quic refused the URL");
});

t("Connector: after QUIC lost on this network, the next session (a node move) races both at once", async () => {
  const opened: string[] = [];
  const c = new Connector({ headStartMs: 1200, native: fakeTransport("quic", {}, []), fallback: fakeTransport("ws", { readyAfterMs: 5 }, []), onOpened: (o) => opened.push(o.rung) });
  assert.is(c.nextOptions().headStartMs, 1200);
  const t0 = Date.now();
  await c.open(target);
  assert.ok(Date.now() - t0 >= 1200);
  assert.is(c.rung, "websocket");
  assert.is(c.nextOptions().headStartMs, 0);
  const t1 = Date.now();
  await c.open(target);
  assert.ok(Date.now() - t1 < 500, "no head start on the second session");
  assert.equal(opened, ["websocket", "websocket"]);
  // Skipping QUIC on purpose is not a verdict on the network.
  const s = new Connector({ skipQuic: true, headStartMs: 1200, native: fakeTransport("quic", {}, []), fallback: fakeTransport("ws", { readyAfterMs: 1 }, []) });
  await s.open(target);
  assert.is(s.nextOptions().headStartMs, 1200);
});

t("openedAs hands the opened session to TerminalSession.connect's constructor option", () => {
  const wt = { marker: 1 } as unknown as WebTransport;
  const Ctor = openedAs(wt);
  assert.is(new Ctor("https://ignored/", {}), wt);
});

t("a fallback session cut off (a transport code, not a Huizhen one) rejects `closed`, so failover moves", async () => {
  const session = (code: number) => {
    let end!: (i: WebTransportCloseInfo) => void;
    const wt = { closed: new Promise<WebTransportCloseInfo>((r) => { end = r; }), close() { end({ closeCode: 0, reason: "" }); }, ready: Promise.resolve(), tag: "x" };
    return { wt: wt as unknown as WebTransport, end: () => end({ closeCode: code, reason: "" }) };
  };
  const cut = session(8);
  const a = droppedIsAnError(cut.wt);
  cut.end();
  assert.is(await a.closed.then(() => "resolved", (e) => e.name), "WebTransportError");
  assert.is((a as unknown as { tag: string }).tag, "x", "everything else passes through");
  const refused = session(4002);
  const b = droppedIsAnError(refused.wt);
  refused.end();
  assert.equal(await b.closed, { closeCode: 4002, reason: "" }, "the node's own close codes pass");
  const mine = session(8);
  const c = droppedIsAnError(mine.wt);
  c.close();
  assert.equal(await c.closed, { closeCode: 0, reason: "" }, "a close from this side is normal");
});

t.run();

const r = suite("readiness report");
const base = { nodeId: "node-fra-1", url: "https://media.example:4433/v1/session", fallbackUrl: "https://media.example:443/v1/session" };

r("UDP blocked: QUIC rungs blocked, the fallback works, IT is told what to open and where", () => {
  const rep = buildReport({
    ...base,
    quic: { opened: false, sent: 20, rtts: [], error: "no answer within 2500 ms" },
    websocket: { opened: true, handshakeMs: 40, sent: 20, rtts: Array(20).fill(12) },
    uplink: { kbps: 8000, atLeast: true, bytes: 385_000, ms: 50, over: "websocket" },
  });
  assert.is(rep.best, "websocket");
  assert.is(rep.rungs.quicDatagrams.ok, false);
  assert.is(rep.rungs.quicStreams.ok, false);
  assert.is(rep.rungs.websocket.ok, true);
  assert.equal(rep.target, { host: "media.example", udpPort: 4433, tcpHost: "media.example", tcpPort: 443 });
  assert.match(rep.actions[0]!, /Allow UDP 4433 to media\.example/);
  assert.match(rep.text, /QUIC datagrams\s+UDP 4433 to media\.example: BLOCKED/);
  assert.match(rep.text, /TCP fallback\s+TCP 443 to media\.example \(HTTPS\/WebSocket\): OK/);
  assert.match(rep.text, /Call will use: TCP fallback \(UDP blocked\)/);
  assert.match(rep.text, /Uplink at least 8\.0 Mbit\/s/);
  assert.is(rep.rttMs, 12);
});

r("QUIC opens but datagrams never come back: the call uses QUIC streams and the datagram port is asked for", () => {
  const rep = buildReport({ ...base, quic: { opened: true, handshakeMs: 30, sent: 20, rtts: [] }, websocket: { opened: true, sent: 20, rtts: [5, 5] } });
  assert.is(rep.rungs.quicStreams.ok, true);
  assert.is(rep.rungs.quicDatagrams.ok, false);
  assert.is(rep.best, "quic-streams");
  assert.match(rep.actions[0]!, /Allow UDP datagrams on UDP 4433 to media\.example/);
  assert.match(rep.text, /Call will use: QUIC streams only \(datagrams blocked\)/);
  assert.is(rep.rttMs, 5, "the round trip measured over the fallback stands in");
});

r("everything works: QUIC is used, nothing to change; a slow uplink and loss are flagged", () => {
  const ok = buildReport({ ...base, quic: { opened: true, handshakeMs: 20, sent: 20, rtts: Array(20).fill(8) }, websocket: { opened: true, sent: 20, rtts: [9] } });
  assert.is(ok.best, "quic-datagrams");
  assert.equal(ok.actions, []);
  assert.match(ok.text, /Nothing to change on this network/);
  const poor = buildReport({ ...base, quic: { opened: true, sent: 20, rtts: Array(18).fill(300) }, uplink: { kbps: 600, atLeast: false, bytes: 100_000, ms: 1300, over: "quic" } });
  assert.ok(poor.actions.some((a) => /round trip to the media server is 300 ms/.test(a)));
  assert.ok(poor.actions.some((a) => /10\.0% of probes were lost/.test(a)));
  assert.ok(poor.actions.some((a) => /Uplink about 600 kbit\/s/.test(a)));
});

r("nothing gets through: both ports are named", () => {
  const rep = buildReport({ ...base, quic: { opened: false, sent: 20, rtts: [], error: "x" }, websocket: { opened: false, sent: 20, rtts: [], error: "y" } });
  assert.is(rep.best, "none");
  assert.match(rep.actions[0]!, /allow TCP 443 to media\.example .* and UDP 4433 to media\.example/);
});

r.run();
