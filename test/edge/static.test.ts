// The page and the SDK served by the edge on both runtimes: /join and /demo are HTML, the SDK
// module is JavaScript that clinics' own web apps may import cross-origin (CORS), and API
// paths never fall through to the static files.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ROOT, generateEdgeSecrets, startEdge, type EdgeProcess, type EdgeRuntime } from "../../scripts/stack.ts";
import { buildClient } from "../../scripts/build-client.ts";

for (const runtime of ["workerd", "deno"] as EdgeRuntime[]) {
  const t = suite(`page and SDK served by the edge on ${runtime}`);
  let edge: EdgeProcess;

  t.before(async () => {
    if (!existsSync(join(ROOT, "dist", "public", "sdk", "huizhen.js"))) await buildClient();
    edge = await startEdge({ runtime, secrets: await generateEdgeSecrets(), nodeCredentials: "{}" });
  });
  t.after(async () => {
    await edge?.stop();
  });

  t("the SDK module is JavaScript, open to other origins", async () => {
    const res = await fetch(`${edge.url}/sdk/huizhen.js`, { headers: { origin: "https://his.example-clinic.org" } });
    assert.is(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /javascript/);
    assert.is(res.headers.get("access-control-allow-origin"), "*");
    assert.match(await res.text(), /export\s*\{/);
  });

  t("the consultation page and the demo page are HTML, not open to other origins", async () => {
    for (const path of ["/join", "/demo"]) {
      const res = await fetch(`${edge.url}${path}`);
      assert.is(res.status, 200, path);
      assert.match(res.headers.get("content-type") ?? "", /text\/html/, path);
      assert.is(res.headers.get("access-control-allow-origin"), null, path);
      await res.body?.cancel();
    }
  });

  t("unknown API paths answer the JSON error shape, unknown page paths 404", async () => {
    const api = await fetch(`${edge.url}/v1/no-such-thing`);
    assert.is(api.status, 404);
    assert.is(((await api.json()) as { error: { code: string } }).error.code.length > 0, true);
    const page = await fetch(`${edge.url}/no-such-page.html`);
    assert.is(page.status, 404);
    await page.body?.cancel();
  });

  t.run();
}
