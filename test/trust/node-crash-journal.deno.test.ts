// A media node killed while the edge is unreachable loses none of its undelivered events: a
// terminal joins and leaves while every node → edge call is cut (a proxy between them drops
// them), the node is SIGKILLed, the edge becomes reachable again, the node is started again
// with the same credential and state dir (MEDIA_STATE_DIR), and its journal (media/journal.ts)
// brings the join and the leave to the edge's record, each exactly once and with the time it
// happened. Real edge (Deno/SQLite), real node processes, real terminals over QUIC; under Deno.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ensureClinic, generateEdgeSecrets, newSigningNodeCredential, nodeCredentialsJson, startEdge, startMediaNode, waitFor,
  waitForNodeRegistered, type EdgeProcess, type EdgeSecrets, type MediaNodeProcess, type NodeCredential,
} from "../../scripts/stack.ts";
import { randomId } from "../../src/bytes.ts";
import { nodeApiAudience } from "../../src/token/claims.ts";
import { loadKeySet } from "../../src/token/keys.ts";
import { signNodeApiToken } from "../../src/token/sign.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { parseJournal } from "../../media/journal.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import { once, sleep } from "../media/support.ts";
import { CapturingProxy } from "./capture.ts";

const t = suite("node killed while the edge is unreachable: the journal keeps its events");
let secrets: EdgeSecrets;
let credential: NodeCredential;
let edge: EdgeProcess;
let nodeToEdge: CapturingProxy;
let node: MediaNodeProcess;
let stateDir: string;
let clinic: ClinicClient;
let created: CreatedConsultation;
const lines: string[] = [];
const open: TerminalSession[] = [];
const nodeEnv = { MEDIA_HEARTBEAT_MS: "300", MEDIA_PING_INTERVAL_MS: "500" };
const log = (source: string, line: string) => {
  lines.push(`[${source}] ${line}`);
  if (process.env.HZ_DEBUG) console.log(`[${source}] ${line}`);
};

const startNode = () => startMediaNode({ credential, edgeUrl: nodeToEdge.url, stateDir, env: nodeEnv, log });

async function nodeStats(): Promise<{ reporterQueue: number; edgeUp: boolean }> {
  const keys = await loadKeySet(secrets.SIGNING_KEYS);
  const tok = await signNodeApiToken({ issuer: "huizhen-edge", audience: nodeApiAudience(credential.nodeId), jti: randomId("napi", 8) }, keys.active);
  const res = await fetch(`${node.apiUrl}/v1/stats`, { headers: { authorization: `Bearer ${tok}` } });
  return res.json();
}

const join_ = async (token: string) => {
  const s = await TerminalSession.connect({ url: created.group.node.url, certHashes: created.group.node.certHashes, token, sdk: "journal-test" });
  open.push(s);
  return s;
};
const byTerminal = (rec: any, action: string, terminalId: string) => rec.events.filter((e: any) => e.action === action && e.terminalId === terminalId);

t.before(async () => {
  secrets = await generateEdgeSecrets();
  credential = await newSigningNodeCredential(`node-${randomId("j", 4)}`);
  stateDir = await mkdtemp(join(tmpdir(), "huizhen-journal-node-"));
  edge = await startEdge({ runtime: "deno", secrets, nodeCredentials: await nodeCredentialsJson([credential]), log });
  nodeToEdge = await CapturingProxy.start("node→edge", Number(new URL(edge.url).port));
  node = await startNode();
  await waitForNodeRegistered(edge, secrets.ADMIN_KEY, credential.nodeId);
  const c = await ensureClinic(edge.url, secrets.ADMIN_KEY, `journal-${randomId("c", 6)}`, "Journal clinic");
  clinic = new ClinicClient(edge.url, c.apiKey!);
  created = await clinic.newConsultation("J", ["Ward 5 cart", "Dermatology, remote"]);
});

