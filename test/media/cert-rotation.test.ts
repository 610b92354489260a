// Certificate renewal on a running node (periods shortened through its env): the next
// certificate's hash is published ahead, takes over on schedule, open sessions keep going.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { TerminalSession } from "../../src/terminal/session.ts";
import { NodeHarness, once, payload, refusal, sleep } from "./support.ts";

const t = suite("media node certificate rotation");
let h: NodeHarness;

t.before(async () => {
  h = await NodeHarness.start({ MEDIA_CERT_VALIDITY_MS: "600000", MEDIA_CERT_ROTATE_MS: "2500" });
});
t.after(async () => {
  await h?.stop();
});

t("the next certificate takes over without dropping sessions; a retired hash no longer connects", async () => {
  const first = [...h.node.certHashes];
  assert.is(first.length, 2);
  const { a, b } = await h.pair();
  let now: string[] = first;
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline && now[0] === first[0]) {
    await sleep(200);
    now = (await (await fetch(`${h.node.apiUrl}/cert-hashes`)).json()).certHashes;
  }
  assert.is(now[0], first[1], "the published next certificate is now in use");
  assert.is.not(now[1], first[1]);
  // The open sessions still forward.
  const got = once<{ payload: Uint8Array }>(b, "frame");
  a.sendFrame(1, payload(1, 1, 5000));
  assert.equal((await got).payload, payload(1, 1, 5000));
  // A terminal holding the hashes from before the switch still connects (it pins the next one too).
  const g = await h.group();
  const c = await TerminalSession.connect({ url: h.node.url, certHashes: first, token: await h.token(g, 0) });
  await c.leave();
  // Pinning only the retired certificate fails at the TLS handshake.
  const r = await refusal(TerminalSession.connect({ url: h.node.url, certHashes: [first[0]!], token: await h.token(g, 1), timeoutMs: 3000 }));
  assert.ok(r === "connectFailed" || r === "timeout", r);
  await a.leave();
  await b.leave();
});

t.run();
