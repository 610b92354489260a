// Shared by the browser tests and bench/glass.ts: headless Debian Chromium with the fake
// camera/microphone, two terminals of one consultation, and page helpers.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { suite, type Test } from "uvu";
import { chromium, type Browser, type Page } from "playwright-core";
import { ROOT, startStack, type Stack, type StackOptions } from "../../scripts/stack.ts";
import { ClinicClient, type CreatedConsultation } from "../support/clinic-client.ts";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(ROOT, "test-artifacts");

export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-default-apps", "--mute-audio",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--autoplay-policy=no-user-gesture-required",
      // Two call pages share one browser: neither may be throttled as a background page.
      "--disable-renderer-backgrounding", "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
      ...extraArgs,
    ],
  });
}

export async function newConsultation(edgeUrl: string, apiKey: string, reason = "Second opinion on a pigmented lesion"): Promise<CreatedConsultation> {
  const clinic = new ClinicClient(edgeUrl, apiKey);
  const a = await clinic.registerTerminal("Ward 3 — referring doctor", "doctor");
  const b = await clinic.registerTerminal("Dr. Remote — dermatology", "specialist");
  const r = await clinic.createConsultation({
    patient: { id: `MRN-${Date.now()}`, name: "Test Patient Name" },
    requester: { terminalId: a.id },
    consultant: { terminalId: b.id },
    reason,
  });
  if (r.status !== 201) throw new Error(`create consultation: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export function joinUrlOf(c: CreatedConsultation, role: "requester" | "consultant", query = ""): string {
  const t = c.tokens.find((x) => x.role === role);
  if (!t) throw new Error(`no ${role} token`);
  const u = new URL(t.joinUrl);
  return `${u.origin}${u.pathname}${query}${u.hash}`;
}

export async function newPage(browser: Browser, log?: (line: string) => void): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => log?.(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log?.(`console.${m.type()}: ${m.text()}`);
  });
  // The page may only talk to loopback.
  await ctx.route(/^(?!https?:\/\/(127\.0\.0\.1|localhost)[:/]).*/, (route) => route.abort());
  return page;
}

export async function waitState(page: Page, states: string[], timeoutMs = 20_000): Promise<string> {
  try {
    await page.waitForFunction((s) => s.includes((window as any).__huizhen?.state), states, { timeout: timeoutMs, polling: 100 });
  } catch (err) {
    // Say where the page got stuck: its state and its last events (no tokens in them).
    const seen = await page.evaluate(() => {
      const h = (window as any).__huizhen;
      return h ? { state: h.state, events: (h.events ?? []).slice(-12).map((e: any) => `${e.type}${e.detail === undefined ? "" : ` ${JSON.stringify(e.detail).slice(0, 160)}`}`) } : undefined;
    }).catch(() => undefined);
    throw new Error(`page not in ${states.join("/")} within ${timeoutMs} ms: ${JSON.stringify(seen)} (${(err as Error).message.split("\n")[0]})`);
  }
  return page.evaluate(() => (window as any).__huizhen.state as string);
}

export async function stats(page: Page): Promise<any> {
  return page.evaluate(() => (window as any).__huizhen.stats());
}

/**
 * Sends the page's QUIC session to `relayPort` (an impairment relay) instead of the node's own
 * port: GET /v1/join is rewritten on its way to the page. `candidates` rewrites the pre-join
 * probe targets too.
 */
export async function routeNodeThrough(page: Page, nodePort: number, relayPort: number, opts: { candidates?: boolean } = {}): Promise<void> {
  await page.route("**/v1/join", async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    body.node.url = body.node.url.replace(`:${nodePort}/`, `:${relayPort}/`);
    if (opts.candidates) for (const c of body.candidates ?? []) c.url = c.url.replace(`:${nodePort}/`, `:${relayPort}/`);
    await route.fulfill({ response: res, json: body });
  });
}

/** Open a join URL and click through to the call (or the waiting room). */
export async function openAndJoin(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await waitState(page, ["check", "error"]);
  await page.waitForSelector("#join-btn:not([disabled])", { timeout: 20_000 });
  await page.click("#join-btn");
}

/** Luma variance of what an element shows (blank ≈ 0). */
export function lumaVariance(page: Page, selector: string): Promise<number> {
  return imageVariance(page, { selector });
}

/** Luma variance of a PNG image (decoded by the browser itself, so no image library is needed). */
export function pngVariance(page: Page, png: Buffer): Promise<number> {
  return imageVariance(page, { png: png.toString("base64") });
}

function imageVariance(page: Page, from: { selector?: string; png?: string }): Promise<number> {
  return page.evaluate(async ({ selector, png }) => {
    const source: CanvasImageSource = png
      ? await createImageBitmap(new Blob([Uint8Array.from(atob(png), (ch) => ch.charCodeAt(0))], { type: "image/png" }))
      : (document.querySelector(selector!) as HTMLCanvasElement);
    const c = new OffscreenCanvas(160, 90);
    const g = c.getContext("2d")!;
    g.drawImage(source, 0, 0, 160, 90);
    const d = g.getImageData(0, 0, 160, 90).data;
    let s = 0, s2 = 0;
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const y = 0.299 * d[i]! + 0.587 * d[i + 1]! + 0.114 * d[i + 2]!;
      s += y;
      s2 += y * y;
    }
    return s2 / n - (s / n) ** 2;
  }, from);
}

export async function ensureArtifacts(): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Stack output is printed only when HZ_LOG=1 (it is noisy); failures still show the tail. */
export function stackLog(source: string, line: string): void {
  if (process.env.HZ_LOG) console.log(`${source.padEnd(7)} │ ${line}`);
}

/**
 * A browser test suite over its own stack and one Chromium: `env.stack` and `env.browser` are
 * set before the first test and torn down after the last.
 */
export function browserSuite(name: string, opts: { stack?: StackOptions; chromiumArgs?: string[] } = {}): { t: Test; env: { stack: Stack; browser: Browser } } {
  const t = suite(name);
  const env = {} as { stack: Stack; browser: Browser };
  t.before(async () => {
    env.stack = await startStack({ log: stackLog, ...opts.stack });
    env.browser = await launchChromium(opts.chromiumArgs);
  });
  t.after(async () => {
    await env.browser?.close().catch(() => undefined);
    await env.stack?.stop();
  });
  return { t, env };
}
