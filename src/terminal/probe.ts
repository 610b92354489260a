// Path probe, terminal side: a short WebTransport datagram exchange with a node's `/v1/probe`
// echo (media/probe.ts) giving RTT, jitter and loss — what the edge's placement scores
// (src/routing.ts). Runtime-neutral: Chromium and Deno both have `WebTransport`.
//
//   const m = await probeNodes(candidates, { count: 20, intervalMs: 10 });
//   await fetch(`${edge}/v1/terminals/${id}/measurements`, { … body: JSON.stringify({ measurements: m }) });
//
// Datagram: "HZP1" · u32 sequence · f64 send time (performance.now(), ms). The node echoes it
// unchanged; RTT is the time it took to come back. Jitter is the mean difference between
// consecutive RTTs (RFC 3550's idea, unsmoothed); loss counts probes not back within `waitMs`
// after the last was sent. A node that cannot be reached at all measures loss 1.
import { pinnedCertificates } from "./pinning.ts";

export interface ProbeTarget {
  nodeId: string;
  /** The node's probe URL (its session URL with the path `/v1/probe`). */
  probeUrl: string;
  certHashes?: string[];
}

export interface ProbeOptions {
  /** Datagrams sent (default 20). */
  count?: number;
  /** Time between them, ms (default 10: 20 probes ≈ 200 ms). */
  intervalMs?: number;
  /** How long to wait for echoes after the last send, ms (default 250). */
  waitMs?: number;
  /** Connecting may take this long, ms (default 2000). */
  connectTimeoutMs?: number;
  WebTransport?: typeof WebTransport;
}

export interface PathMeasurementReport {
  nodeId: string;
  rttMs: number;
  jitterMs: number;
  loss: number;
  sent: number;
  received: number;
}

const MAGIC = [0x48, 0x5a, 0x50, 0x31]; // "HZP1"

/** A probe datagram (at least 16 bytes; `size` pads it, e.g. for an uplink burst). */
export function probeDatagram(seq: number, size = 16): Uint8Array {
  const d = new Uint8Array(Math.max(16, size));
  d.set(MAGIC);
  const view = new DataView(d.buffer);
  view.setUint32(4, seq);
  view.setFloat64(8, performance.now());
  return d;
}

/** The sequence and send time of an echoed probe, or undefined for anything else. */
export function readProbeEcho(d: Uint8Array): { seq: number; sentAt: number } | undefined {
  if (d.length < 16 || MAGIC.some((b, i) => d[i] !== b)) return undefined;
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  return { seq: view.getUint32(4), sentAt: view.getFloat64(8) };
}
/** What an unreachable node is reported as: all lost, an RTT no reachable node beats. */
export const UNREACHABLE_RTT_MS = 5000;

export function probeUrlOf(sessionUrl: string): string {
  const u = new URL(sessionUrl);
  u.pathname = "/v1/probe";
  u.search = "";
  return u.href;
}

/** RTT median, jitter and loss from the send count and the RTTs in arrival order. */
export function summarise(sent: number, rtts: number[]): { rttMs: number; jitterMs: number; loss: number } {
  if (sent === 0 || rtts.length === 0) return { rttMs: UNREACHABLE_RTT_MS, jitterMs: 0, loss: 1 };
  const sorted = [...rtts].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  let jitter = 0;
  for (let i = 1; i < rtts.length; i++) jitter += Math.abs(rtts[i]! - rtts[i - 1]!);
  jitter = rtts.length > 1 ? jitter / (rtts.length - 1) : 0;
  const round = (x: number) => Math.round(x * 100) / 100;
  return { rttMs: round(median), jitterMs: round(jitter), loss: round(Math.max(0, 1 - rtts.length / sent) * 10_000) / 10_000 };
}

export async function probePath(target: ProbeTarget, opts: ProbeOptions = {}): Promise<PathMeasurementReport> {
  const count = opts.count ?? 20;
  const intervalMs = opts.intervalMs ?? 10;
  const WT = opts.WebTransport ?? globalThis.WebTransport;
  const unreachable = { nodeId: target.nodeId, ...summarise(count, []), sent: count, received: 0 };
  if (!WT) throw new Error("this runtime has no WebTransport");
  let wt: WebTransport;
  try {
    wt = new WT(target.probeUrl, pinnedCertificates(target.certHashes));
  } catch {
    return unreachable;
  }
  wt.closed.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const ok = await Promise.race([
      wt.ready.then(() => true, () => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(false), opts.connectTimeoutMs ?? 2000); }),
    ]);
    clearTimeout(timer);
    if (!ok) return unreachable;
    const writer = wt.datagrams.writable.getWriter();
    writer.closed.catch(() => {});
    const reader = wt.datagrams.readable.getReader();
    const seen = new Set<number>();
    const rtts: number[] = [];
    const reading = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || !value) return;
        const echo = readProbeEcho(value);
        if (!echo || echo.seq >= count || seen.has(echo.seq)) continue;
        seen.add(echo.seq);
        rtts.push(performance.now() - echo.sentAt);
      }
    })().catch(() => {});
    for (let seq = 0; seq < count; seq++) {
      writer.write(probeDatagram(seq)).catch(() => {});
      if (seq < count - 1) await new Promise((r) => setTimeout(r, intervalMs));
    }
    await new Promise((r) => setTimeout(r, opts.waitMs ?? 250));
    void reader.cancel().catch(() => {});
    void reading;
    return { nodeId: target.nodeId, ...summarise(count, rtts), sent: count, received: rtts.length };
  } finally {
    clearTimeout(timer);
    try { wt.close(); } catch { /* closed */ }
  }
}

/** Probes every candidate at once (each its own session); one result per candidate. */
export function probeNodes(targets: ProbeTarget[], opts: ProbeOptions = {}): Promise<PathMeasurementReport[]> {
  return Promise.all(targets.map((t) => probePath(t, opts).catch(() => ({ nodeId: t.nodeId, ...summarise(opts.count ?? 20, []), sent: opts.count ?? 20, received: 0 }))));
}
