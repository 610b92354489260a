// Signing-key rotation on a running edge and node, with the operator command itself
// (`npm run keys:rotate -- --stdin`, scripts/rotate-keys.ts): the new kid is in the JWKS before
// any token uses it, it signs once its time comes, and tokens of the old key — issued before
// and during the overlap — are still admitted by the node that was running all along.
// Real edge (Deno/SQLite), real node; runs under Deno.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { decodeProtectedHeader } from "jose";
import { ROOT } from "../../scripts/stack.ts";
import { TerminalSession } from "../../src/terminal/session.ts";
import { ClinicClient, testPatient, type CreatedConsultation } from "../support/clinic-client.ts";
import { once, sleep } from "../media/support.ts";
import { TrustStack } from "./stack.ts";

/** Longer than the node's JWKS refetch cooldown (5 s, media/auth.ts), as in production (300 s ≥ cache). */
const AHEAD_S = 6;
const t = suite("signing-key rotation on a running edge and node");
let stack: TrustStack;
let clinic: ClinicClient;
let terminals: { id: string }[];
const open: TerminalSession[] = [];
const join = async (c: CreatedConsultation, i: number) => {
  const s = await TerminalSession.connect({ url: c.group.node.url, certHashes: c.group.node.certHashes, token: c.tokens[i]!.token, sdk: "trust-test" });
  open.push(s);
  return s;
};
const create = async (tag: string) => {
  const r = await clinic.createConsultation({ patient: testPatient(tag), requester: { terminalId: terminals[0]!.id }, consultant: { terminalId: terminals[1]!.id } });
  assert.is(r.status, 201, JSON.stringify(r.body));
  return r.body;
};
const kidOf = (c: CreatedConsultation) => decodeProtectedHeader(c.tokens[0]!.token).kid;
const jwksKids = async () => ((await (await fetch(`${stack.edgeUrl}/.well-known/jwks.json`)).json()) as { keys: { kid: string; d?: string }[] }).keys;

t.before(async () => {
  stack = await TrustStack.start();
  clinic = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  terminals = [await clinic.registerTerminal("Exam room 1", "doctor"), await clinic.registerTerminal("Oncology, remote", "specialist")];
});

t.after(async () => {
  for (const s of open) await s.leave().catch(() => {});
  await stack?.stop();
});

t("rotate with overlap: published first, signs later, old tokens still admitted", async () => {
  const before = await create("R1");
  const oldKid = kidOf(before);
  const a1 = await join(before, 0); // the node has fetched the JWKS with the old key only
  assert.equal((await jwksKids()).map((k) => k.kid), [oldKid]);

  // The operator command, as a deployment runs it (secret in on stdin, new secret out).
  const r = spawnSync("npm", ["run", "--silent", "keys:rotate", "--", "--stdin", "--ahead", String(AHEAD_S), "--ttl", "600"], {
    cwd: ROOT, input: stack.secrets.SIGNING_KEYS, encoding: "utf8",
  });
  assert.is(r.status, 0, r.stderr);
  const rotated = r.stdout.trim();
  const newKid = (JSON.parse(rotated).keys as { kid: string }[])[0]!.kid;
  assert.is.not(newKid, oldKid);
  assert.match(r.stderr, newKid);
  assert.not.ok(r.stderr.includes('"d"'), "the command prints no private key material on its log");

  await stack.stopEdge(false);
  await stack.startEdge({ ...stack.secrets, SIGNING_KEYS: rotated });
  const restartedAt = Date.now();

  // Published before use: both kids listed, public parts only, and new tokens still signed by the old key.
  const keys = await jwksKids();
  assert.equal(keys.map((k) => k.kid).sort(), [newKid, oldKid].sort());
  assert.ok(keys.every((k) => k.d === undefined));
  const during = await create("R2");
  assert.is(kidOf(during), oldKid, "the new key does not sign before its time");

  // Once its time comes, the new key signs.
  await sleep(Math.max(0, restartedAt + AHEAD_S * 1000 + 500 - Date.now()));
  const after = await create("R3");
  assert.is(kidOf(after), newKid, "the new key signs after --ahead");
  assert.equal((await jwksKids()).map((k) => k.kid).sort(), [newKid, oldKid].sort(), "the old key stays published for the overlap");

  // The node (never restarted) admits the new key's tokens, fetching the JWKS on the unknown kid…
  const a3 = await join(after, 0);
  const c3 = once(a3, "connected", 10_000);
  await join(after, 1);
  await c3;
  // …and still the old key's tokens: one issued during the overlap, one from before the rotation.
  const a2 = await join(during, 0);
  const c2 = once(a2, "connected", 10_000);
  await join(during, 1);
  await c2;
  const c1 = once(a1, "connected", 10_000);
  await join(before, 1);
  await c1;
});

t.run();
