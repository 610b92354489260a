// The media node's TCP fallback settings (media/node.ts configFromEnv): on by default on the
// QUIC port's number, its public URL derived from the session URL, a CA-signed pair taken from
// its own variables (else TLS_CERT_FILE's), and clear errors for what cannot work.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, configFromEnv } from "../../media/node.ts";

const base = { NODE_ID: "node-1", NODE_SECRET: "hzn_x", EDGE_URL: "http://127.0.0.1:8787" };

test("on by default, on the same port number as QUIC", () => {
  const c = configFromEnv({ ...base, MEDIA_PORT: "4433", MEDIA_HOST: "0.0.0.0", MEDIA_PUBLIC_URL: "https://media.example:4433/v1/session" });
  assert.equal(c.fallback, { host: "0.0.0.0", port: 4433, publicUrl: undefined, tlsCertFile: undefined, tlsKeyFile: undefined });
});

test("its own port, host, URL and certificate; TLS_CERT_FILE's pair otherwise", () => {
  const c = configFromEnv({
    ...base, MEDIA_FALLBACK_PORT: "443", MEDIA_FALLBACK_HOST: "10.0.0.5", MEDIA_FALLBACK_PUBLIC_URL: "https://media.example/v1/session",
    MEDIA_FALLBACK_TLS_CERT_FILE: "/etc/hz/fullchain.pem", MEDIA_FALLBACK_TLS_KEY_FILE: "/etc/hz/key.pem",
  });
  assert.equal(c.fallback, { host: "10.0.0.5", port: 443, publicUrl: "https://media.example/v1/session", tlsCertFile: "/etc/hz/fullchain.pem", tlsKeyFile: "/etc/hz/key.pem" });
  const d = configFromEnv({ ...base, TLS_CERT_FILE: "/c.pem", TLS_KEY_FILE: "/k.pem" });
  assert.is(d.fallback!.tlsCertFile, "/c.pem");
});

test("off, and the mistakes refused", () => {
  assert.is(configFromEnv({ ...base, MEDIA_FALLBACK: "off" }).fallback, undefined);
  assert.throws(() => configFromEnv({ ...base, MEDIA_FALLBACK: "maybe" }), (e: Error) => e instanceof ConfigError && /MEDIA_FALLBACK must be on or off/.test(e.message));
  assert.throws(() => configFromEnv({ ...base, MEDIA_FALLBACK_TLS_CERT_FILE: "/c.pem" }), (e: Error) => e instanceof ConfigError && /go together/.test(e.message));
  assert.throws(() => configFromEnv({ ...base, MEDIA_FALLBACK_PUBLIC_URL: "http://media.example/v1/session" }), (e: Error) => e instanceof ConfigError && /https/.test(e.message));
  assert.throws(() => configFromEnv({ ...base, MEDIA_FALLBACK_PORT: "-1" }), (e: Error) => e instanceof ConfigError);
});


test("errors thrown inside the fallback's package or Deno's node:http2 under it are the node's to survive; others are not", async () => {
  const { isFallbackPackageError } = await import("../../media/transport/fallback.ts");
  const thrown = (stack: string) => Object.assign(new TypeError("Cannot read properties of undefined (reading 'Symbol(type)')"), { stack });
  // The stack seen when a fallback client left mid-stream (test/media/fallback.test.ts).
  assert.ok(isFallbackPackageError(thrown("TypeError: …\n    at doStreamClose (ext:deno_node/http2.ts:1:15510)\n    at Http2Stream.onStreamClose (ext:deno_node/http2.ts:1:15057)")));
  assert.ok(isFallbackPackageError(thrown("Error\n    at Http2WebTransportSession.close (file:///x/node_modules/@fails-components/webtransport/lib/session.js:10:3)")));
  assert.not.ok(isFallbackPackageError(thrown("TypeError\n    at Relay.admit (file:///x/media/relay/relay.ts:270:5)")));
  assert.not.ok(isFallbackPackageError("a string"));
});

test.run();
