// `npm run bench:forward` (Deno): how much of the bare transport the media node keeps when it
// forwards. In one run on loopback:
//   1. bare: a WebTransport datagram echo server (a separate Deno process, nothing but
//      read → write) and one client keeping at most 64 datagrams of 1,100 B in flight;
//   2. forward: a real media node process (started like in production, with a stand-in edge
//      serving its JWKS) and two terminals in this process; terminal A sends, the node forwards
//      to terminal B, again at most 64 in flight.
// Both paths cross the same two QUIC hops through one server process, so the bare echo's
// round trip is the baseline for the forward path's one-way delay (A and B share a clock):
// added latency = forward delay − bare round trip, at p50 and p99.
// The last line printed is one JSON object.
import { NodeHarness } from "../test/media/support.ts";
import { generateCertificate } from "../media/cert.ts";
import { denoApi } from "../media/transport/deno.ts";
import { fromBase64 } from "../src/bytes.ts";
import { decodeNodeMessage, encodeControl } from "../src/protocol/control.ts";
import { FrameDecoder, frame } from "../src/protocol/framing.ts";
import { writeHeader } from "../src/protocol/media.ts";

const Deno = denoApi();
const SIZE = 1100;
const WINDOW = 64;
const DURATION_MS = Number(Deno.env.get("BENCH_MS") ?? 2000);
const WARMUP_MS = 500;

// --- the echo server (this file re-run with `echo-server`) ----------------------------
if (Deno.args[0] === "echo-server") {
  // `pair`: the second session gets what the first sends (a relay with no logic at all).
  const pair = Deno.args[1] === "pair";
  const cert = await generateCertificate();
  const ep = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = ep.listen({ cert: cert.certPem, key: cert.keyPem, alpnProtocols: ["h3"] });
  console.log(JSON.stringify({ port: ep.addr.port, hash: cert.hash }));
  const writers: WritableStreamDefaultWriter<Uint8Array>[] = [];
  for await (const incoming of listener) {
    void (async () => {
      const wt = await Deno.upgradeWebTransport(await incoming.accept());
      wt.closed.catch(() => {});
      await wt.ready;
      const r = wt.datagrams.readable.getReader();
      const own = (wt.datagrams.writable as WritableStream<Uint8Array>).getWriter();
      const index = writers.push(own) - 1;
      for (;;) {
        const { value, done } = await r.read();
        if (done) return;
        const w = pair ? writers[index ^ 1] : own;
        w?.write(value).catch(() => {});
      }
    })().catch(() => {});
  }
}

interface Result {
  datagrams: number;
  seconds: number;
  latencies: number[];
}

interface Path {
  send: WritableStreamDefaultWriter<Uint8Array>;
  recv: ReadableStreamDefaultReader<Uint8Array>;
  close(): void;
}

function datagram(seq: number): Uint8Array {
  const d = new Uint8Array(SIZE);
  writeHeader(d, { flags: 0, track: 1, source: 0, sequence: seq, fragmentIndex: 0, fragmentCount: 1, timestamp: performance.now() * 1000 });
  return d;
}
const sentAt = (d: Uint8Array) => new DataView(d.buffer, d.byteOffset + 12, 8).getFloat64(0) / 1000;

/** Keeps WINDOW datagrams in flight along `path` for DURATION_MS after a warm-up. */
async function pump(path: Path): Promise<Result> {
  const { send, recv } = path;
  let inFlight = 0;
  let seq = 0;
  let received = 0;
  let measuring = false;
  let running = true;
  const latencies: number[] = [];
  const fill = () => {
    while (running && inFlight < WINDOW) {
      inFlight++;
      send.write(datagram(seq++)).catch(() => {});
    }
  };
  let lastRx = performance.now();
  // A datagram lost on the way would shrink the window for good: give up on it after 200 ms.
  const refill = setInterval(() => {
    if (performance.now() - lastRx > 200) { inFlight = 0; fill(); }
  }, 100);
  const reading = (async () => {
    while (running) {
      const { value, done } = await recv.read();
      if (done) return;
      lastRx = performance.now();
      if (inFlight > 0) inFlight--;
      if (measuring) {
        received++;
        latencies.push(lastRx - sentAt(value));
      }
      fill();
    }
  })().catch(() => {});
  fill();
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, DURATION_MS));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  running = false;
  clearInterval(refill);
  // Let what is still in flight drain before the next path runs.
  await Promise.race([reading, new Promise((r) => setTimeout(r, 300))]);
  return { datagrams: received, seconds, latencies };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))]! : NaN;
}
const median = (xs: number[]) => pct(xs, 0.5);

/** The echo server process (`echo`) or the no-logic relay (`pair`), and the client side of it. */
async function bareServer(mode: "echo" | "pair"): Promise<Path & { kill(): void }> {
  const { spawn } = await import("node:child_process");
  const child = spawn(Deno.execPath(),
    ["run", "--allow-all", "--unstable-net", new URL(import.meta.url).pathname, "echo-server", mode], { stdio: ["ignore", "pipe", "inherit"] });
  const info = await new Promise<{ port: number; hash: string }>((resolve, reject) => {
    child.stdout!.once("data", (b: Uint8Array) => resolve(JSON.parse(new TextDecoder().decode(b).split("\n")[0]!)));
    child.once("exit", () => reject(new Error("echo server exited")));
  });
  const open = async () => {
    const wt = new WebTransport(`https://127.0.0.1:${info.port}/echo`, { serverCertificateHashes: [{ algorithm: "sha-256", value: fromBase64(info.hash) as BufferSource }] });
    wt.closed.catch(() => {});
    await wt.ready;
    return wt;
  };
  const a = await open();
  const b = mode === "pair" ? await open() : a;
  return {
    send: a.datagrams.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>,
    recv: b.datagrams.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>,
    close() { a.close(); if (b !== a) b.close(); },
    kill() { child.kill("SIGKILL"); },
  };
}

