// Types for `@fails-components/webtransport` 1.6.8 as this project uses it: its package exports
// only "node" and "browser" conditions, which tsc's Bundler resolution does not pick. The node's
// TCP fallback (media/transport/fallback.ts) narrows the server side further itself.
declare module "@fails-components/webtransport" {
  /** WebTransport over HTTP/2 and WebSocket on TCP (pure JS; the HTTP/3 part needs a native add-on). */
  export const Http2Server: new (args: { port: number; host: string; secret: string; cert: string; privKey: string }) => unknown;
  /** Browser: WebTransport over a WebSocket only. */
  export const WebTransportPonyfill: typeof globalThis.WebTransport;
  /** Node/Deno client (HTTP/2 with `forceReliable: true` when the HTTP/3 add-on is missing). */
  export const WebTransport: typeof globalThis.WebTransport;
}
