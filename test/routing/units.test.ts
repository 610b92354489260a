// Pure parts of the routing work: the placement score on tables of two-terminal cases, the
// probe's summary, node report signatures, and the node's config file.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { rankNodes } from "../../src/routing.ts";
import type { MediaNodeInfo, PathMeasurement } from "../../src/types.ts";
import { summarise, probeUrlOf, UNREACHABLE_RTT_MS } from "../../src/terminal/probe.ts";
import { NodeSigner, generateNodeKey, isPublicNodeJwk, publicJwkOfSecret, verifyNodeRequest } from "../../src/node-credential.ts";
import { configFileEnv, ConfigFileError } from "../../media/config-file.ts";
import { configFromEnv } from "../../media/node.ts";
import { planPlacement } from "../../src/routing/cascade.ts";

const NOW = 1_800_000_000_000;
function node(id: string, load: Partial<MediaNodeInfo["load"]> = {}, over: Partial<MediaNodeInfo> = {}): MediaNodeInfo {
  return {
    id, region: "eu", url: `https://${id}/v1/session`, apiUrl: `http://${id}`, certHashes: [],
    capacity: { maxSessions: 100, maxGroups: 20, maxKbpsOut: 100_000 },
    load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0, ...load },
    lastSeenAt: NOW - 500, draining: false, ...over,
  };
}
const m = (nodeId: string, rttMs: number, loss = 0, jitterMs = 0): PathMeasurement => ({ nodeId, rttMs, jitterMs, loss, measuredAt: NOW - 1000 });

const cases: { name: string; nodes: MediaNodeInfo[]; ms: Record<string, PathMeasurement[]>; want: string[] }[] = [
  {
    name: "both terminals near the same node",
    nodes: [node("a"), node("b")],
    ms: { t1: [m("a", 10), m("b", 60)], t2: [m("a", 15), m("b", 50)] },
    want: ["a", "b"],
  },
  {
    name: "one badly served terminal is not hidden by the other being well served",
    nodes: [node("a"), node("b")],
    ms: { t1: [m("a", 2), m("b", 40)], t2: [m("a", 120), m("b", 45)] },
    want: ["b", "a"],
  },
  {
    name: "a lossy path loses to a longer clean one",
    nodes: [node("a"), node("b")],
    ms: { t1: [m("a", 5, 0.1), m("b", 30)], t2: [m("a", 5, 0.1), m("b", 30)] },
    want: ["b", "a"],
  },
  {
    name: "a 75% loaded node loses to a slightly longer path",
    nodes: [node("a", { groups: 15, sessions: 30 }), node("b")],
    ms: { t1: [m("a", 1), m("b", 12)], t2: [m("a", 1), m("b", 12)] },
    want: ["b", "a"],
  },
  {
    name: "lightly loaded nodes are near-equal: the path decides",
    nodes: [node("a", { groups: 4, sessions: 8 }), node("b")],
    ms: { t1: [m("a", 3), m("b", 20)], t2: [m("a", 3), m("b", 20)] },
    want: ["a", "b"],
  },
  {
    name: "overloaded, draining and silent nodes are not candidates",
    nodes: [node("a", { groups: 19, sessions: 38 }), node("b", {}, { draining: true }), node("c", {}, { lastSeenAt: NOW - 60_000 }), node("d")],
    ms: { t1: [m("a", 1), m("b", 1), m("c", 1), m("d", 90)] },
    want: ["d"],
  },
  {
    name: "an unreachable node (probe: all lost) ranks last",
    nodes: [node("a"), node("b")],
    ms: { t1: [m("a", UNREACHABLE_RTT_MS, 1), m("b", 200)], t2: [m("a", 5), m("b", 200)] },
    want: ["b", "a"],
  },
];

for (const c of cases) {
  test(`placement: ${c.name}`, () => {
    assert.equal(rankNodes(c.nodes, { now: NOW, measurements: c.ms, staleAfterMs: 15_000 }).map((s) => s.node.id), c.want);
  });
}

