// The node's self-signed certificates, checked with Node's own X.509 parser (an independent
// implementation of the DER the node builds by hand).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { X509Certificate, createHash, createPrivateKey } from "node:crypto";
import { CertRotation, generateCertificate, pemHash } from "../../media/cert.ts";

const DAY = 86_400_000;

test("a generated certificate parses, is self-signed ECDSA P-256, names its hosts and is valid < 14 days", async () => {
  const c = await generateCertificate({ hosts: ["localhost", "127.0.0.1", "media-1.example"] });
  const x = new X509Certificate(c.certPem);
  assert.ok(x.verify(x.publicKey), "signature verifies with its own key");
  assert.is(x.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
  assert.match(x.subjectAltName ?? "", "DNS:localhost");
  assert.match(x.subjectAltName ?? "", "IP Address:127.0.0.1");
  assert.match(x.subjectAltName ?? "", "DNS:media-1.example");
  const days = (Date.parse(x.validTo) - Date.parse(x.validFrom)) / DAY;
  assert.ok(days > 0 && days < 14, `valid ${days} days`);
  assert.ok(Date.parse(x.validFrom) <= Date.now());
  assert.is(c.hash, createHash("sha256").update(x.raw).digest("base64"), "published hash = SHA-256 of the DER");
  assert.is(await pemHash(c.certPem), c.hash);
  assert.is(createPrivateKey(c.keyPem).asymmetricKeyType, "ec");
  assert.is(x.ca, false);
});

test("certificates over 14 days are refused", async () => {
  try {
    await generateCertificate({ validityMs: 15 * DAY });
    assert.unreachable("should refuse");
  } catch (err) {
    assert.instance(err, RangeError);
  }
  assert.throws(() => new CertRotation({ validityMs: 10 * DAY, rotateEveryMs: 6 * DAY }), RangeError);
});

test("rotation publishes current + next; the next takes over and a fresh next is made", async () => {
  const r = new CertRotation({ validityMs: 12 * DAY, rotateEveryMs: 4 * DAY });
  await r.init();
  const [cur, next] = r.hashes;
  assert.is.not(cur, next);
  const promoted = await r.rotate();
  assert.is(promoted.hash, next);
  assert.is(r.hashes[0], next);
  assert.not.ok(r.hashes.includes(cur!));
  assert.is(r.hashes.length, 2);
});

test.run();
