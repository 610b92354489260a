// The TCP fallback follows the node's self-made certificate rotation (periods shortened through
// the env, as in cert-rotation.test.ts): after the switch a new fallback connection gets the new
// certificate, while a fallback session opened before it keeps forwarding both ways. The
// package's `Http2Server` swaps its TLS context in place (`setSecureContext` under Deno's
// node:http2), so the listener is not restarted and open connections are not touched.
//
// The same for a pair from files (the second suite): re-read in place, held back until whole.
//
// Which certificate the listener presents is read off a plain TLS handshake (node:tls), apart
// from the package's client, whose hash check the join assertions then rely on.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import tls from "node:tls";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Track } from "../../src/protocol/media.ts";
import type { FrameEvent, TerminalSession } from "../../src/terminal/session.ts";
import { freePort, newNodeCredential, startMediaNode } from "../../scripts/stack.ts";
import { generateCertificate, type Certificate } from "../../media/cert.ts";
import { FakeEdge, NodeHarness, once, payload, refusal, sleep } from "./support.ts";

// The package's client throws from an HTTP/2 close handler when its session ends under Deno
// ("The stream controller cannot close or enqueue"): a client-side bug, kept out of the results.
globalThis.addEventListener("error", (e) => {
  if (String((e as ErrorEvent).error?.stack ?? "").includes("@fails-components/webtransport")) e.preventDefault();
});

const t = suite("media node TCP fallback: certificate rotation");
let h: NodeHarness;
let tcpPort: number;
let PackageWT: new (url: string, init: unknown) => WebTransport;

t.before(async () => {
  tcpPort = await freePort();
  h = await NodeHarness.start({ MEDIA_FALLBACK_PORT: String(tcpPort), MEDIA_CERT_VALIDITY_MS: "600000", MEDIA_CERT_ROTATE_MS: "3000" });
  ({ WebTransport: PackageWT } = (await import("@fails-components/webtransport")) as any);
});
t.after(async () => {
  await h?.stop();
});

const fallbackUrl = () => `https://127.0.0.1:${tcpPort}/v1/session`;
const bytes = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

/** The package's client over HTTP/2, pinned to exactly these hashes. */
function pinned(hashes: string[]): typeof WebTransport {
  return function (url: string) {
    return new PackageWT(url, { forceReliable: true, serverCertificateHashes: hashes.map((x) => ({ algorithm: "sha-256", value: bytes(x) })) });
  } as unknown as typeof WebTransport;
}

/** SHA-256 (base64, as the node publishes it) of the certificate a fresh TLS handshake on the fallback port gets. */
function presentedHash(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: tcpPort, rejectUnauthorized: false, ALPNProtocols: ["h2"] }, () => {
      const fp = s.getPeerCertificate()?.fingerprint256 ?? "";
      s.destroy();
      resolve(btoa(String.fromCharCode(...fp.split(":").map((x) => parseInt(x, 16)))));
    });
    s.on("error", reject);
  });
}

async function currentHashes(): Promise<string[]> {
  return (await (await fetch(`${h.node.apiUrl}/cert-hashes`)).json()).certHashes;
}

/** Sends `n` frames each way and waits until all arrived intact. */
async function exchange(a: TerminalSession, b: TerminalSession, n: number, base: number) {
  const atA: FrameEvent[] = [];
  const atB: FrameEvent[] = [];
  const offA = a.on("frame", (f) => atA.push(f));
  const offB = b.on("frame", (f) => atB.push(f));
  for (let i = 0; i < n; i++) {
    a.sendFrame(Track.video, payload(1, base + i, 3000), { timestamp: (base + i) * 20_000 });
    b.sendFrame(Track.video, payload(2, base + i, 3000), { timestamp: (base + i) * 20_000 });
    await sleep(10);
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && (atA.length < n || atB.length < n)) await sleep(50);
  offA();
  offB();
  assert.is(atB.length, n, "QUIC → fallback frames");
  assert.is(atA.length, n, "fallback → QUIC frames");
  for (let i = 0; i < n; i++) {
    assert.equal(atB[i]!.payload, payload(1, base + i, 3000));
    assert.equal(atA[i]!.payload, payload(2, base + i, 3000));
  }
}

t("after a rotation new fallback connections get the new certificate; an open fallback session keeps forwarding", async () => {
  const first = await currentHashes();
  assert.is(first.length, 2, "in use and next");
  assert.is(await presentedHash(), first[0], "the fallback presents the certificate in use");

  // A QUIC terminal and a fallback terminal, joined before the switch.
  const g = await h.group();
  const a = await h.connect(await h.token(g, 0));
  const connected = once(a, "connected", 5000);
  const b = await h.connect(await h.token(g, 1), { url: fallbackUrl(), WebTransport: pinned(first) });
  let c: TerminalSession | undefined;
  try {
    await connected;
    await exchange(a, b, 10, 0);

    let now = first;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && now[0] === first[0]) {
      await sleep(200);
      now = await currentHashes();
    }
    assert.is(now[0], first[1], "the published next certificate is now in use");
    // The QUIC listener and the fallback switch in the same step; allow a moment between them.
    let presented = await presentedHash();
    for (let i = 0; i < 10 && presented !== now[0]; i++) {
      await sleep(100);
      presented = await presentedHash();
    }
    assert.is(presented, now[0], "a new TLS connection to the fallback gets the new certificate");

    // The session opened under the old certificate still forwards both ways (same HTTP/2 connection).
    assert.ok(b.isConnected, "the fallback terminal is still in its group");
    await exchange(a, b, 10, 100);

    // A new fallback session pinned to the new certificate alone joins; one pinned to the retired one fails.
    const g2 = await h.group();
    c = await h.connect(await h.token(g2, 0), { url: fallbackUrl(), WebTransport: pinned([now[0]!]) });
    assert.ok(c.maxDatagramSize > 0, "joined over the fallback with the new certificate");
    const r = await refusal(h.connect(await h.token(g2, 1), { url: fallbackUrl(), WebTransport: pinned([first[0]!]), timeoutMs: 3000 }));
    assert.ok(r === "connectFailed" || r === "timeout", `pinning the retired certificate: ${r}`);
  } finally {
    await c?.leave().catch(() => {});
    await a.leave().catch(() => {});
    await b.leave().catch(() => {});
  }
});

