// Media node entry: `deno run --allow-all --unstable-net media/main.ts`, configured by the
// environment described in docs/internal-apis.md.
import { ConfigError, configFromEnv, consoleLogger, MediaNode } from "./node.ts";
import { denoApi } from "./transport/deno.ts";

const Deno = denoApi();
// A disconnect can surface as an unhandled rejection inside Deno's WebTransport: log, keep serving.
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  console.log(`${new Date().toISOString()} unhandled rejection (ignored): ${(e.reason as Error)?.name ?? typeof e.reason}`);
});

function loadConfig() {
  try {
    return configFromEnv(Deno.env.toObject());
  } catch (err) {
    console.error(err instanceof ConfigError ? `configuration: ${err.message}` : err);
    return Deno.exit(2);
  }
}
const config = loadConfig();

const node = await MediaNode.start(config, { log: consoleLogger(config.nodeId) });
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await node.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", () => void stop());
Deno.addSignalListener("SIGINT", () => void stop());
