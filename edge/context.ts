// What the app is built from. Runtime adapters (worker.ts, deno.ts) make these; tests can too.
import type { EdgeConfig } from "./config.ts";
import type { Store } from "./db/store.ts";
import type { NodeApi } from "./node-api.ts";

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

export interface EdgeDeps {
  store: Store;
  config: EdgeConfig;
  nodeApi: NodeApi;
  clock: Clock;
  /** Serves the page and SDK for paths the API does not own. */
  assets?: (req: Request) => Promise<Response>;
  /** One line per request; never given PHI, tokens or keys. */
  log?: (line: string) => void;
  /** Resolves once the schema is migrated (Workers migrate on first request). */
  ready?: () => Promise<void>;
}

export interface ClinicPrincipal {
  clinicId: string;
  /** The API key used, for the audit trail. */
  keyId: string;
  rateLimit: number | null;
}

export type AppEnv = {
  Bindings: { clientIp?: string };
  Variables: {
    /** The clinic whose API key is the bearer, found by the app's gate before any route. */
    identified?: ClinicPrincipal;
    /** Set by requireClinic: the caller of a clinic route. */
    clinic: ClinicPrincipal;
  };
};