/** A bare-bones terminal: join over the control stream, keep pinging, raw datagram I/O. */
async function terminal(h: NodeHarness, token: string) {
  const wt = new WebTransport(h.node.url, { serverCertificateHashes: h.node.certHashes.map((x) => ({ algorithm: "sha-256" as const, value: fromBase64(x) as BufferSource })) });
  wt.closed.catch(() => {});
  await wt.ready;
  const bidi = await wt.createBidirectionalStream();
  const w = bidi.writable.getWriter();
  await w.write(frame(encodeControl({ t: "join", v: 1, token, maxDatagramSize: wt.datagrams.maxDatagramSize })));
  const reader = bidi.readable.getReader();
  const dec = new FrameDecoder();
  for (let welcomed = false; !welcomed;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("node closed the control stream");
    for (const f of dec.push(value as Uint8Array)) {
      const m = decodeNodeMessage(f);
      if (m.t === "error") throw new Error(`join refused: ${m.code}`);
      if (m.t === "welcome") welcomed = true;
    }
  }
  void (async () => { for (;;) { const { done } = await reader.read(); if (done) return; } })().catch(() => {});
  let n = 0;
  const ping = setInterval(() => w.write(frame(encodeControl({ t: "ping", n: n++ }))).catch(() => {}), 1000);
  return {
    send: wt.datagrams.writable.getWriter() as WritableStreamDefaultWriter<Uint8Array>,
    recv: wt.datagrams.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>,
    close() { clearInterval(ping); try { wt.close(); } catch { /* closed */ } },
  };
}

// Set everything up once, then run the paths in turn, ROUNDS times, and take medians: this
// machine is shared, and interleaving keeps a busy moment from landing on one path only.
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 5);
const echo = await bareServer("echo");
const pair = await bareServer("pair");
const h = await NodeHarness.start({ MEDIA_MAX_DATAGRAMS_PER_SEC: "1000000" });
const g = await h.group({ attributes: { maxParticipants: 2, maxVideoKbps: 2_000_000, maxAudioKbps: 512, maxHeight: 2160 } });
const ta = await terminal(h, await h.token(g, 0));
const tb = await terminal(h, await h.token(g, 1));
const fwdPath: Path = { send: ta.send, recv: tb.recv, close() { ta.close(); tb.close(); } };
const runs: Record<"bare" | "pair" | "fwd", Result[]> = { bare: [], pair: [], fwd: [] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    runs.bare.push(await pump(echo));
    runs.pair.push(await pump(pair));
    runs.fwd.push(await pump(fwdPath));
  }
} finally {
  echo.close(); pair.close(); echo.kill(); pair.kill();
}
const nodeCounters = (await h.stats()).counters;
fwdPath.close();
await h.stop();

const summary = (rs: Result[]) => ({
  dps: median(rs.map((r) => r.datagrams / r.seconds)),
  p50: median(rs.map((r) => pct(r.latencies, 0.5))),
  p99: median(rs.map((r) => pct(r.latencies, 0.99))),
  each: rs.map((r) => Math.round(r.datagrams / r.seconds)),
});
const bareS = summary(runs.bare);
const pairS = summary(runs.pair);
const fwdS = summary(runs.fwd);
const mbps = (dps: number) => (dps * SIZE * 8) / 1e6;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

const rows = [
  ["path", "datagrams/s", "Mbit/s", "p50 ms", "p99 ms", "rounds (datagrams/s)"],
  ...([["bare echo (round trip)", bareS], ["bare relay, no logic (A→B)", pairS], ["node forward (A→node→B)", fwdS]] as const).map(([name, x]) => [
    name, String(Math.round(x.dps)), mbps(x.dps).toFixed(1), x.p50.toFixed(2), x.p99.toFixed(2), x.each.join(" / "),
  ]),
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
console.log(`datagrams of ${SIZE} B, at most ${WINDOW} in flight, ${ROUNDS} rounds × ${DURATION_MS} ms per path on loopback (medians)`);
for (const r of rows) console.log(r.map((c, i) => (i === 0 || i === 5 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
const c = nodeCounters;
console.log(`node: in ${c.datagramsIn}, out ${c.datagramsOut}, dropped (queue ${c.queueDropped}, rate ${c.rateDropped}, malformed ${c.malformed})`);
console.log(JSON.stringify({
  bareDatagramsPerSec: Math.round(bareS.dps),
  forwardDatagramsPerSec: Math.round(fwdS.dps),
  ratio: round(fwdS.dps / bareS.dps, 3),
  addedLatencyP50Ms: round(fwdS.p50 - bareS.p50, 3),
  addedLatencyP99Ms: round(fwdS.p99 - bareS.p99, 3),
}));
Deno.exit(0);
