// The media node's event journal (media/journal.ts, media/journal-file.ts) on real files in a
// temp dir, under Deno, and the reporter (media/reporter.ts) over it with a fake edge (a fetch
// function: the edge's side is the end-to-end test test/trust/node-crash-journal.deno.test.ts).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventJournal, eventLine, parseJournal, type JournaledEvent, type JournalStore } from "../../media/journal.ts";
import { JournalFile } from "../../media/journal-file.ts";
import { EdgeReporter, type HeartbeatBody } from "../../media/reporter.ts";
import type { RelayEvent } from "../../media/relay/relay.ts";
import { configFromEnv } from "../../media/node.ts";
import { configFileEnv } from "../../media/config-file.ts";

const t = suite("media event journal");
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "huizhen-journal-test-"));
  dirs.push(d);
  return d;
}
t.after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const ev = (i: number, over: Partial<JournaledEvent> = {}): JournaledEvent => ({
  id: `ev_${i}`, type: i % 2 ? "left" : "joined", consultationId: "cns_1", groupId: "grp_1", terminalId: `trm_${i}`, jti: `jti_${i}`, at: 1_700_000_000_000 + i, ...over,
});

async function openDir(dir: string, log?: (m: string, f?: Record<string, unknown>) => void, compactMinBytes?: number) {
  return EventJournal.open(await JournalFile.open(dir), { log, compactMinBytes });
}

t("events survive a reopen in order with their ids; acknowledged ones do not come back", async () => {
  const dir = await tempDir();
  const { journal, recovered } = await openDir(dir);
  assert.equal(recovered, []);
  await journal.append([ev(1), ev(2)]);
  await journal.append([ev(3, { reason: "bye" })]);
  await journal.done(["ev_1"]);
  await journal.close();
  const again = await openDir(dir);
  assert.equal(again.recovered, [ev(2), ev(3, { reason: "bye" })]);
  await again.journal.close();
  assert.is(((await stat(join(dir, "events.jsonl"))).mode & 0o777), 0o600, "the journal is the node's alone");
});

t("a half-written last line (a crash mid-write) and a damaged line are skipped with a log line; the journal goes on", async () => {
  const dir = await tempDir();
  const torn = eventLine(ev(9)).slice(0, 30);
  await writeFile(join(dir, "events.jsonl"), eventLine(ev(1)) + "{not json\n" + eventLine(ev(2)) + JSON.stringify({ e: { id: "ev_x", type: "exploded" } }) + "\n" + torn);
  const logs: { msg: string; fields?: Record<string, unknown> }[] = [];
  const { journal, recovered } = await openDir(dir, (msg, fields) => logs.push({ msg, fields }));
  assert.equal(recovered, [ev(1), ev(2)]);
  const skipped = logs.find((l) => /unreadable lines skipped/.test(l.msg));
  assert.ok(skipped, JSON.stringify(logs));
  assert.is(skipped!.fields!.lines, 3);
  // Appending after the torn line must not glue onto it: the journal was rewritten at open.
  await journal.append([ev(3)]);
  await journal.close();
  const text = await readFile(join(dir, "events.jsonl"), "utf8");
  assert.equal(parseJournal(text), { pending: [ev(1), ev(2), ev(3)], skipped: 0 });
});

t("acknowledged lines are compacted away: the file stays bounded, and empty once all is delivered", async () => {
  const dir = await tempDir();
  const { journal } = await openDir(dir, undefined, 4096);
  await journal.append([ev(0)]); // one event stays pending throughout
  let largest = 0;
  for (let i = 1; i <= 1500; i++) {
    await journal.append([ev(i)]);
    await journal.done([`ev_${i}`]);
    largest = Math.max(largest, journal.bytes);
  }
  const size = (await stat(join(dir, "events.jsonl"))).size;
  assert.ok(largest <= 4096 + 400, `journal reached ${largest} bytes for one pending event (1,500 written)`);
  assert.ok(size <= 4096 + 400, `file ${size} bytes`);
  assert.is(journal.pending, 1);
  await journal.done(["ev_0"]);
  assert.is((await stat(join(dir, "events.jsonl"))).size, 0, "nothing pending: empty file");
  await journal.close();
});

