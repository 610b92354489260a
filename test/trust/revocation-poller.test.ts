// The node's revocation re-check (media/revocations.ts) without a network: what it applies,
// where it asks from next (the edge's clock, with overlap; a full page continues from its last
// entry), and that an unreachable edge or a malformed answer changes nothing.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { RevocationPoller } from "../../media/revocations.ts";

function setup(answers: (() => Response)[]) {
  const calls: string[] = [];
  const closed: string[] = [];
  const revoked: [string, string[]][] = [];
  const relay = {
    closeGroup: (g: string) => (closed.push(g), g === "grp_live" ? 2 : undefined),
    revoke: (g: string, jtis: string[] = []) => (revoked.push([g, jtis]), g === "grp_live" ? jtis.length : undefined),
  };
  const fetch = (async (url: string, init: RequestInit) => {
    calls.push(`${url} ${new Headers(init.headers).get("authorization")}`);
    const next = answers.shift();
    if (!next) throw new TypeError("connection refused");
    return next();
  }) as unknown as typeof globalThis.fetch;
  const p = new RevocationPoller({ edgeUrl: "http://edge.test/", nodeId: "node-1", secret: "s3cret", relay: relay as never, intervalMs: 1000, fetch, since: 5000 });
  return { p, calls, closed, revoked };
}

test("applies ended groups and revoked tokens, then asks from the edge's now minus an overlap", async () => {
  const s = setup([
    () => Response.json({ now: 100_000, groups: [{ groupId: "grp_live", endedAt: 90_000 }, { groupId: "grp_gone", endedAt: 91_000 }], tokens: [{ jti: "j1", groupId: "grp_live", terminalId: "t", revokedAt: 95_000 }, { jti: "j2", groupId: "grp_live", terminalId: "t", revokedAt: 96_000 }] }),
    () => Response.json({ now: 110_000, groups: [], tokens: [] }),
  ]);
  assert.is(await s.p.check(), 4, "2 sessions of the ended group + 2 revoked tokens");
  assert.equal(s.closed, ["grp_live", "grp_gone"]);
  assert.equal(s.revoked, [["grp_live", ["j1", "j2"]]]);
  assert.is(s.calls[0], "http://edge.test/v1/nodes/node-1/revocations?since=5000 Bearer s3cret");
  assert.is(await s.p.check(), 0);
  assert.match(s.calls[1]!, "since=98000 ");
});

test("a full page continues from its last entry; a failure or malformed answer keeps the time", async () => {
  const tokens = Array.from({ length: 1000 }, (_, i) => ({ jti: `j${i}`, groupId: "grp_x", terminalId: "t", revokedAt: 10_000 + i }));
  const s = setup([
    () => Response.json({ now: 900_000, groups: [], tokens }),
    () => new Response("{}", { status: 503 }),
    () => Response.json({ now: "soon", groups: 3 }),
  ]);
  await s.p.check();
  assert.match(s.calls[0]!, "since=5000 ");
  assert.is(await s.p.check(), undefined);
  assert.match(s.calls[1]!, "since=10999 ", "from the page's last revocation, not the edge's now");
  assert.is(await s.p.check(), undefined);
  assert.is(await s.p.check(), undefined, "edge unreachable");
  assert.match(s.calls[3]!, "since=10999 ");
  assert.is(s.p.checks, 1);
});

test.run();
