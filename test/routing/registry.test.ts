// Node registry on real parts: `npm run node:add` makes a node's credential and config file, a
// real media node (Deno) starts from that file and registers with a real edge (Deno + SQLite)
// by signed heartbeats; the edge refuses unsigned, re-targeted or altered reports, takes an
// overloaded node out of placement, and a node that stops heartbeating too.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  DENO, ManagedProcess, ROOT, ensureClinic, freePort, generateEdgeSecrets, startEdge, waitForNodeRegistered,
  type EdgeProcess,
} from "../../scripts/stack.ts";
import { NodeSigner } from "../../src/node-credential.ts";
import { ClinicClient, testPatient } from "../support/clinic-client.ts";

const run = promisify(execFile);
let dir: string;
let edge: EdgeProcess | undefined;
let node: ManagedProcess | undefined;
let nodeCfg: Record<string, string | number>;
let adminKey: string;
let clinic: ClinicClient;
let terminals: { id: string }[] = [];

const NODE_ID = "node-added";

async function heartbeatAs(body: unknown, signer: NodeSigner, opts: { path?: string; sentBody?: string; bearer?: string } = {}) {
  const path = `/v1/nodes/${NODE_ID}/heartbeat`;
  const text = JSON.stringify(body);
  const auth = opts.bearer ?? (await signer.sign("POST", opts.path ?? path, text));
  const res = await fetch(`${edge!.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${auth}`, "content-type": "application/json" },
    body: opts.sentBody ?? text,
  });
  await res.body?.cancel();
  return res.status;
}

async function liveNode() {
  const res = await fetch(`${edge!.url}/v1/nodes`, { headers: { authorization: `Bearer ${adminKey}` } });
  const body = (await res.json()) as { nodes: { id: string; live: boolean; url: string; apiUrl: string; certHashes: string[]; region: string }[] };
  return body.nodes.find((n) => n.id === NODE_ID);
}

const create = () =>
  clinic.createConsultation({ patient: testPatient(), requester: { terminalId: terminals[0]!.id }, consultant: { terminalId: terminals[1]!.id } });

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "huizhen-nodeadd-"));
});

