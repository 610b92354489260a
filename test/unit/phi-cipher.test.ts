import { test } from "uvu";
import * as assert from "uvu/assert";
import { PhiCipher, PhiCipherError } from "../../src/phi-cipher.ts";

const isCipherError = (e: unknown) => e instanceof PhiCipherError;
async function rejects(p: Promise<unknown>) {
  try { await p; } catch (e) { assert.ok(isCipherError(e), String(e)); return; }
  assert.unreachable("resolved");
}

test("round trip; ciphertext hides the plaintext and differs each time", async () => {
  const c = await PhiCipher.fromSecret(PhiCipher.generateSecret("a"));
  const name = "Marguerite Oyelaran-Fitzgibbon";
  const x = await c.encrypt(name, "cln_1/cns_1");
  const y = await c.encrypt(name, "cln_1/cns_1");
  assert.is.not(x, y);
  assert.not.ok(x.includes("Marguerite"));
  assert.ok(x.startsWith("p1.a."));
  assert.is(await c.decrypt(x, "cln_1/cns_1"), name);
});

test("a ciphertext moved to another clinic or record does not decrypt", async () => {
  const c = await PhiCipher.fromSecret(PhiCipher.generateSecret("a"));
  const x = await c.encrypt("1961-04-17", "cln_1/cns_1");
  await rejects(c.decrypt(x, "cln_2/cns_1"));
  await rejects(c.decrypt(x, "cln_1/cns_2"));
  const tampered = x.slice(0, -2) + (x.endsWith("A") ? "BB" : "AA");
  await rejects(c.decrypt(tampered, "cln_1/cns_1"));
  await rejects(c.decrypt("garbage", "cln_1/cns_1"));
});

test("rotation: the new key encrypts, the old one still decrypts", async () => {
  const old = JSON.parse(PhiCipher.generateSecret("old")).keys[0];
  const fresh = JSON.parse(PhiCipher.generateSecret("new")).keys[0];
  const before = await PhiCipher.fromSecret(JSON.stringify({ keys: [old] }));
  const blob = await before.encrypt("summary", "ctx");
  const after = await PhiCipher.fromSecret(JSON.stringify({ keys: [fresh, old] }));
  assert.is(await after.decrypt(blob, "ctx"), "summary");
  assert.is(PhiCipher.keyIdOf(await after.encrypt("x", "ctx")), "new");
  const dropped = await PhiCipher.fromSecret(JSON.stringify({ keys: [fresh] }));
  await rejects(dropped.decrypt(blob, "ctx"));
});

test("bad key sets are refused", async () => {
  for (const bad of [undefined, "", "{", '{"keys":[]}', '{"keys":[{"kid":"a","k":"AAAA"}]}', '{"keys":[{"k":"x"}]}']) {
    await rejects(PhiCipher.fromSecret(bad));
  }
});

test.run();
