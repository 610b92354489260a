// Media node entry: `deno run --allow-all --unstable-net media/main.ts`, configured by the
// environment described in docs/internal-apis.md, or by a config file given as first argument.
import { ConfigError, configFromEnv, consoleLogger, MediaNode } from "./node.ts";
import { denoApi } from "./transport/deno.ts";
import { ConfigFileError, configFileEnv } from "./config-file.ts";
import { isFallbackPackageError } from "./transport/fallback.ts";

const Deno = denoApi();
// A disconnect can surface as an unhandled rejection inside Deno's WebTransport: log, keep serving.
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  console.log(`${new Date().toISOString()} unhandled rejection (ignored): ${(e.reason as Error)?.name ?? typeof e.reason}`);
});

// The TCP fallback's package can throw from its own event handlers when a client goes away:
// one terminal's disconnect must not stop the node.
globalThis.addEventListener("error", (e) => {
  if (!isFallbackPackageError(e.error)) return;
  e.preventDefault();
  console.log(`${new Date().toISOString()} fallback transport error (ignored): ${(e.error as Error)?.message?.slice(0, 120)}`);
});

async function loadConfig() {
  try {
    // Optional config file (media/config-file.ts): first argument or MEDIA_CONFIG; env wins.
    const file = Deno.args[0] ?? Deno.env.get("MEDIA_CONFIG");
    const fromFile = file ? configFileEnv(JSON.parse(await Deno.readTextFile(file))) : {};
    return configFromEnv({ ...fromFile, ...Deno.env.toObject() });
  } catch (err) {
    const known = err instanceof ConfigError || err instanceof ConfigFileError || err instanceof SyntaxError;
    console.error(known ? `configuration: ${(err as Error).message}` : err);
    return Deno.exit(2);
  }
}
const config = await loadConfig();

const node = await MediaNode.start(config, { log: consoleLogger(config.nodeId) }).catch((err) => {
  // A port already taken is the operator's to fix: say which, without a stack.
  if (!(err instanceof ConfigError)) throw err;
  console.error(`configuration: ${err.message}`);
  return Deno.exit(2);
});
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await node.stop();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", () => void stop());
Deno.addSignalListener("SIGINT", () => void stop());