t.after(async () => {
  for (const s of open) await s.leave().catch(() => {});
  await node?.stop().catch(() => {});
  await edge?.stop().catch(() => {});
  await nodeToEdge?.stop().catch(() => {});
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

t("join and leave during the outage reach the edge once after a kill and a restart", async () => {
  const [requester, consultant] = created.tokens;
  // The requester joins while the edge is reachable (the node fetches the edge's keys then).
  const a = await join_(requester!.token);
  await clinic.waitForConsultation(created.id, (c) => byTerminal(c, "join", requester!.terminalId).length === 1);
  await waitFor("node queue empty", async () => (await nodeStats()).reporterQueue === 0, node.process, 10_000);

  // Every node → edge call is cut from here on: heartbeats, events, revocation checks.
  nodeToEdge.block = /./;
  await waitFor("node sees the edge unreachable", async () => !(await nodeStats()).edgeUp, node.process, 10_000);

  const peerJoined = once(a, "peer-joined", 8000);
  const b = await join_(consultant!.token);
  await peerJoined;
  const peerLeft = once<{ reason: string }>(a, "peer-left", 5000);
  await b.leave();
  assert.is((await peerLeft).reason, "bye");
  const leftAt = Date.now();

  // Queued at the node, synced to its journal, not at the edge.
  await waitFor("events journaled", async () => {
    const j = parseJournal(await readFile(join(stateDir, "events.jsonl"), "utf8").catch(() => ""));
    return j.pending.some((e) => e.type === "left" && e.terminalId === consultant!.terminalId);
  }, node.process, 10_000);
  const journalText = await readFile(join(stateDir, "events.jsonl"), "utf8");
  const journaled = parseJournal(journalText).pending;
  assert.equal(journaled.map((e) => [e.type, e.terminalId]), [["joined", consultant!.terminalId], ["connected", undefined], ["left", consultant!.terminalId]]);
  assert.ok((await nodeStats()).reporterQueue >= 3);
  // No token, no patient data in the journal (only ids, types, times).
  const patient = testPatient("J");
  for (const secret of [requester!.token, consultant!.token, patient.name, patient.id, patient.birthDate, patient.summary, credential.secret]) {
    assert.not.ok(journalText.includes(secret), "the journal holds a token, a secret or patient data");
  }
  const during = (await clinic.getConsultation(created.id)).body;
  assert.is(byTerminal(during, "join", consultant!.terminalId).length, 0, "the consultant's join has not reached the edge");
  assert.is(byTerminal(during, "leave", consultant!.terminalId).length, 0, "nor the leave");
  assert.ok(nodeToEdge.blocked > 0, "the node did try to report");

  // The node crashes with those events undelivered, then the edge becomes reachable again.
  await node.kill();
  const killedAt = Date.now();
  nodeToEdge.block = undefined;
  node = await startNode();
  await waitFor("journaled events re-sent", async () => (await nodeStats()).reporterQueue === 0, node.process, 20_000);
  assert.ok(lines.some((l) => l.includes("undelivered events from the last run will be sent first") && l.includes("events=3")), "the restarted node says it re-sends its journal");

  const rec = await clinic.waitForConsultation(created.id, (c) => byTerminal(c, "leave", consultant!.terminalId).length >= 1, 15_000);
  assert.is(byTerminal(rec, "join", consultant!.terminalId).length, 1, "the consultant's join, once");
  assert.is(byTerminal(rec, "leave", consultant!.terminalId).length, 1, "the consultant's leave, once");
  assert.is(byTerminal(rec, "join", requester!.terminalId).length, 1, "the requester's join, still once");
  assert.is(rec.events.filter((e: any) => e.action === "connected").length, 1);
  assert.is(rec.status, "connected");
  const leaveAt = Date.parse(byTerminal(rec, "leave", consultant!.terminalId)[0].at);
  assert.ok(leaveAt <= leftAt && leaveAt < killedAt, "recorded with the time it happened, not when it arrived");
  const consultantRow = rec.participants.find((p: any) => p.role === "consultant");
  assert.ok(consultantRow.joinedAt && consultantRow.leftAt, "the consultant's participation is recorded, in and out");

  // Delivered means gone from the journal; more heartbeats send nothing again.
  await sleep(1200);
  assert.equal(parseJournal(await readFile(join(stateDir, "events.jsonl"), "utf8")).pending, []);
  const again = (await clinic.getConsultation(created.id)).body;
  assert.is(again.events.length, rec.events.length, "nothing recorded twice");

  // Had the node crashed after the edge took them but before marking them done, it would send
  // them again: same ids, so the edge records nothing twice.
  await node.kill();
  await writeFile(join(stateDir, "events.jsonl"), journalText);
  node = await startNode();
  await waitFor("re-sent again", async () => (await nodeStats()).reporterQueue === 0, node.process, 20_000);
  assert.is(lines.filter((l) => l.includes("undelivered events from the last run will be sent first")).length, 2);
  await sleep(600);
  const replayed = (await clinic.getConsultation(created.id)).body;
  assert.equal(replayed.events.map((e: any) => e.id), rec.events.map((e: any) => e.id), "the re-sent events changed nothing");
});

t.run();
