// The network readiness report: which rungs of the connectivity ladder (connect.ts) work from
// this network to the consultation's media node, the round trip and loss, and the uplink a
// short burst gets through — as a few lines a hospital's IT staff can act on ("allow UDP 4433
// to media.example"). Uses the node's token-free probe path (`/v1/probe`, media/probe.ts) on
// each rung; no token is sent and nothing is used up.
//
// Limits, said in the report too: the uplink figure comes from one burst of a few hundred
// datagrams (~0.4 MB, ≤ 0.3 s). It shows what the path takes in a short burst, not what it
// sustains; a path faster than the burst can show is reported as "at least".
import { pinnedCertificates } from "../../src/terminal/pinning.ts";
import { probeDatagram, probeUrlOf, readProbeEcho, summarise } from "../../src/terminal/probe.ts";
import type { Rung } from "./connect.ts";

export interface RungCheck {
  ok: boolean;
  /** Handshake time, ms (when the session opened). */
  handshakeMs?: number;
  rttMs?: number;
  jitterMs?: number;
  loss?: number;
  /** What happened, in a few words. */
  note: string;
}

export interface UplinkMeasure {
  kbps: number;
  /** The burst ended before the path showed its limit: the uplink is at least this. */
  atLeast: boolean;
  bytes: number;
  ms: number;
  over: Rung;
}

export interface ReadinessReport {
  nodeId: string;
  /** Where the node is reached: QUIC on UDP, the fallback on TCP. */
  target: { host: string; udpPort: number; tcpHost?: string; tcpPort?: number };
  rungs: { quicDatagrams: RungCheck; quicStreams: RungCheck; websocket: RungCheck };
  /** What a call from here will run on. */
  best: "quic-datagrams" | "quic-streams" | "websocket" | "none";
  rttMs?: number;
  jitterMs?: number;
  loss?: number;
  uplink?: UplinkMeasure;
  /** What to change on the network, most important first (empty: nothing to do). */
  actions: string[];
  /** The whole report as plain text (what the page shows and copies). */
  text: string;
}

/** The raw outcome of the checks, before it is worded (buildReport is pure, for the unit tests). */
export interface ReadinessFindings {
  nodeId: string;
  url: string;
  fallbackUrl?: string;
  quic: { opened: boolean; handshakeMs?: number; sent: number; rtts: number[]; error?: string };
  websocket?: { opened: boolean; handshakeMs?: number; sent: number; rtts: number[]; error?: string };
  uplink?: UplinkMeasure;
}

const portOf = (u: URL) => Number(u.port || 443);

