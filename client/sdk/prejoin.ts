// What happens before a call: browser support, the edge's view of the token (GET /v1/join, which
// does not use the token up), camera/microphone access, and a network check to the media node.
import { pinnedCertificates } from "../../src/terminal/pinning.ts";
import { probeNodes, probeUrlOf, type PathMeasurementReport, type ProbeOptions } from "../../src/terminal/probe.ts";
import { HuizhenError, reasonOfEdgeCode } from "./errors.ts";
import { videoConstraints } from "./call.ts";
import type { NodePlacement } from "../../src/types.ts";
import { checkReadiness, type ReadinessOptions, type ReadinessReport } from "./readiness.ts";
import { WebSocketTransport } from "./fallback-transport.ts";

export { buildReport, checkReadiness, type ReadinessReport, type RungCheck, type UplinkMeasure } from "./readiness.ts";

/**
 * The pre-join network readiness report for the consultation's node: which rungs of the
 * connectivity ladder work from here (QUIC datagrams, QUIC streams only, the TCP fallback),
 * round trip and loss, a short uplink burst, and what IT should open (client/sdk/readiness.ts).
 */
export function networkReadiness(info: Pick<JoinInfo, "node">, opts: ReadinessOptions = {}): Promise<ReadinessReport> {
  return checkReadiness(info.node, { fallback: WebSocketTransport, ...opts });
}

export interface JoinInfo {
  consultationId: string;
  status: string;
  role: "requester" | "consultant";
  expiresAt: string | number;
  terminal: { id: string; label: string; kind: string };
  peer?: { role: string; label: string; kind: string };
  reason?: string;
  node: NodePlacement;
  /** Nodes the edge offers for probing, best first (older edges send none). */
  candidates?: { id: string; region?: string; url: string; probeUrl?: string; certHashes?: string[]; fallbackUrl?: string }[];
}

export type PathMeasurement = PathMeasurementReport;

/**
 * RTT, jitter and loss to the consultation's node and the candidates the edge offered, over a
 * short datagram probe each (src/terminal/probe.ts, all at once, ~0.5 s). No token is sent.
 */
export function measurePaths(info: JoinInfo, opts: ProbeOptions = {}): Promise<PathMeasurement[]> {
  const targets = [{ id: info.node.id, url: info.node.url, certHashes: info.node.certHashes } as NonNullable<JoinInfo["candidates"]>[number], ...(info.candidates ?? [])]
    .filter((n, i, all) => all.findIndex((m) => m.id === n.id) === i)
    .slice(0, 8)
    .map((n) => ({ nodeId: n.id, probeUrl: n.probeUrl ?? probeUrlOf(n.url), certHashes: n.certHashes }));
  return probeNodes(targets, { count: 20, intervalMs: 10, connectTimeoutMs: 2000, ...opts });
}

/** Names of the APIs this browser lacks for a call (empty: it can join). */
export function missingFeatures(): string[] {
  const g = globalThis as Record<string, unknown>;
  const need = ["WebTransport", "VideoEncoder", "VideoDecoder", "AudioEncoder", "AudioDecoder", "EncodedVideoChunk", "MediaStreamTrackProcessor", "AudioContext"];
  const missing = need.filter((n) => typeof g[n] === "undefined");
  if (!globalThis.isSecureContext) missing.push("secure context (https)");
  if (!navigator.mediaDevices?.getUserMedia) missing.push("getUserMedia");
  return missing;
}

export async function fetchJoinInfo(token: string, edgeUrl = location.origin): Promise<JoinInfo> {
  let res: Response;
  try {
    res = await fetch(`${edgeUrl}/v1/join`, { headers: { authorization: `Bearer ${token}` }, credentials: "omit", cache: "no-store" });
  } catch {
    throw new HuizhenError("edgeUnreachable");
  }
  let body: unknown;
  try { body = await res.json(); } catch { body = undefined; }
  if (!res.ok) {
    const code = (body as { error?: { code?: string } } | undefined)?.error?.code;
    throw new HuizhenError(reasonOfEdgeCode(code, res.status));
  }
  const info = body as JoinInfo;
  if (!info?.node?.url) throw new HuizhenError("internal", "The consultation service gave no media server for this consultation.");
  if (info.status === "ended") throw new HuizhenError("consultationEnded");
  return info;
}

/** Camera + microphone, mapped to reasons a person can act on. */
export async function openLocalMedia(opts: { videoDeviceId?: string; audioDeviceId?: string; height?: number } = {}): Promise<MediaStream> {
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: videoConstraints(opts.videoDeviceId, opts.height ?? 720),
      audio: {
        ...(opts.audioDeviceId ? { deviceId: { exact: opts.audioDeviceId } } : {}),
        echoCancellation: true, noiseSuppression: true, autoGainControl: true,
      },
    });
  } catch (err) {
    const name = (err as { name?: string })?.name;
    if (name === "NotAllowedError" || name === "SecurityError") throw new HuizhenError("cameraDenied");
    if (name === "NotFoundError" || name === "OverconstrainedError") throw new HuizhenError("cameraMissing");
    if (name === "NotReadableError" || name === "AbortError") throw new HuizhenError("cameraBusy");
    throw new HuizhenError("cameraMissing", `The camera could not be opened: ${(err as Error)?.message ?? err}`);
  }
}

export interface NetworkCheck {
  ok: boolean;
  /** QUIC + HTTP/3 handshake to the node, ms. */
  handshakeMs?: number;
  error?: string;
}

/**
 * Opens a bare WebTransport session to the node and closes it again: proves UDP/QUIC gets
 * through and shows the handshake time. It sends no token, so it uses nothing up.
 */
export async function probeNode(url: string, certHashes?: string[], timeoutMs = 5000): Promise<NetworkCheck> {
  const t0 = performance.now();
  let wt: WebTransport | undefined;
  try {
    wt = new WebTransport(url, pinnedCertificates(certHashes));
    wt.closed.catch(() => undefined);
    await Promise.race([
      wt.ready,
      new Promise((_, rej) => setTimeout(() => rej(new Error("timed out")), timeoutMs)),
    ]);
    const handshakeMs = performance.now() - t0;
    return { ok: true, handshakeMs };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    try { wt?.close({ closeCode: 0, reason: "probe" }); } catch { /* not open */ }
  }
}