const plans: { name: string; nodes: MediaNodeInfo[]; ms: Record<string, PathMeasurement[]>; want: string | Record<string, string> }[] = [
  {
    name: "clinic and specialist far apart over lossy public paths: each joins its nearest, the nodes cascade",
    nodes: [node("eu"), node("asia")],
    ms: { t1: [m("eu", 10), m("asia", 250, 0.05, 10)], t2: [m("eu", 240, 0.05, 10), m("asia", 12)] },
    want: { t1: "eu", t2: "asia" },
  },
  {
    name: "both near one node: no cascade",
    nodes: [node("eu"), node("asia")],
    ms: { t1: [m("eu", 10), m("asia", 250)], t2: [m("eu", 30), m("asia", 200)] },
    want: "eu",
  },
  {
    name: "far apart over clean paths: the link would cost what it saves, one node",
    nodes: [node("eu"), node("asia")],
    ms: { t1: [m("eu", 10), m("asia", 250)], t2: [m("eu", 240), m("asia", 12)] },
    want: "eu",
  },
  {
    name: "a middle node close enough to both beats a cascade",
    nodes: [node("eu"), node("asia"), node("mid")],
    ms: { t1: [m("eu", 10), m("asia", 250, 0.05), m("mid", 60)], t2: [m("eu", 240, 0.05), m("asia", 12), m("mid", 60)] },
    want: "mid",
  },
  {
    name: "a small gain does not pay for a second node",
    nodes: [node("a"), node("b")],
    ms: { t1: [m("a", 10), m("b", 40)], t2: [m("a", 40), m("b", 10)] },
    want: "a",
  },
  {
    name: "without measurements there is no cascade",
    nodes: [node("a"), node("b")],
    ms: {},
    want: "a",
  },
  {
    name: "an overloaded nearest node is not a cascade leg",
    nodes: [node("eu", { groups: 19, sessions: 38 }), node("asia"), node("eu2")],
    ms: { t1: [m("eu", 5), m("asia", 250, 0.05), m("eu2", 15)], t2: [m("eu", 240, 0.05), m("asia", 12), m("eu2", 245, 0.05)] },
    want: { t1: "eu2", t2: "asia" },
  },
];

for (const c of plans) {
  test(`cascade plan: ${c.name}`, () => {
    const plan = planPlacement(c.nodes, { now: NOW, measurements: c.ms, staleAfterMs: 15_000 }, ["t1", "t2"])!;
    if (typeof c.want === "string") assert.equal([plan.kind, plan.kind === "single" ? plan.nodeId : ""], ["single", c.want]);
    else assert.equal(plan.kind === "cascade" ? plan.byTerminal : plan, c.want);
  });
}

test("probe summary: median RTT, mean RTT difference as jitter, loss from counts", () => {
  assert.equal(summarise(10, [10, 12, 10, 14, 10]), { rttMs: 10, jitterMs: 3, loss: 0.5 });
  assert.equal(summarise(4, [5, 7, 9, 11]), { rttMs: 8, jitterMs: 2, loss: 0 });
  assert.equal(summarise(5, []), { rttMs: UNREACHABLE_RTT_MS, jitterMs: 0, loss: 1 });
  assert.is(probeUrlOf("https://10.0.0.1:4433/v1/session?x=1"), "https://10.0.0.1:4433/v1/probe");
});

test("node reports: signed for one node, method, path and body", async () => {
  const key = await generateNodeKey();
  assert.ok(isPublicNodeJwk(key.publicJwk));
  assert.equal(publicJwkOfSecret(key.secret), key.publicJwk);
  assert.not.ok(JSON.stringify(key.publicJwk).includes('"d"'));
  const signer = new NodeSigner("n1", key.secret);
  const body = JSON.stringify({ region: "eu" });
  const jwt = await signer.sign("POST", "/v1/nodes/n1/heartbeat", body);
  const enc = (s: string) => async () => new TextEncoder().encode(s);
  await verifyNodeRequest(jwt, key.publicJwk, { nodeId: "n1", method: "POST", path: "/v1/nodes/n1/heartbeat", body: enc(body) });
  const refused = async (want: Parameters<typeof verifyNodeRequest>[2], pub = key.publicJwk, token = jwt) => {
    try {
      await verifyNodeRequest(token, pub, want);
      return false;
    } catch (err) {
      return (err as Error).name === "NodeCredentialError";
    }
  };
  assert.ok(await refused({ nodeId: "n2", method: "POST", path: "/v1/nodes/n1/heartbeat", body: enc(body) }), "another node");
  assert.ok(await refused({ nodeId: "n1", method: "POST", path: "/v1/nodes/n1/events", body: enc(body) }), "another path");
  assert.ok(await refused({ nodeId: "n1", method: "GET", path: "/v1/nodes/n1/heartbeat", body: enc(body) }), "another method");
  assert.ok(await refused({ nodeId: "n1", method: "POST", path: "/v1/nodes/n1/heartbeat", body: enc(body + " ") }), "another body");
  assert.ok(await refused({ nodeId: "n1", method: "POST", path: "/v1/nodes/n1/heartbeat", body: enc(body) }, (await generateNodeKey()).publicJwk), "another key");
  assert.ok(await refused({ nodeId: "n1", method: "POST", path: "/v1/nodes/n1/heartbeat", body: enc(body), now: new Date(Date.now() + 10 * 60_000) }), "expired");
  const old = await signer.sign("POST", "/v1/nodes/n1/heartbeat", body, Math.floor(Date.now() / 1000) - 600);
  assert.ok(await refused({ nodeId: "n1", method: "POST", path: "/v1/nodes/n1/heartbeat", body: enc(body) }, key.publicJwk, old), "old");
  assert.throws(() => new NodeSigner("n1", "hzn_plain_bearer"), /signing secret/);
});