export function buildReport(f: ReadinessFindings): ReadinessReport {
  const q = new URL(f.url);
  const w = f.fallbackUrl ? new URL(f.fallbackUrl) : undefined;
  const target = { host: q.hostname, udpPort: portOf(q), ...(w ? { tcpHost: w.hostname, tcpPort: portOf(w) } : {}) };
  const udp = `UDP ${target.udpPort} to ${target.host}`;
  const tcp = w ? `TCP ${target.tcpPort} to ${target.tcpHost} (HTTPS/WebSocket)` : undefined;

  const qs = summarise(f.quic.sent, f.quic.rtts);
  const datagramsOk = f.quic.opened && f.quic.rtts.length > 0;
  const quicDatagrams: RungCheck = datagramsOk
    ? { ok: true, handshakeMs: f.quic.handshakeMs, rttMs: qs.rttMs, jitterMs: qs.jitterMs, loss: qs.loss, note: `works (${f.quic.rtts.length}/${f.quic.sent} probes back)` }
    : { ok: false, note: f.quic.opened ? "QUIC opens but no datagram came back" : `no QUIC session (${f.quic.error ?? "blocked"})` };
  const quicStreams: RungCheck = f.quic.opened
    ? { ok: true, handshakeMs: f.quic.handshakeMs, note: "the QUIC session opens" }
    : { ok: false, note: `no QUIC session (${f.quic.error ?? "blocked"})` };
  let websocket: RungCheck;
  if (!f.websocket) websocket = { ok: false, note: w ? "not tried" : "the node has no TCP fallback" };
  // A browser tells a blocked port and an untrusted certificate apart only in its console.
  else if (!f.websocket.opened) websocket = { ok: false, note: `no WebSocket session: blocked, or its certificate is not trusted here (${f.websocket.error ?? "failed"})` };
  else {
    const ws = summarise(f.websocket.sent, f.websocket.rtts);
    websocket = { ok: true, handshakeMs: f.websocket.handshakeMs, rttMs: ws.rttMs, jitterMs: ws.jitterMs, loss: ws.loss, note: "works" };
  }
  // QUIC without datagrams still beats TCP (no proxy hop, its own loss recovery), as the ladder orders it.
  const best: ReadinessReport["best"] = quicDatagrams.ok ? "quic-datagrams" : quicStreams.ok ? "quic-streams" : websocket.ok ? "websocket" : "none";
  // Round trip and loss come from datagram probes: over QUIC streams only, the fallback's are the nearest measure.
  const path = best === "quic-datagrams" ? quicDatagrams : best === "websocket" || (best === "quic-streams" && websocket.ok) ? websocket : undefined;

  const actions: string[] = [];
  if (best === "none") {
    actions.push(tcp ? `Nothing gets through: allow ${tcp} at least, and ${udp} for best quality.` : `Allow ${udp}: the media server cannot be reached otherwise.`);
  } else if (best === "quic-streams") {
    actions.push(`Allow UDP datagrams on ${udp} (a firewall or proxy lets QUIC open but drops its datagrams); the call uses QUIC streams meanwhile (it stalls on loss instead of skipping).`);
  } else if (best === "websocket") {
    actions.push(`Allow ${udp} for best quality; the call uses the TCP fallback meanwhile (it stalls on loss instead of skipping).`);
  } else if (w && f.websocket && !websocket.ok) {
    actions.push(`Optional: allow ${tcp}, so calls still work if UDP is ever blocked (if it is open, the media server's fallback certificate is not trusted by this browser: tell the operator).`);
  }
  if (path?.rttMs !== undefined && path.rttMs > 250) actions.push(`The round trip to the media server is ${Math.round(path.rttMs)} ms: conversation will lag; a closer media server or a wired connection helps.`);
  if (path?.loss !== undefined && path.loss > 0.02) actions.push(`${(path.loss * 100).toFixed(1)}% of probes were lost: check Wi-Fi signal or congestion.`);
  if (f.uplink && !f.uplink.atLeast && f.uplink.kbps < 1500) actions.push(`Uplink about ${fmtKbps(f.uplink.kbps)}: video will be sent below HD.`);

  const lines: string[] = [];
  lines.push(`Huizhen network check — media server ${f.nodeId} (${target.host})`);
  lines.push(`  QUIC datagrams  ${udp}: ${quicDatagrams.ok ? "OK" : "BLOCKED"} — ${quicDatagrams.note}`);
  lines.push(`  QUIC streams    ${udp}: ${quicStreams.ok ? "OK" : "BLOCKED"} — ${quicStreams.note}`);
  lines.push(`  TCP fallback    ${tcp ?? "(none)"}: ${websocket.ok ? "OK" : f.websocket ? "FAILED" : "NOT TRIED"} — ${websocket.note}`);
  const uses = { "quic-datagrams": "QUIC (best quality)", "quic-streams": "QUIC streams only (datagrams blocked)", websocket: "TCP fallback (UDP blocked)", none: "nothing — cannot connect" };
  lines.push(`  Call will use: ${uses[best]}`);
  if (path?.rttMs !== undefined) lines.push(`  Round trip ${path.rttMs.toFixed(1)} ms, jitter ${path.jitterMs!.toFixed(1)} ms, loss ${(path.loss! * 100).toFixed(1)}%`);
  if (f.uplink) {
    lines.push(`  Uplink ${f.uplink.atLeast ? "at least " : "about "}${fmtKbps(f.uplink.kbps)} (one ${Math.round(f.uplink.bytes / 1024)} KB burst in ${Math.round(f.uplink.ms)} ms over ${f.uplink.over === "quic" ? "QUIC" : "the TCP fallback"}; a short burst, not a sustained rate)`);
  }
  lines.push(actions.length ? "To do:" : "Nothing to change on this network.");
  for (const a of actions) lines.push(`  - ${a}`);
  return {
    nodeId: f.nodeId, target, rungs: { quicDatagrams, quicStreams, websocket }, best,
    ...(path?.rttMs !== undefined ? { rttMs: path.rttMs, jitterMs: path.jitterMs, loss: path.loss } : {}),
    ...(f.uplink ? { uplink: f.uplink } : {}),
    actions, text: lines.join("\n"),
  };
}

