// Bad input over the network against the running edge and node (test/trust/fuzz-net.ts), in
// small: fixed seeds, a few hundred inputs, seconds. `npm run bench:trust` runs thousands.
// The in-process fuzzers (test/fuzz/decoders.test.ts, test/edge/fuzz.deno.test.ts) cover the
// parsers themselves at higher counts. Runs under Deno.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fuzzEdge, fuzzNode } from "./fuzz-net.ts";
import { TrustStack } from "./stack.ts";

test("fuzzed HTTP to every edge endpoint and fuzzed QUIC input to the node: answered or dropped, no crash", async () => {
  const stack = await TrustStack.start({ edgeEnv: { RATE_LIMIT_IP: "1000000" } });
  try {
    const edge = await fuzzEdge(stack, 30);
    const node = await fuzzNode(stack, 20, 300);
    console.log(`edge: ${edge.tried} inputs ${JSON.stringify(edge.statuses)}; node: ${node.tried} inputs ${node.notes.join("; ")}`);
    assert.equal(edge.notes.slice(0, 5), [], `${edge.crashes} edge crashes`);
    assert.is(edge.crashes, 0);
    assert.ok((edge.statuses[400] ?? 0) > edge.tried / 4, "most inputs reach validation");
    assert.is(node.crashes, 0, node.notes.join("; "));
    assert.ok(edge.tried >= 300 && node.tried >= 300);
  } finally {
    await stack.stop();
  }
});

test.run();
