// The edge's key ring switches to a rotated-in key at its `activeFrom`, not up to 30 s later,
// and publishes it from the start (edge/config.ts, src/token/keys.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { KeyRing } from "../../edge/config.ts";
import { generateSigningJwk, rotateKeySet } from "../../src/token/keys.ts";

test("a rotated-in key is published at once and signs exactly from its activeFrom", async () => {
  const t0 = 1_800_000_000;
  const first = JSON.stringify({ keys: [await generateSigningJwk("EdDSA")] });
  const oldKid = JSON.parse(first).keys[0].kid;
  const { secret, newKid, activeFrom } = await rotateKeySet(first, { nowSec: t0, publishAheadSec: 5, tokenTtlSec: 600 });
  const ring = await KeyRing.load(secret, t0 * 1000);
  assert.is((await ring.get(t0 * 1000)).active.kid, oldKid);
  assert.equal((await ring.publicJwks(t0 * 1000)).map((k) => k.kid).sort(), [newKid, oldKid].sort());
  assert.is((await ring.get(activeFrom * 1000 - 1)).active.kid, oldKid, "not before its time");
  assert.is((await ring.get(activeFrom * 1000)).active.kid, newKid, "from its time on, without waiting for the 30 s reload");
  // The old key stays published for the overlap, then goes.
  assert.ok((await ring.publicJwks(activeFrom * 1000 + 60_000)).some((k) => k.kid === oldKid));
  assert.not.ok((await ring.publicJwks((activeFrom + 600 + 61) * 1000 + 31_000)).some((k) => k.kid === oldKid));
});

test.run();