function fmtKbps(kbps: number): string {
  return kbps >= 1000 ? `${(kbps / 1000).toFixed(1)} Mbit/s` : `${Math.round(kbps)} kbit/s`;
}

// --- measuring ------------------------------------------------------------------------

export interface ReadinessOptions {
  native?: typeof WebTransport;
  /** WebTransport over WebSocket (the SDK's ponyfill); no TCP check without it. */
  fallback?: typeof WebTransport;
  /** Time each rung has to open, ms (default 2500). */
  connectTimeoutMs?: number;
  /** Round-trip probes per rung (default 20). */
  probes?: number;
  /** Uplink burst: datagrams and their size (default 350 × 1100 B, within the node's 400 per probe session). */
  burstCount?: number;
  burstBytes?: number;
  /** The burst stops after this long, ms (default 300). */
  burstMs?: number;
}

interface Opened {
  wt: WebTransport;
  handshakeMs: number;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Arrival time (performance.now) of each echoed sequence, and its send time. */
  echoes: Map<number, { sentAt: number; at: number }>;
}

async function open(WT: typeof WebTransport, url: string, certHashes: string[] | undefined, timeoutMs: number): Promise<Opened | { error: string }> {
  const t0 = performance.now();
  let wt: WebTransport;
  try {
    wt = new WT(url, pinnedCertificates(certHashes));
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
  wt.closed.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    wt.ready.then(() => "ok", (err) => (err instanceof Error ? err.message : String(err)) || "refused"),
    new Promise<string>((r) => { timer = setTimeout(() => r(`no answer within ${timeoutMs} ms`), timeoutMs); }),
  ]);
  clearTimeout(timer);
  if (outcome !== "ok") {
    try { wt.close(); } catch { /* not open */ }
    return { error: outcome };
  }
  const handshakeMs = performance.now() - t0;
  const dg = wt.datagrams as WebTransportDatagramDuplexStream & { createWritable?: () => WritableStream<Uint8Array> };
  const writer = (dg.createWritable ? dg.createWritable() : (dg.writable as WritableStream<Uint8Array>)).getWriter();
  writer.closed.catch(() => {});
  const echoes = new Map<number, { sentAt: number; at: number }>();
  const reader = wt.datagrams.readable.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || !value) return;
      const echo = readProbeEcho(value);
      if (echo && !echoes.has(echo.seq)) echoes.set(echo.seq, { sentAt: echo.sentAt, at: performance.now() });
    }
  })().catch(() => {});
  return { wt, handshakeMs, writer, echoes };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Round-trip probes: `count` small datagrams 10 ms apart, then a short wait for the last. */
async function roundTrips(o: Opened, count: number): Promise<number[]> {
  for (let seq = 0; seq < count; seq++) {
    o.writer.write(probeDatagram(seq)).catch(() => {});
    await sleep(10);
  }
  await sleep(250);
  const rtts: number[] = [];
  for (let seq = 0; seq < count; seq++) {
    const e = o.echoes.get(seq);
    if (e) rtts.push(e.at - e.sentAt);
  }
  return rtts;
}

