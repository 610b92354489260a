// The node → edge reporter with a fake fetch: events queued with unique ids, retried until
// the edge answers 200, heartbeats sent whether or not the edge is up.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { EdgeReporter, type HeartbeatBody } from "../../media/reporter.ts";

const hb: HeartbeatBody = {
  region: "local", url: "https://127.0.0.1:1/v1/session", apiUrl: "http://127.0.0.1:2", certHashes: ["x"],
  capacity: { maxSessions: 1, maxGroups: 1, maxKbpsOut: 1 },
  load: { sessions: 0, groups: 0, kbpsIn: 0, kbpsOut: 0, cpu: 0, loopLagMs: 0, lossRate: 0 }, draining: false,
};

function fakeEdge() {
  const calls: { path: string; auth: string | null; body: any }[] = [];
  let up = false;
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const path = new URL(String(input)).pathname;
    calls.push({ path, auth: new Headers(init?.headers).get("authorization"), body: JSON.parse(String(init?.body)) });
    if (!up) throw new TypeError("connection refused");
    return new Response(JSON.stringify({ ok: true }), { status: 200 });
  }) as typeof fetch;
  return { calls, f, setUp: (v: boolean) => { up = v; } };
}

test("events are retried until the edge answers, each with a unique id, in order", async () => {
  const edge = fakeEdge();
  const r = new EdgeReporter({ edgeUrl: "http://edge.test", nodeId: "node-1", secret: "hzn_secret", heartbeat: () => hb, heartbeatMs: 100, fetch: edge.f });
  r.start();
  const base = { consultationId: "c", groupId: "g", at: 1 };
  r.enqueue({ type: "joined", terminalId: "a", ...base });
  r.enqueue({ type: "joined", terminalId: "b", ...base });
  r.enqueue({ type: "connected", ...base });
  await new Promise((res) => setTimeout(res, 700));
  assert.is(r.queue.length, 3, "kept while the edge is down");
  assert.ok(edge.calls.filter((c) => c.path.endsWith("/heartbeat")).length >= 3, "heartbeats go on");
  edge.setUp(true);
  const deadline = Date.now() + 5000;
  while (r.queue.length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  r.stop();
  assert.is(r.queue.length, 0);
  const delivered = edge.calls.filter((c) => c.path === "/v1/nodes/node-1/events").at(-1)!;
  assert.equal(delivered.body.events.map((e: any) => e.type), ["joined", "joined", "connected"]);
  assert.is(new Set(delivered.body.events.map((e: any) => e.id)).size, 3);
  assert.ok(edge.calls.every((c) => c.auth === "Bearer hzn_secret"));
  assert.equal(edge.calls.find((c) => c.path.endsWith("/heartbeat"))!.body, hb);
});

test.run();
