// Bundles the browser SDK and the consultation page from client/ into dist/public/, which the
// edge serves as static files. esbuild only, no network; output is deterministic (no hashes,
// no timestamps) so the same sources give the same bytes.
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLIENT = join(ROOT, "client");
const OUT = join(ROOT, "dist", "public");

/** Script entries: source (relative to client/) → output (relative to dist/public/). */
const ENTRIES: Record<string, string> = {
  "sdk/index.ts": "sdk/huizhen.js",
  "page/join.ts": "assets/join.js",
  "page/demo.ts": "assets/demo.js",
};

/**
 * `@fails-components/webtransport`'s browser module opens a native WebTransport session to
 * `https://example.com:23333/test` when it loads, to learn whether `serverCertificateHashes` is
 * supported (only its `WebTransportPolyfill` uses the answer; the SDK uses the ponyfill). A
 * consultation page must not reach out anywhere but the edge and the node: the probe is cut out
 * at build time, and the build fails if the package changes so that the cut no longer applies.
 */
const PONYFILL_PROBE = "if (globalThis.WebTransport) {\n  webtransportSupported = true";
export const noOutboundProbe: Plugin = {
  name: "no-outbound-probe",
  setup(b) {
    b.onLoad({ filter: /@fails-components[\\/]webtransport[\\/]lib[\\/]webtransport\.browser\.js$/ }, async (args) => {
      const src = (await readFile(args.path, "utf8")).replace(/\r\n/g, "\n");
      if (!src.includes(PONYFILL_PROBE)) throw new Error(`build-client: ${args.path} changed; re-check its load-time network probe`);
      return { contents: src.replace(PONYFILL_PROBE, "if (false) {\n  webtransportSupported = true"), loader: "js" };
    });
  },
};

/** Static files copied as is from client/page/ (HTML, CSS, icons). */
const STATIC_EXT = [".html", ".css", ".svg", ".ico"];

export async function buildClient(): Promise<void> {
  // Written in place, then stale files pruned: a running edge keeps serving the folder.
  await mkdir(join(OUT, "assets"), { recursive: true });
  await mkdir(join(OUT, "sdk"), { recursive: true });

  const entryPoints: { in: string; out: string }[] = [];
  for (const [src, out] of Object.entries(ENTRIES)) {
    const abs = join(CLIENT, src);
    if (!existsSync(abs)) throw new Error(`build-client: missing ${abs}`);
    entryPoints.push({ in: abs, out: out.replace(/\.js$/, "") });
  }
  const result = await build({
    entryPoints,
    write: false,
    outdir: OUT,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome110"],
    minify: true,
    sourcemap: false,
    legalComments: "none",
    logLevel: "warning",
    // The SDK must not pull Node-only code into the page.
    define: { "process.env.NODE_ENV": '"production"' },
    plugins: [noOutboundProbe],
  });
  for (const f of result.outputFiles) {
    if (f.text.includes("example.com")) throw new Error(`build-client: ${f.path} still names example.com (an outbound request)`);
  }

  const written = new Set<string>();
  for (const f of result.outputFiles) {
    await writeIfChanged(f.path, f.contents);
    written.add(f.path);
  }
  const pageDir = join(CLIENT, "page");
  for (const name of (await readdir(pageDir)).sort()) {
    if (!STATIC_EXT.some((e) => name.endsWith(e))) continue;
    const target = name.endsWith(".css") ? join(OUT, "assets", name) : join(OUT, name);
    await writeIfChanged(target, await readFile(join(pageDir, name)));
    written.add(target);
  }
  for (const f of await listFiles(OUT)) if (!written.has(f)) await rm(f, { force: true });
}

async function writeIfChanged(path: string, data: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  try {
    const old = await readFile(path);
    if (Buffer.compare(old, data) === 0) return;
  } catch { /* new file */ }
  await writeFile(path, data);
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else out.push(p);
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const t0 = Date.now();
  buildClient().then(
    () => console.log(`client built into dist/public/ in ${Date.now() - t0} ms`),
    (err) => { console.error(err instanceof Error ? err.message : err); process.exit(1); },
  );
}