/** One burst of large datagrams as fast as the session takes them; the node echoes a 64-byte head of each. */
async function uplinkBurst(o: Opened, over: Rung, first: number, count: number, size: number, maxMs: number): Promise<UplinkMeasure | undefined> {
  const t0 = performance.now();
  let sent = 0;
  for (; sent < count && performance.now() - t0 < maxMs; sent++) {
    await o.writer.ready;
    o.writer.write(probeDatagram(first + sent, size)).catch(() => {});
    // Let the event loop breathe every few writes, so echoes are timed as they come.
    if (sent % 16 === 15) await sleep(0);
  }
  const sendMs = performance.now() - t0;
  // Echoes of the last datagrams follow within about a round trip.
  let last = 0;
  const deadline = performance.now() + 600;
  while (performance.now() < deadline) {
    await sleep(30);
    let n = 0;
    for (let s = first; s < first + sent; s++) if (o.echoes.has(s)) n++;
    if (n === sent || (n === last && n > 0 && performance.now() - t0 > sendMs + 150)) break;
    last = n;
  }
  let received = 0;
  let lastAt = t0;
  for (let s = first; s < first + sent; s++) {
    const e = o.echoes.get(s);
    if (!e) continue;
    received++;
    lastAt = Math.max(lastAt, e.at);
  }
  if (received < 2) return undefined;
  const ms = lastAt - t0;
  const bytes = received * size;
  const kbps = (bytes * 8) / ms;
  // Everything back and the sender ran out of burst before the time did: the path was not the limit.
  const atLeast = received >= sent * 0.95 && sent >= count && sendMs < maxMs * 0.9;
  return { kbps: Math.round(kbps), atLeast, bytes, ms: Math.round(ms * 10) / 10, over };
}

/**
 * Checks every rung to the node at once (~1 s on a good network, up to `connectTimeoutMs`
 * plus ~1 s when a rung is blocked) and returns the worded report.
 */
export async function checkReadiness(node: { id: string; url: string; certHashes?: string[]; fallbackUrl?: string }, opts: ReadinessOptions = {}): Promise<ReadinessReport> {
  const native = opts.native ?? (globalThis as { WebTransport?: typeof WebTransport }).WebTransport;
  const timeoutMs = opts.connectTimeoutMs ?? 2500;
  const probes = opts.probes ?? 20;
  const burst = { count: opts.burstCount ?? 350, bytes: opts.burstBytes ?? 1100, ms: opts.burstMs ?? 300 };
  const findings: ReadinessFindings = { nodeId: node.id, url: node.url, fallbackUrl: node.fallbackUrl, quic: { opened: false, sent: probes, rtts: [] } };
  const sessions: WebTransport[] = [];

  const quicCheck = async () => {
    if (!native) {
      findings.quic.error = "this browser has no native WebTransport";
      return undefined;
    }
    const o = await open(native, probeUrlOf(node.url), node.certHashes, timeoutMs);
    if ("error" in o) {
      findings.quic.error = o.error;
      return undefined;
    }
    sessions.push(o.wt);
    findings.quic.opened = true;
    findings.quic.handshakeMs = o.handshakeMs;
    findings.quic.rtts = await roundTrips(o, probes);
    return o;
  };
  const wsCheck = async () => {
    if (!node.fallbackUrl || !opts.fallback) return undefined;
    const w: NonNullable<ReadinessFindings["websocket"]> = (findings.websocket = { opened: false, sent: probes, rtts: [] });
    // A browser's WebSocket trusts the usual CAs only: no certificate hashes here.
    const o = await open(opts.fallback, probeUrlOf(node.fallbackUrl), undefined, timeoutMs + 500);
    if ("error" in o) {
      w.error = o.error;
      return undefined;
    }
    sessions.push(o.wt);
    w.opened = true;
    w.handshakeMs = o.handshakeMs;
    w.rtts = await roundTrips(o, probes);
    return o;
  };
  try {
    const [q, w] = await Promise.all([quicCheck(), wsCheck()]);
    // The uplink over the rung a call would use.
    if (q && findings.quic.rtts.length) findings.uplink = await uplinkBurst(q, "quic", probes, burst.count, burst.bytes, burst.ms);
    else if (w && findings.websocket?.rtts.length) findings.uplink = await uplinkBurst(w, "websocket", probes, burst.count, burst.bytes, burst.ms);
  } finally {
    for (const s of sessions) {
      try { s.close({ closeCode: 0, reason: "check done" }); } catch { /* closed */ }
    }
  }
  return buildReport(findings);
}