test("node config file: fields map onto the environment names; typos are errors", () => {
  assert.equal(configFileEnv({ id: "n1", region: "eu", edgeUrl: "https://edge", mediaPort: 4433, maxGroups: 10 }), {
    NODE_ID: "n1", NODE_REGION: "eu", EDGE_URL: "https://edge", MEDIA_PORT: "4433", MAX_GROUPS: "10",
  });
  assert.throws(() => configFileEnv({ id: "n1", edgeURL: "x" }), (e: unknown) => e instanceof ConfigFileError && /edgeURL/.test((e as Error).message));
  assert.throws(() => configFileEnv([]), (e: unknown) => e instanceof ConfigFileError);
  assert.throws(() => configFileEnv({ id: { nested: true } }), (e: unknown) => e instanceof ConfigFileError);
});

test("node config file: the TCP fallback's fields map onto MEDIA_FALLBACK_* and configure the node", () => {
  const env = configFileEnv({
    id: "n1", edgeUrl: "https://edge", secret: "s", mediaPort: 4433, publicUrl: "https://m1.example:4433/v1/session",
    fallback: "on", fallbackHost: "0.0.0.0", fallbackPort: 443, fallbackPublicUrl: "https://m1.example/v1/session",
    fallbackTlsCertFile: "/etc/huizhen/fallback-cert.pem", fallbackTlsKeyFile: "/etc/huizhen/fallback-key.pem", fallbackTlsReloadMs: 30000,
  });
  assert.equal(
    [env.MEDIA_FALLBACK, env.MEDIA_FALLBACK_HOST, env.MEDIA_FALLBACK_PORT, env.MEDIA_FALLBACK_PUBLIC_URL, env.MEDIA_FALLBACK_TLS_CERT_FILE, env.MEDIA_FALLBACK_TLS_KEY_FILE, env.MEDIA_FALLBACK_TLS_RELOAD_MS],
    ["on", "0.0.0.0", "443", "https://m1.example/v1/session", "/etc/huizhen/fallback-cert.pem", "/etc/huizhen/fallback-key.pem", "30000"],
  );
  // What the node makes of it (media/node.ts configFromEnv, the same path as main.ts).
  assert.equal(configFromEnv(env).fallback, {
    host: "0.0.0.0", port: 443, publicUrl: "https://m1.example/v1/session",
    tlsCertFile: "/etc/huizhen/fallback-cert.pem", tlsKeyFile: "/etc/huizhen/fallback-key.pem", tlsReloadMs: 30000,
  });
  // A switch may be written as JSON true/false; off means no fallback at all.
  assert.is(configFileEnv({ fallback: false }).MEDIA_FALLBACK, "off");
  assert.is(configFileEnv({ fallback: true }).MEDIA_FALLBACK, "on");
  assert.is(configFromEnv(configFileEnv({ id: "n1", edgeUrl: "https://edge", secret: "s", fallback: false })).fallback, undefined);
  // Other fields stay string-or-number; the node's own checks still apply to file values.
  assert.throws(() => configFileEnv({ fallbackPort: true }), (e: unknown) => e instanceof ConfigFileError && /fallbackPort/.test((e as Error).message));
  assert.throws(() => configFileEnv({ fallbackTLSCertFile: "x" }), (e: unknown) => e instanceof ConfigFileError && /fallbackTLSCertFile/.test((e as Error).message));
  const base = { id: "n1", edgeUrl: "https://edge", secret: "s" };
  assert.throws(() => configFromEnv(configFileEnv({ ...base, fallbackTlsCertFile: "/c.pem" })), /go together/);
  assert.throws(() => configFromEnv(configFileEnv({ ...base, fallbackPublicUrl: "http://m1.example/v1/session" })), /https/);
  assert.throws(() => configFromEnv(configFileEnv({ ...base, fallback: "maybe" })), /on or off/);
});

test.run();