t("a state dir held by a running node is refused", async () => {
  const dir = await tempDir();
  const first = await JournalFile.open(dir);
  try {
    const err = await JournalFile.open(dir).then(() => undefined, (e: Error) => e);
    assert.match(String(err?.message), /in use by another media node process/);
  } finally {
    await first.close();
  }
  const again = await JournalFile.open(dir); // free once the first is closed (or its process died)
  await again.close();
});

// ---- the reporter over the journal ----

const hb: HeartbeatBody = {
  region: "local", url: "https://127.0.0.1:1/v1/session", apiUrl: "http://127.0.0.1:2", certHashes: ["x"],
  capacity: { maxSessions: 1, maxGroups: 1, maxKbpsOut: 1 },
  load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0 }, draining: false,
};

function fakeEdge() {
  const batches: JournaledEvent[][] = [];
  let up = false;
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    if (!up) throw new TypeError("connection refused");
    if (new URL(String(input)).pathname.endsWith("/events")) batches.push(JSON.parse(String(init?.body)).events);
    return new Response("{}", { status: 200 });
  }) as typeof fetch;
  return { batches, f, setUp: (v: boolean) => { up = v; } };
}

const relayEvent = (type: RelayEvent["type"], terminalId?: string): RelayEvent => ({ type, consultationId: "cns_1", groupId: "grp_1", at: Date.now(), ...(terminalId ? { terminalId, jti: `jti_${terminalId}` } : {}) });

async function until(what: string, check: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t("what a stopped node had not delivered is sent first after a restart, same ids, then new events", async () => {
  const dir = await tempDir();
  const edge = fakeEdge();
  const r1 = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "n1", secret: "s", heartbeat: () => hb, heartbeatMs: 50, fetch: edge.f, journal: await openDir(dir) });
  r1.start();
  r1.enqueue(relayEvent("joined", "trm_a"));
  r1.enqueue(relayEvent("connected"));
  r1.enqueue(relayEvent("left", "trm_a"));
  await until("three events on disk", () => r1.durable === 3);
  const ids = r1.queue.map((e) => e.id);
  // As after a kill: the process is gone, the file stays (the writes were synced before `durable`).
  await r1.close();
  const logs: string[] = [];
  const r2 = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "n1", secret: "s", heartbeat: () => hb, heartbeatMs: 50, fetch: edge.f, journal: await openDir(dir, (m) => logs.push(m)) });
  assert.ok(logs.some((m) => /undelivered events from the last run/.test(m)));
  r2.start();
  r2.enqueue(relayEvent("joined", "trm_b"));
  edge.setUp(true);
  await until("delivered", () => r2.queue.length === 0);
  const sent = edge.batches.flat();
  assert.equal(sent.slice(0, 3).map((e) => e.id), ids, "the journal's events first, with their ids");
  assert.equal(sent.map((e) => [e.type, e.terminalId]), [["joined", "trm_a"], ["connected", undefined], ["left", "trm_a"], ["joined", "trm_b"]]);
  assert.is(new Set(sent.map((e) => e.id)).size, sent.length);
  await r2.close();
  const after = await openDir(dir);
  assert.equal(after.recovered, [], "delivered events are gone from the journal");
  await after.journal.close();
});