test.after(async () => {
  await node?.stop();
  await edge?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("node:add makes the node's credential and config file and prints the edge entry", async () => {
  const edgePort = await freePort();
  const mediaPort = await freePort();
  const apiPort = await freePort();
  await writeFile(join(dir, "node.json"), JSON.stringify({
    id: NODE_ID, region: "eu-west", edgeUrl: `http://127.0.0.1:${edgePort}`,
    mediaHost: "127.0.0.1", mediaPort, publicUrl: `https://127.0.0.1:${mediaPort}/v1/session`,
    apiHost: "127.0.0.1", apiPort, heartbeatMs: 60_000,
  }));
  const creds = join(dir, "node-credentials.json");
  const { stdout } = await run(process.execPath, ["--import", "tsx", "scripts/node-add.ts", join(dir, "node.json"), "--credentials", creds], { cwd: ROOT });
  const out = join(dir, `${NODE_ID}.node.json`);
  assert.is((await stat(out)).mode & 0o777, 0o600);
  nodeCfg = JSON.parse(await readFile(out, "utf8"));
  assert.match(String(nodeCfg.secret), /^hznk\./);
  const edgeCreds = JSON.parse(await readFile(creds, "utf8"));
  assert.equal(Object.keys(edgeCreds), [NODE_ID]);
  assert.is(edgeCreds[NODE_ID].kty, "OKP");
  assert.is(edgeCreds[NODE_ID].d, undefined, "the edge gets the public key only");
  assert.ok(stdout.includes(JSON.stringify(edgeCreds[NODE_ID])));
  assert.not.ok(stdout.includes(String(nodeCfg.secret)), "the secret is not printed");
  // Made once: a second run refuses to overwrite the node's credential.
  const again = await run(process.execPath, ["--import", "tsx", "scripts/node-add.ts", join(dir, "node.json")], { cwd: ROOT }).then(() => 0, (e) => e.code as number);
  assert.is(again, 2);

  const secrets = await generateEdgeSecrets();
  adminKey = secrets.ADMIN_KEY;
  edge = await startEdge({ runtime: "deno", port: edgePort, secrets, nodeCredentials: JSON.stringify(edgeCreds), env: { NODE_STALE_MS: "2500" } });
});

test("the node starts from its config file and registers by signed heartbeat", async () => {
  const child = spawn(DENO, ["run", "--allow-all", "--unstable-net", join(ROOT, "media", "main.ts"), join(dir, `${NODE_ID}.node.json`)], {
    cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" }, stdio: ["ignore", "pipe", "pipe"], detached: true,
  });
  node = new ManagedProcess(NODE_ID, child);
  await waitForNodeRegistered(edge!, adminKey, NODE_ID);
  const n = await liveNode();
  assert.ok(n?.live);
  assert.is(n!.region, "eu-west");
  const c = await ensureClinic(edge!.url, adminKey, "reg-test", "Registry test clinic");
  clinic = new ClinicClient(edge!.url, c.apiKey!);
  terminals = [await clinic.registerTerminal("a", "doctor"), await clinic.registerTerminal("b", "specialist")];
  const r = await create();
  assert.is(r.status, 201, JSON.stringify(r.body));
  assert.is(r.body.group.node.id, NODE_ID);
  assert.not.ok(node.output.join("\n").includes(String(nodeCfg.secret)), "the node never logs its secret");
});

test("unsigned, re-targeted and altered reports are refused", async () => {
  const signer = new NodeSigner(NODE_ID, String(nodeCfg.secret));
  const n = (await liveNode())!;
  const body = {
    region: n.region, url: n.url, apiUrl: n.apiUrl, certHashes: n.certHashes, draining: false,
    capacity: { maxSessions: 100, maxGroups: 10, maxKbpsOut: 100_000 },
    load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0.05, loopLagMs: 1, lossRate: 0 },
  };
  assert.is(await heartbeatAs(body, signer), 200);
  assert.is(await heartbeatAs(body, signer, { bearer: String(nodeCfg.secret) }), 401, "the secret as bearer");
  assert.is(await heartbeatAs(body, signer, { path: `/v1/nodes/${NODE_ID}/events` }), 401, "signed for another path");
  assert.is(await heartbeatAs(body, signer, { sentBody: JSON.stringify({ ...body, region: "elsewhere" }) }), 401, "body altered");
  const other = new NodeSigner("node-other", String(nodeCfg.secret));
  assert.is(await heartbeatAs(body, other), 401, "signed as another node");
  // A captured report sent again within its lifetime: same signature, same body.
  const captured = await signer.sign("POST", `/v1/nodes/${NODE_ID}/heartbeat`, JSON.stringify(body));
  assert.is(await heartbeatAs(body, signer, { bearer: captured }), 200, "first use");
  assert.is(await heartbeatAs(body, signer, { bearer: captured }), 401, "replayed");
});

test("an overloaded node gets no new group; a node that stops heartbeating leaves placement", async () => {
  const signer = new NodeSigner(NODE_ID, String(nodeCfg.secret));
  const n = (await liveNode())!;
  const base = { region: n.region, url: n.url, apiUrl: n.apiUrl, certHashes: n.certHashes, draining: false, capacity: { maxSessions: 100, maxGroups: 10, maxKbpsOut: 100_000 } };
  const load = { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0.05, loopLagMs: 1, lossRate: 0 };
  assert.is(await heartbeatAs({ ...base, load: { ...load, groups: 10, sessions: 20 } }, signer), 200);
  const full = await create();
  assert.is(full.status, 503, JSON.stringify(full.body));
  assert.is((full.body as unknown as { error: { code: string } }).error.code, "no_media_node");
  assert.is(await heartbeatAs({ ...base, load }, signer), 200);
  assert.is((await create()).status, 201);
  // The node heartbeats once a minute here: past NODE_STALE_MS it is out.
  await new Promise((r) => setTimeout(r, 3000));
  assert.is((await liveNode())!.live, false);
  assert.is((await create()).status, 503);
});

test.run();
