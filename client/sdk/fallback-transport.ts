// WebTransport over a WebSocket, the ladder's TCP rung: `@fails-components/webtransport`'s
// browser ponyfill, bundled into the SDK (scripts/build-client.ts strips the package's
// load-time capability probe, which would open a session to example.com).
import { WebTransportPonyfill } from "@fails-components/webtransport";

export const WebSocketTransport: typeof WebTransport = WebTransportPonyfill;