t.run();

// A CA-signed pair from files (MEDIA_FALLBACK_TLS_CERT_FILE/_KEY_FILE) is renewed in place by
// the operator's tooling: the node re-reads the files (here every 300 ms) and serves a new pair
// only once it is complete and matching. Self-made certificates stand in for CA-signed ones:
// what is tested is which pair the listener serves, not who signed it.
const files = suite("media node TCP fallback: certificate files renewed in place");
let fh: NodeHarness;
let dir: string;
let certA: Certificate, certB: Certificate;

files.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "hz-fallback-cert-"));
  [certA, certB] = await Promise.all([generateCertificate({ hosts: ["127.0.0.1", "localhost"] }), generateCertificate({ hosts: ["127.0.0.1", "localhost"] })]);
  await writeFile(`${dir}/cert.pem`, certA.certPem);
  await writeFile(`${dir}/key.pem`, certA.keyPem);
  tcpPort = await freePort();
  fh = await NodeHarness.start({
    MEDIA_FALLBACK_PORT: String(tcpPort), MEDIA_FALLBACK_TLS_CERT_FILE: `${dir}/cert.pem`, MEDIA_FALLBACK_TLS_KEY_FILE: `${dir}/key.pem`,
    MEDIA_FALLBACK_TLS_RELOAD_MS: "300",
  });
  ({ WebTransport: PackageWT } = (await import("@fails-components/webtransport")) as any);
});
files.after(async () => {
  await fh?.stop();
  await rm(dir, { recursive: true, force: true }).catch(() => {});
});

async function presentedWithin(hash: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let got = await presentedHash();
  while (got !== hash && Date.now() < deadline) {
    await sleep(100);
    got = await presentedHash();
  }
  return got;
}

files("a half-written renewal is held back; the complete pair is served to new connections; an open session keeps going", async () => {
  assert.is(await presentedHash(), certA.hash, "serves the pair from the files");
  const g = await fh.group();
  const a = await fh.connect(await fh.token(g, 0));
  const connected = once(a, "connected", 5000);
  const b = await fh.connect(await fh.token(g, 1), { url: fallbackUrl(), WebTransport: pinned([certA.hash]) });
  let c: TerminalSession | undefined;
  try {
    await connected;
    await exchange(a, b, 10, 0);

    // The new certificate lands before its key: that pair does not match and is not served.
    await writeFile(`${dir}/cert.pem`, certB.certPem);
    await sleep(1000);
    assert.is(await presentedHash(), certA.hash, "still the previous pair while the key is the old one");
    assert.ok(fh.node.process.output.some((l) => /fallback certificate not reloaded .*does not belong/.test(l)), "the node says why");
    // Then the key: the complete pair takes over.
    await writeFile(`${dir}/key.pem`, certB.keyPem);
    assert.is(await presentedWithin(certB.hash, 3000), certB.hash, "new TLS connections get the renewed certificate");
    assert.ok(fh.node.process.output.some((l) => /fallback certificate reloaded/.test(l)));

    assert.ok(b.isConnected, "the session opened under the old certificate is still in its group");
    await exchange(a, b, 10, 100);
    const g2 = await fh.group();
    c = await fh.connect(await fh.token(g2, 0), { url: fallbackUrl(), WebTransport: pinned([certB.hash]) });
    assert.ok(c.maxDatagramSize > 0, "joined over the fallback with the renewed certificate");
    const r = await refusal(fh.connect(await fh.token(g2, 1), { url: fallbackUrl(), WebTransport: pinned([certA.hash]), timeoutMs: 3000 }));
    assert.ok(r === "connectFailed" || r === "timeout", `pinning the replaced certificate: ${r}`);

    // Files that cannot be read keep the served pair too.
    await rm(`${dir}/key.pem`);
    await sleep(800);
    assert.is(await presentedHash(), certB.hash);
    assert.ok(fh.node.process.output.some((l) => /fallback certificate not reloaded .*cannot read/.test(l)));
  } finally {
    await c?.leave().catch(() => {});
    await a.leave().catch(() => {});
    await b.leave().catch(() => {});
  }
});

files("a node whose fallback pair does not match refuses to start, saying which files", async () => {
  const bad = `${dir}/mismatch`;
  await mkdir(bad, { recursive: true });
  await writeFile(`${bad}/cert.pem`, certA.certPem);
  await writeFile(`${bad}/key.pem`, certB.keyPem);
  const cred = newNodeCredential("node-badpair");
  const edge = await FakeEdge.start(cred.secret);
  const err = await startMediaNode({
    credential: cred, edgeUrl: edge.url,
    env: { MEDIA_FALLBACK_PORT: String(await freePort()), MEDIA_FALLBACK_TLS_CERT_FILE: `${bad}/cert.pem`, MEDIA_FALLBACK_TLS_KEY_FILE: `${bad}/key.pem` },
  }).then(async (x) => { await x.stop(); return undefined; }, (e: Error) => e).finally(() => edge.stop());
  assert.ok(err, "the node did not start");
  assert.match(err!.message, /exited \(2\)/);
  assert.match(err!.message, /the TCP fallback's certificate .*mismatch\/cert\.pem.*the key does not belong to the certificate/);
});

files.run();
