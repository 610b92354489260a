// Token hardening on the running parts: every attack of test/trust/attacks.ts (algorithm
// allow-list, iss/aud/exp/nbf with the clock-skew bound, type, unknown kid, tampering, single
// use per join with the documented resume path, revocation, the end, tokens in the wrong
// place, replayed node-API calls) is refused by the real node and edge; the genuine tokens and
// the resume path are admitted (positive controls inside). Runs under Deno.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ClinicClient } from "../support/clinic-client.ts";
import { runTokenAttacks } from "./attacks.ts";
import { TrustStack } from "./stack.ts";

test("no token attack is accepted by the node or the edge", async () => {
  const stack = await TrustStack.start();
  try {
    const r = await runTokenAttacks(stack, new ClinicClient(stack.edgeUrl, stack.clinicApiKey));
    console.log(`token attacks: ${r.tried} tried, ${r.accepted} accepted`);
    assert.ok(r.tried >= 40, `only ${r.tried} attacks ran`);
    assert.equal(r.acceptedNames, []);
  } finally {
    await stack.stop();
  }
});

test.run();
