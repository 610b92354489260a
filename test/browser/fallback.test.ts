// UDP blocked between Chromium and the media node: both consultation pages still complete the
// consultation (connection-success, video decoded both ways) over the node's TCP fallback
// (WebTransport over WebSocket, media/transport/fallback.ts), within 5 s more than a normal
// join measured in the same run; the page shows the fallback badge and the pre-join readiness
// report names the blocked rung.
//
// How UDP is blocked: the pages' GET /v1/join answer has the node's QUIC URL rewritten to the
// impairment relay with the "UDP blocked" profile (drops every datagram both ways), the way
// loss.test.ts puts a relay in the path; the node's `fallbackUrl` (TCP) is left as the edge sent
// it. Chromium runs with --ignore-certificate-errors in this test only: a browser's WebSocket
// cannot pin the node's self-made certificate by hash, and production operators give the
// fallback a CA-signed certificate instead (MEDIA_FALLBACK_TLS_CERT_FILE, docs/internal-apis.md).
// Every request the pages make is recorded and must stay on 127.0.0.1 (the WebSocket ponyfill's
// package would otherwise contact example.com when it loads); Chromium's own net log is checked
// too, since a WebTransport attempt is not a page "request". A host resolver rule keeps every
// name but loopback unresolvable, so nothing can leave the machine whatever the page does.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Browser, Page } from "playwright-core";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack, type Stack } from "../../scripts/stack.ts";
import { ImpairmentRelay, PROFILES } from "../support/impairment-relay.ts";
import { joinUrlOf, launchChromium, newConsultation, newPage, openAndJoin, sleep, stackLog, stats, waitState, routeNodeThrough } from "./support.ts";

const t = suite("browser call with UDP blocked: TCP fallback");
let stack: Stack;
let browser: Browser;
let relay: ImpairmentRelay;
let netlogDir: string;
const outbound: string[] = [];
const logs: string[] = [];

t.before(async () => {
  stack = await startStack({ log: stackLog });
  netlogDir = await mkdtemp(join(tmpdir(), "hz-netlog-"));
  browser = await launchChromium([
    "--ignore-certificate-errors", `--log-net-log=${join(netlogDir, "net.json")}`,
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
  ]);
  relay = await ImpairmentRelay.start({ target: { port: stack.node.port }, profile: PROFILES["UDP blocked"]!, seed: 1 });
});

t.after(async () => {
  if (logs.length && process.env.HZ_LOG) console.log(logs.join("\n"));
  await browser?.close().catch(() => undefined);
  await relay?.close();
  await stack?.stop();
  await rm(netlogDir, { recursive: true, force: true });
});

async function page(tag: string): Promise<Page> {
  const p = await newPage(browser, (l) => logs.push(`${tag} ${l}`));
  const local = (u: string) => /^(https?|wss?):\/\/(127\.0\.0\.1|localhost)[:/]/.test(u) || u.startsWith("data:") || u.startsWith("blob:");
  p.on("request", (r) => { if (!local(r.url())) outbound.push(`${tag} request ${r.url()}`); });
  p.on("websocket", (w) => { if (!local(w.url())) outbound.push(`${tag} websocket ${w.url()}`); });
  return p;
}

/** Rewrites the node's QUIC URL in GET /v1/join to the relay that drops all UDP. */
function blockUdp(p: Page): Promise<void> {
  return routeNodeThrough(p, stack.node.port, relay.port, { candidates: true });
}

/**
 * Both pages join; returns the second page's join time, ms: from opening the page to the join
 * button being ready (the pre-join network check runs there), plus from its click to
 * connection-success — everything but the person's own pause before clicking.
 */
async function consult(a: Page, b: Page): Promise<number> {
  const c = await newConsultation(stack.edgeUrl, stack.clinicApiKey);
  await openAndJoin(a, joinUrlOf(c, "requester"));
  assert.is(await waitState(a, ["waiting", "call", "error"], 20_000), "waiting");
  const opened = Date.now();
  await b.goto(joinUrlOf(c, "consultant"));
  await b.waitForSelector("#join-btn:not([disabled])", { timeout: 20_000 });
  const checkMs = Date.now() - opened;
  const t0 = Date.now();
  await b.click("#join-btn");
  assert.is(await waitState(b, ["call", "error"], 20_000), "call");
  const joinMs = Date.now() - t0;
  assert.is(await waitState(a, ["call", "error"], 10_000), "call");
  console.log(`  page open → join ready ${checkMs} ms, click → connection-success ${joinMs} ms`);
  return checkMs + joinMs;
}

