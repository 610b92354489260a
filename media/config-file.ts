// A media node's config file (JSON), the operator's alternative to a dozen environment
// variables: `deno run … media/main.ts node.json` or MEDIA_CONFIG=node.json. Each field maps
// onto the environment name of docs/internal-apis.md; a variable set in the environment wins.
// `npm run node:add` writes such a file with the node's fresh credential in it.

/** File field → environment variable. */
export const CONFIG_FIELDS = {
  id: "NODE_ID",
  region: "NODE_REGION",
  secret: "NODE_SECRET",
  edgeUrl: "EDGE_URL",
  issuer: "EDGE_ISSUER",
  mediaHost: "MEDIA_HOST",
  mediaPort: "MEDIA_PORT",
  publicUrl: "MEDIA_PUBLIC_URL",
  apiHost: "MEDIA_API_HOST",
  apiPort: "MEDIA_API_PORT",
  apiPublicUrl: "MEDIA_API_PUBLIC_URL",
  tlsCertFile: "TLS_CERT_FILE",
  tlsKeyFile: "TLS_KEY_FILE",
  maxSessions: "MAX_SESSIONS",
  maxGroups: "MAX_GROUPS",
  maxKbpsOut: "MAX_KBPS_OUT",
  heartbeatMs: "MEDIA_HEARTBEAT_MS",
  pingIntervalMs: "MEDIA_PING_INTERVAL_MS",
  // The node's own state: the journal of events not yet delivered to the edge (media/journal.ts).
  stateDir: "MEDIA_STATE_DIR",
  // The TCP fallback (WebTransport over WebSocket / HTTP-2, media/transport/fallback.ts).
  fallback: "MEDIA_FALLBACK",
  fallbackHost: "MEDIA_FALLBACK_HOST",
  fallbackPort: "MEDIA_FALLBACK_PORT",
  fallbackPublicUrl: "MEDIA_FALLBACK_PUBLIC_URL",
  fallbackTlsCertFile: "MEDIA_FALLBACK_TLS_CERT_FILE",
  fallbackTlsKeyFile: "MEDIA_FALLBACK_TLS_KEY_FILE",
  fallbackTlsReloadMs: "MEDIA_FALLBACK_TLS_RELOAD_MS",
} as const;

/** Fields that are a switch: JSON `true`/`false` stand for the variable's `on`/`off`. */
const SWITCHES: ReadonlySet<string> = new Set(["fallback"]);

export class ConfigFileError extends Error {
  override name = "ConfigFileError";
}

/** The environment a parsed config file stands for; unknown fields are an error (typos). */
export function configFileEnv(json: unknown): Record<string, string> {
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new ConfigFileError("the config file must hold a JSON object");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(json as Record<string, unknown>)) {
    if (k === "$comment") continue;
    const name = (CONFIG_FIELDS as Record<string, string>)[k];
    if (!name) throw new ConfigFileError(`unknown field "${k}" (known: ${Object.keys(CONFIG_FIELDS).join(", ")})`);
    if (typeof v === "boolean" && SWITCHES.has(k)) {
      out[name] = v ? "on" : "off";
      continue;
    }
    if (typeof v !== "string" && typeof v !== "number") throw new ConfigFileError(`field "${k}" must be a string or a number${SWITCHES.has(k) ? " (or true/false)" : ""}`);
    out[name] = String(v);
  }
  return out;
}
