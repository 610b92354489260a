// Faults injected into a running stack, each returning how many were injected and how much was
// lost (frames, events, records, revocations). Used by bench/trust.ts; the trust tests
// (edge-restart, revocation-recheck, concurrency) assert the same behaviour in detail.
import { decodeJwt } from "jose";
import { Track } from "../../src/protocol/media.ts";
import { TerminalSession, type FrameEvent } from "../../src/terminal/session.ts";
import { ClinicClient } from "../support/clinic-client.ts";
import type { TrustStack } from "./stack.ts";

export interface FaultResult {
  name: string;
  injected: number;
  lost: number;
  detail: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function pair(stack: TrustStack, clinic: ClinicClient, tag: string) {
  const c = await clinic.newConsultation(tag, [`Fault ${tag} 1`, `Fault ${tag} 2`]);
  const join = (i: number, resume?: string) => TerminalSession.connect({ url: c.group.node.url, certHashes: c.group.node.certHashes, token: c.tokens[i]!.token, resume, sdk: "trust-fault" });
  const a = await join(0);
  const connected = new Promise<void>((ok) => a.on("connected", () => ok()));
  const b = await join(1);
  await Promise.race([connected, sleep(10_000)]);
  return { c, a, b, join };
}

/** Sends `n` frames a → b (20 ms apart); resolves with how many arrived. */
async function stream(a: TerminalSession, b: TerminalSession, n: number): Promise<number> {
  let got = 0;
  const off = b.on("frame", (_f: FrameEvent) => got++);
  for (let i = 0; i < n; i++) {
    a.sendFrame(Track.audio, new Uint8Array(160).fill(i & 255));
    await sleep(20);
  }
  await sleep(800);
  off();
  return got;
}

/** The edge is killed mid-call; media must go on; a leave and a rejoin during the outage must reach the edge after its restart. */
export async function edgeCrashDuringCall(stack: TrustStack): Promise<FaultResult> {
  const clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  const { c, a, b: b0, join } = await pair(stack, clinic, "crash");
  await clinic.waitForConsultation(c.id, (x) => x.status === "connected");
  await stack.reporterDrained();
  await stack.stopEdge(true);
  const sent = 100;
  const during = await stream(a, b0, sent);
  const resume = b0.resume;
  await b0.leave();
  await sleep(200);
  const b = await join(1, resume);
  const after = await stream(b, a, sent);
  await stack.startEdge();
  await stack.reporterDrained(30_000);
  const rec = (await clinic.getConsultation(c.id)).body;
  const joins = rec.events.filter((e: { action: string }) => e.action === "join").length;
  const leaves = rec.events.filter((e: { action: string }) => e.action === "leave").length;
  const missing = Math.max(0, 3 - joins) + Math.max(0, 1 - leaves);
  const extra = Math.max(0, joins - 3) + Math.max(0, leaves - 1);
  await a.leave().catch(() => {});
  await b.leave().catch(() => {});
  const framesLost = 2 * sent - during - after;
  return {
    name: "edge killed during a call, restarted on the same port and database",
    injected: 1,
    lost: framesLost + missing + extra,
    detail: `frames during the outage ${during + after}/${2 * sent}; events after restart: ${joins} joins (3 expected), ${leaves} leaves (1 expected)`,
  };
}

/** Revocation pushes edge → node are cut; the node's timer must still close every revoked session. */
export async function lostRevocationPushes(stack: TrustStack, count: number, withinMs: number): Promise<FaultResult> {
  const clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  let lost = 0;
  let notified = 0;
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const { c, a, b } = await pair(stack, clinic, `rev${i}`);
    stack.edgeToNode.block = /\/revocations |^DELETE \/v1\/groups\//;
    const closed = new Promise<string>((ok) => b.on("closed", ok));
    const t0 = Date.now();
    const r = await clinic.call("DELETE", `/v1/consultations/${c.id}/tokens/${decodeJwt(c.tokens[1]!.token).jti}`);
    if (r.body?.nodeNotified) notified++;
    const reason = await Promise.race([closed, sleep(withinMs).then(() => "still open")]);
    if (reason !== "revoked") lost++;
    else times.push(Date.now() - t0);
    stack.edgeToNode.block = undefined;
    await a.leave().catch(() => {});
    await b.leave().catch(() => {});
    await clinic.endConsultation(c.id);
  }
  const sorted = times.sort((x, y) => x - y);
  return {
    name: "edge → node revocation call lost",
    injected: count - notified,
    lost,
    detail: `${count - lost}/${count} sessions closed by the node's re-check; slowest ${sorted.at(-1) ?? "-"} ms`,
  };
}