async function decodedBothWays(a: Page, b: Page): Promise<void> {
  const before = await Promise.all([a, b].map((p) => p.evaluate(() => (window as any).__huizhen.framesDecoded() as number)));
  await sleep(3000);
  const after = await Promise.all([a, b].map((p) => p.evaluate(() => (window as any).__huizhen.framesDecoded() as number)));
  assert.ok(after[0]! - before[0]! >= 10, `requester decodes video (${after[0]! - before[0]!} frames in 3 s)`);
  assert.ok(after[1]! - before[1]! >= 10, `consultant decodes video (${after[1]! - before[1]!} frames in 3 s)`);
}

let normalMs = 0;

t("a normal join (QUIC) for comparison", async () => {
  const a = await page("A0");
  const b = await page("B0");
  normalMs = await consult(a, b);
  const tr = await b.evaluate(() => (window as any).__huizhen.transport);
  assert.is(tr.rung, "quic");
  assert.ok(await b.isHidden("#transport-badge"), "no fallback badge on QUIC");
  const rep = await b.evaluate(() => (window as any).__huizhen.readiness);
  assert.is(rep.best, "quic-datagrams");
  await decodedBothWays(a, b);
  await a.context().close();
  await b.context().close();
});

t("UDP blocked: both pages complete the consultation over the TCP fallback, within 5 s of a normal join", async () => {
  const a = await page("A");
  const b = await page("B");
  await blockUdp(a);
  await blockUdp(b);
  const fallbackMs = await consult(a, b);
  console.log(`  join (page open → connection-success, without the click pause): normal ${normalMs} ms, UDP blocked ${fallbackMs} ms (+${fallbackMs - normalMs} ms)`);
  for (const p of [a, b]) {
    const tr = await p.evaluate(() => (window as any).__huizhen.transport);
    assert.is(tr.rung, "websocket", "the session runs on the fallback");
    assert.is(await p.textContent("#transport-badge"), "Connected over TCP fallback (UDP blocked)");
    assert.ok(await p.isVisible("#transport-badge"), "the badge is shown");
    const success = await p.evaluate(() => (window as any).__huizhen.events.some((e: any) => e.type === "connection-success"));
    assert.ok(success, "connection-success reached the page");
  }
  await decodedBothWays(a, b);
  const s = await stats(b);
  assert.ok(s.recv.framesDecoded > 0 || s.recv.framesRendered > 0, "the consultant renders the requester's video");
  assert.ok(relay.stats().up.dropped > 0, "the pages did try QUIC (the relay dropped it)");
  assert.ok(fallbackMs - normalMs < 5000, `UDP-blocked join ${fallbackMs} ms is within 5 s of the normal ${normalMs} ms`);

  // The pre-join readiness report names the blocked rung and what to open, to where.
  const rep = await b.evaluate(() => (window as any).__huizhen.readiness);
  assert.is(rep.best, "websocket");
  assert.is(rep.rungs.quicDatagrams.ok, false);
  assert.is(rep.rungs.quicStreams.ok, false);
  assert.is(rep.rungs.websocket.ok, true);
  const text = await b.textContent("#readiness-report");
  console.log(text!.split("\n").map((l) => `    ${l}`).join("\n"));
  assert.match(text!, new RegExp(`QUIC datagrams\\s+UDP ${relay.port} to 127\\.0\\.0\\.1: BLOCKED`));
  assert.match(text!, new RegExp(`TCP fallback\\s+TCP ${stack.node.port} to 127\\.0\\.0\\.1 \\(HTTPS/WebSocket\\): OK`));
  assert.match(text!, new RegExp(`Allow UDP ${relay.port} to 127\\.0\\.0\\.1 for best quality`));
  assert.match(text!, /Uplink (at least|about) /);

  await a.evaluate(() => (window as any).__huizhen.leave());
  assert.is(await waitState(b, ["waiting", "ended", "error"], 10_000), "waiting", "the other side sees the leave over the fallback");
});

