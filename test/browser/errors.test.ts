// The page's error paths in headless Chromium against the real edge: a garbage token, an
// expired token, an ended consultation, a token already in use, a browser without
// WebTransport, an unreachable media node, a refused camera; each gives a clear message.
import * as assert from "uvu/assert";
import { freePort } from "../../scripts/stack.ts";
import { ClinicClient } from "../support/clinic-client.ts";
import { chromium } from "playwright-core";
import { decodeJwt } from "jose";
import { loadKeySet } from "../../src/token/keys.ts";
import { signConsultationToken } from "../../src/token/sign.ts";
import type { ConsultationClaims } from "../../src/token/claims.ts";
import { browserSuite, CHROMIUM, joinUrlOf, newConsultation, newPage, openAndJoin, waitState } from "./support.ts";

const { t, env } = browserSuite("browser page: messages for every failure, and the demo page");

t("a garbage token says the invitation is not valid", async () => {
  const page = await newPage(env.browser);
  await page.goto(`${env.stack.edgeUrl}/join#token=not-a-real-token`);
  assert.is(await waitState(page, ["error", "check"]), "error");
  assert.is(await page.textContent("#message-title"), "This invitation link is not valid");
  assert.match((await page.textContent("#message-text")) ?? "", /new link/);
  assert.is(await page.evaluate(() => location.hash), "", "the token is taken out of the address bar");
  await page.context().close();
});

t("no token at all", async () => {
  const page = await newPage(env.browser);
  await page.goto(`${env.stack.edgeUrl}/join`);
  assert.is(await waitState(page, ["error", "check"]), "error");
  assert.match((await page.textContent("#message-text")) ?? "", /invitation link/);
  await page.context().close();
});

t("an expired token says so", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  // The edge's own key signs a token of this consultation that expired 5 minutes ago (the
  // verifier allows 30 s of clock skew, so a short TTL would make the test slow).
  const keys = await loadKeySet(env.stack.secrets.SIGNING_KEYS);
  const real = c.tokens.find((x) => x.role === "requester")!;
  const now = Math.floor(Date.now() / 1000);
  const expired = await signConsultationToken({ ...(decodeJwt(real.token) as unknown as ConsultationClaims), iat: now - 900, nbf: now - 900, exp: now - 300 }, keys.active);
  const page = await newPage(env.browser);
  const u = new URL(real.joinUrl);
  await page.goto(`${u.origin}${u.pathname}#token=${expired}`);
  assert.is(await waitState(page, ["error", "check"]), "error");
  assert.is(await page.evaluate(() => (window as any).__huizhen.reason), "tokenExpired");
  assert.is(await page.textContent("#message-title"), "This invitation has expired");
  await page.context().close();
});

t("an ended consultation says so", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const r = await new ClinicClient(env.stack.edgeUrl, env.stack.clinicApiKey).endConsultation(c.id);
  assert.ok(r.status < 300, `end: ${r.status}`);
  const page = await newPage(env.browser);
  await page.goto(joinUrlOf(c, "consultant"));
  assert.is(await waitState(page, ["error", "check"]), "error");
  assert.is(await page.evaluate(() => (window as any).__huizhen.reason), "consultationEnded");
  assert.match((await page.textContent("#message-text")) ?? "", /ended/);
  await page.context().close();
});

t("a token already in use by a live session says so", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const first = await newPage(env.browser);
  await openAndJoin(first, joinUrlOf(c, "requester"));
  assert.is(await waitState(first, ["waiting", "call", "error"]), "waiting");
  const second = await newPage(env.browser);
  await openAndJoin(second, joinUrlOf(c, "requester"));
  assert.is(await waitState(second, ["error", "waiting", "call"]), "error");
  assert.is(await second.evaluate(() => (window as any).__huizhen.reason), "tokenInUse");
  assert.is(await second.textContent("#message-title"), "This invitation is already in use");
  await second.context().close();
  await first.context().close();
});

t("a browser without WebTransport is told what is missing", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const page = await newPage(env.browser);
  // Simulates an older browser: the API is removed before the page's script runs.
  await page.addInitScript("delete window.WebTransport; delete window.VideoEncoder;");
  await page.goto(joinUrlOf(c, "requester"));
  assert.is(await waitState(page, ["error", "check"]), "error");
  assert.is(await page.evaluate(() => (window as any).__huizhen.reason), "unsupportedBrowser");
  assert.match((await page.textContent("#message-text")) ?? "", /Missing here: WebTransport, VideoEncoder/);
  await page.context().close();
});

t("an unreachable media node is reported at the check and at join", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const page = await newPage(env.browser);
  const closedPort = await freePort();
  // Test-only: the page's GET /v1/join answer names a port where nothing listens (UDP blocked).
  await page.route("**/v1/join", async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    body.node.url = body.node.url.replace(`:${env.stack.node.port}/`, `:${closedPort}/`);
    await route.fulfill({ response: res, json: body });
  });
  await page.goto(joinUrlOf(c, "requester"));
  await page.waitForSelector("#join-btn:not([disabled])", { timeout: 20_000 });
  assert.is(await page.getAttribute("#chk-network", "data-state"), "fail");
  assert.is(await page.textContent("#join-btn"), "Try to join anyway");
  await page.click("#join-btn");
  await page.waitForFunction(() => (window as any).__huizhen.state === "error", undefined, { timeout: 20_000 });
  assert.is(await page.evaluate(() => (window as any).__huizhen.reason), "nodeUnreachable");
  assert.is(await page.textContent("#message-title"), "The media server cannot be reached");
  await page.context().close();
});

t("the demo page offers both join links of a consultation", async () => {
  const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
  const tok = (r: string) => c.tokens.find((x) => x.role === r)!.token;
  const page = await newPage(env.browser);
  await page.goto(`${env.stack.edgeUrl}/demo#requester=${tok("requester")}&consultant=${tok("consultant")}`);
  assert.is(await page.getAttribute("#link-requester", "href"), `${env.stack.edgeUrl}/join#token=${tok("requester")}`);
  assert.is(await page.getAttribute("#link-consultant", "href"), `${env.stack.edgeUrl}/join#token=${tok("consultant")}`);
  await page.click("#show-panes");
  // Both panes load the consultation page and reach the pre-join check.
  for (const id of ["pane-requester", "pane-consultant"]) {
    const frame = page.frameLocator(`#${id}`);
    await frame.locator("#join-btn:not([disabled])").waitFor({ timeout: 20_000 });
  }
  await page.context().close();
});

t("a refused camera says how to allow it", async () => {
  // A browser without the auto-accepting fake permission prompt: headless denies the request.
  const strict = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--deny-permission-prompts", "--disable-background-networking", "--no-first-run"],
  });
  try {
    const c = await newConsultation(env.stack.edgeUrl, env.stack.clinicApiKey);
    const page = await (await strict.newContext()).newPage();
    await page.goto(joinUrlOf(c, "requester"));
    await page.waitForFunction(() => (window as any).__huizhen.state === "error", undefined, { timeout: 15_000 });
    assert.is(await page.evaluate(() => (window as any).__huizhen.reason), "cameraDenied");
    assert.is(await page.textContent("#message-title"), "Camera or microphone blocked");
    assert.ok(await page.isVisible("#message-retry"), "a way to try again");
  } finally {
    await strict.close();
  }
});

t.run();