t("an event is sent only once it is synced to the journal", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const appended: string[] = [];
  const store: JournalStore = {
    read: async () => "",
    append: async (text, sync) => { if (sync) await gate; appended.push(text); },
    replace: async () => {},
    close: async () => {},
  };
  const edge = fakeEdge();
  edge.setUp(true);
  const r = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "n1", secret: "s", heartbeat: () => hb, heartbeatMs: 50, fetch: edge.f, journal: await EventJournal.open(store) });
  r.start();
  r.enqueue(relayEvent("joined", "trm_a"));
  await new Promise((res) => setTimeout(res, 300));
  assert.is(edge.batches.length, 0, "nothing sent while the write is not synced");
  assert.is(r.durable, 0);
  release();
  await until("sent after the sync", () => edge.batches.length === 1);
  assert.is(appended.length, 1);
  await r.close();
});

t("a stopping node's last events (the `left`s of its drain) are journaled and sent before it closes", async () => {
  const dir = await tempDir();
  const edge = fakeEdge();
  edge.setUp(true);
  const r = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "n1", secret: "s", heartbeat: () => hb, fetch: edge.f, journal: await openDir(dir) });
  r.enqueue(relayEvent("left", "trm_a"));
  r.enqueue(relayEvent("left", "trm_b"));
  await r.deliver();
  await r.close();
  assert.equal(edge.batches.flat().map((e) => e.terminalId), ["trm_a", "trm_b"]);
  const after = await openDir(dir);
  assert.equal(after.recovered, []);
  await after.journal.close();
});

t("beyond the bound the oldest events are dropped with a log line, and stay dropped after a restart", async () => {
  const dir = await tempDir();
  const edge = fakeEdge();
  const logs: { msg: string; fields?: Record<string, unknown> }[] = [];
  const r = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "n1", secret: "s", heartbeat: () => hb, heartbeatMs: 50, fetch: edge.f, maxQueued: 5, log: (msg, fields) => logs.push({ msg, fields }), journal: await openDir(dir) });
  for (let i = 0; i < 8; i++) r.enqueue(relayEvent("joined", `trm_${i}`));
  await until("on disk", () => r.durable === 5);
  assert.is(r.dropped, 3);
  const full = logs.filter((l) => /event queue full/.test(l.msg));
  assert.is(full.length, 1, "one line for the burst, not one per event");
  assert.is(full[0]!.fields!.max, 5);
  await r.close();
  const again = await openDir(dir);
  assert.equal(again.recovered.map((e) => e.terminalId), ["trm_3", "trm_4", "trm_5", "trm_6", "trm_7"]);
  await again.journal.close();
});

t("only the fields the edge takes reach the journal: no token, nothing else a relay event might carry", async () => {
  const dir = await tempDir();
  const edge = fakeEdge();
  const r = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "n1", secret: "s", heartbeat: () => hb, fetch: edge.f, journal: await openDir(dir) });
  const token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ0cm1fYSJ9.c2lnbmF0dXJl";
  r.enqueue({ ...relayEvent("joined", "trm_a"), token, patientName: "Marguerite Oyelaran" } as RelayEvent);
  await until("on disk", () => r.durable === 1);
  await r.close();
  const text = await readFile(join(dir, "events.jsonl"), "utf8");
  assert.ok(text.includes("trm_a"));
  assert.not.ok(text.includes(token) || text.includes("eyJ") || text.includes("Marguerite") || text.includes("patientName"), text);
});

t("MEDIA_STATE_DIR: from the environment or the config file's stateDir; by default .huizhen/<node id>", () => {
  const base = { NODE_ID: "node-fra-1", NODE_SECRET: "s", EDGE_URL: "https://edge.example" };
  assert.is(configFromEnv(base).stateDir, ".huizhen/node-fra-1");
  assert.is(configFromEnv({ ...base, NODE_ID: "../../etc" }).stateDir, ".huizhen/______etc", "a node id cannot point elsewhere");
  assert.is(configFromEnv({ ...base, MEDIA_STATE_DIR: "/var/lib/huizhen/fra-1" }).stateDir, "/var/lib/huizhen/fra-1");
  assert.is(configFromEnv({ ...configFileEnv({ id: "n1", secret: "s", edgeUrl: "https://edge.example", stateDir: "/srv/n1" }) }).stateDir, "/srv/n1");
});

t.run();
