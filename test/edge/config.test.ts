// Edge configuration: a missing or malformed secret stops the edge with a message naming the
// setting, never its value.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadConfig } from "../../edge/config.ts";
import { generateEdgeSecrets, newNodeCredential, nodeCredentialsJson } from "../../scripts/stack.ts";

async function env(over: Record<string, string | undefined> = {}) {
  const s = await generateEdgeSecrets();
  return { ...s, NODE_CREDENTIALS: await nodeCredentialsJson([newNodeCredential("node-1")]), ...over } as Record<string, unknown>;
}

async function failure(e: Record<string, unknown>): Promise<string> {
  try {
    await loadConfig(e, Date.now());
  } catch (err) {
    return (err as Error).message;
  }
  return "loaded";
}

test("a complete environment loads with the documented defaults", async () => {
  const c = await loadConfig(await env(), Date.now());
  assert.is(c.issuer, "huizhen-edge");
  assert.is(c.tokenTtlSec, 600);
  assert.is(c.nodeTimeoutMs, 2000);
  assert.equal(c.rateLimits, { windowSec: 60, perClinic: 3000, perIp: 6000 });
  assert.ok(c.nodeCredentials.has("node-1"));
  assert.is(c.clientIpHeader, undefined);
  assert.is((await loadConfig(await env(), Date.now(), { clientIpHeader: "cf-connecting-ip" })).clientIpHeader, "cf-connecting-ip");
});

test("each missing or malformed setting is named, its value never shown", async () => {
  for (const name of ["SIGNING_KEYS", "PATIENT_HASH_KEY", "PHI_KEYS", "ADMIN_KEY"]) {
    assert.match(await failure(await env({ [name]: undefined })), name);
  }
  const secretish = "not-json-but-secret-value-123";
  for (const name of ["SIGNING_KEYS", "PHI_KEYS", "NODE_CREDENTIALS"]) {
    const msg = await failure(await env({ [name]: secretish }));
    assert.match(msg, name);
    assert.not.ok(msg.includes(secretish), `${name}'s value leaked into the message`);
  }
  assert.match(await failure(await env({ NODE_CREDENTIALS: JSON.stringify({ "node-1": "plain-secret" }) })), /NODE_CREDENTIALS\.node-1/);
  assert.match(await failure(await env({ ADMIN_KEY: "short" })), /ADMIN_KEY/);
  assert.match(await failure(await env({ TOKEN_TTL_SECONDS: "ten" })), /TOKEN_TTL_SECONDS/);
  assert.match(await failure(await env({ RATE_LIMIT_IP: "0" })), /RATE_LIMIT_IP/);
});

test.run();