t("the SDK's ladder without a pre-join hint: QUIC's head start, then the fallback wins and QUIC is dropped", async () => {
  // The page above raced both rungs at once because its readiness check had just found QUIC
  // blocked; a session with no such hint (a clinic app using the SDK directly) gives QUIC its
  // head start first. Real Chromium, real node, same relay.
  const p = await page("S");
  await p.goto(`${stack.edgeUrl}/join`);
  const r = await p.evaluate(async ({ url, fallbackUrl, certHashes }) => {
    const sdk = await import("/sdk/huizhen.js" as string);
    const o = await sdk.openLadder({ url, fallbackUrl, certHashes }, { fallback: sdk.WebSocketTransport, headStartMs: 1200 });
    const out = { rung: o.rung, ms: o.ms, quicError: o.quicError, maxDatagramSize: o.wt.datagrams.maxDatagramSize };
    o.wt.close();
    return out;
  }, { url: stack.node.url.replace(`:${stack.node.port}/`, `:${relay.port}/`), fallbackUrl: stack.node.url, certHashes: stack.node.certHashes });
  console.log(`  SDK ladder with UDP blocked: ${r.rung} after ${Math.round(r.ms)} ms (QUIC: ${r.quicError})`);
  assert.is(r.rung, "websocket");
  assert.ok(r.ms >= 1200 && r.ms < 1200 + 3000, `ready after the head start (${Math.round(r.ms)} ms)`);
  assert.is(r.quicError, "not ready in time");
  await p.context().close();
});

/**
 * Drops the page's QUIC datagrams to the node both ways, streams untouched: what a firewall
 * that passes QUIC but not its DATAGRAM frames does. A relay cannot do this on loopback (QUIC
 * is encrypted end to end), so the page's WebTransport is wrapped instead: a test-only stand-in.
 */
async function dropDatagrams(p: Page, port: number): Promise<void> {
  await p.addInitScript((port: number) => {
    const Native = (window as any).WebTransport;
    (window as any).WebTransport = function (url: string, init: unknown) {
      const wt = new Native(url, init);
      if (!url.includes(`:${port}/`)) return wt;
      const datagrams = {
        get maxDatagramSize() { return wt.datagrams.maxDatagramSize; },
        readable: new ReadableStream({}),
        writable: new WritableStream({ write() {} }),
      };
      return new Proxy(wt, {
        get(target, prop) {
          if (prop === "datagrams") return datagrams;
          const v = Reflect.get(target, prop, target);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
    };
  }, port);
}

t("QUIC datagrams blocked (streams pass): the readiness check says so and the call runs on QUIC streams", async () => {
  const a = await page("DA");
  const b = await page("DB");
  await dropDatagrams(a, stack.node.port);
  await dropDatagrams(b, stack.node.port);
  const ms = await consult(a, b);
  console.log(`  join with datagrams blocked ${ms} ms (normal ${normalMs} ms)`);
  for (const p of [a, b]) {
    const rep = await p.evaluate(() => (window as any).__huizhen.readiness);
    assert.is(rep.best, "quic-streams");
    assert.is(rep.rungs.quicDatagrams.ok, false);
    assert.is(rep.rungs.quicStreams.ok, true);
    const tr = await p.evaluate(() => (window as any).__huizhen.transport);
    assert.is(tr.rung, "quic-streams", "the session runs on QUIC streams");
    assert.is(await p.textContent("#transport-badge"), "Connected over QUIC streams (datagrams blocked)");
  }
  const text = await b.textContent("#readiness-report");
  assert.match(text!, /Call will use: QUIC streams only \(datagrams blocked\)/);
  assert.match(text!, new RegExp(`Allow UDP datagrams on UDP ${stack.node.port} to 127\\.0\\.0\\.1`));
  await decodedBothWays(a, b);
  const s = await stats(b);
  assert.ok(s.recv.audioPacketsDecoded > 0, "audio too");
  await a.context().close();
  await b.context().close();
});

t("no request left 127.0.0.1 (the ponyfill's example.com probe is cut out of the bundle)", async () => {
  assert.equal(outbound, []);
  // Control: the package's own probe call, aimed at a name that cannot resolve (.invalid, and
  // the resolver rule), shows in the net log — so the log would show the probe had it run.
  const p = await page("N");
  await p.goto(`${stack.edgeUrl}/join`);
  await p.evaluate(() => { try { new WebTransport("https://netlog-control.invalid:23333/test", { serverCertificateHashes: [] }).ready.catch(() => {}); } catch { /* refused */ } });
  await sleep(500);
  await browser.close(); // the net log is complete once the browser is gone
  const netlog = await readFile(join(netlogDir, "net.json"), "utf8");
  assert.ok(netlog.includes("netlog-control.invalid"), "the net log records WebTransport attempts");
  assert.not.ok(netlog.includes("example.com"), "no page tried example.com");
});

t.run();
