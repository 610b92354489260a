// Configuration from Workers bindings or the Deno environment (the same names; see
// docs/internal-apis.md). Parsed once; a bad secret stops the edge with a message naming it.
import type { JWK } from "jose";
import { sha256Hex } from "../src/bytes.ts";
import { PhiCipher } from "../src/phi-cipher.ts";
import { loadKeySet, type KeySet } from "../src/token/keys.ts";
import { isPublicNodeJwk, type NodeKeyPair } from "../src/node-credential.ts";

export type NodePublicJwk = NodeKeyPair["publicJwk"];

export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface RateLimits {
  windowSec: number;
  perClinic: number;
  perIp: number;
}

export interface EdgeConfig {
  issuer: string;
  publicUrl: string;
  tokenTtlSec: number;
  /** How long a group is reserved on its node. */
  groupTtlSec: number;
  adminKeyHash: string;
  /** nodeId → the node's public key (signed reports), or sha-256 hex of a legacy bearer secret. */
  nodeCredentials: Map<string, string | NodePublicJwk>;
  patientHashKey: string;
  phi: PhiCipher;
  keys: KeyRing;
  rateLimits: RateLimits;
  /** Header holding the client address set by a trusted proxy (Workers: cf-connecting-ip). */
  clientIpHeader?: string;
  /** Node calls (create/close group) give up after this, ms. */
  nodeTimeoutMs: number;
  staleNodeMs: number;
}

export type EnvLike = Record<string, unknown>;

function text(env: EnvLike, name: string, fallback?: string): string {
  const v = env[name];
  if (typeof v === "string" && v.length > 0) return v;
  if (fallback !== undefined) return fallback;
  throw new ConfigError(`${name} is not set`);
}

function int(env: EnvLike, name: string, fallback: number, min = 1): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${name} must be an integer ≥ ${min}`);
  return n;
}

/** The signing key set, re-read when a rotated key's `activeFrom` comes due. */
export class KeyRing {
  private current: KeySet;
  private loadedAt: number;
  /** Unix ms at which a published key starts signing: the set is re-read right then, not up to 30 s later. */
  private readonly activations: number[];
  private constructor(private readonly secret: string, first: KeySet, now: number) {
    this.current = first;
    this.loadedAt = now;
    let keys: unknown[] = [];
    try {
      keys = (JSON.parse(secret) as { keys?: unknown[] }).keys ?? [];
    } catch { /* loadKeySet has already refused a malformed secret */ }
    this.activations = keys
      .map((k) => (k as { activeFrom?: unknown }).activeFrom)
      .filter((v): v is number => typeof v === "number" && Number.isFinite(v))
      .map((sec) => sec * 1000);
  }

  static async load(secret: string, nowMs: number): Promise<KeyRing> {
    return new KeyRing(secret, await loadKeySet(secret, Math.floor(nowMs / 1000)), nowMs);
  }

  async get(nowMs: number): Promise<KeySet> {
    if (nowMs - this.loadedAt > 30_000 || this.activations.some((t) => t > this.loadedAt && t <= nowMs)) {
      this.current = await loadKeySet(this.secret, Math.floor(nowMs / 1000));
      this.loadedAt = nowMs;
    }
    return this.current;
  }

  async publicJwks(nowMs: number): Promise<JWK[]> {
    return (await this.get(nowMs)).publicJwks;
  }
}

export async function loadConfig(env: EnvLike, nowMs: number, defaults: { clientIpHeader?: string } = {}): Promise<EdgeConfig> {
  let nodeCredentials: Map<string, string | NodePublicJwk>;
  try {
    const parsed = JSON.parse(text(env, "NODE_CREDENTIALS", "{}")) as Record<string, unknown>;
    nodeCredentials = new Map();
    for (const [id, hash] of Object.entries(parsed)) {
      if (isPublicNodeJwk(hash)) {
        nodeCredentials.set(id, { kty: "OKP", crv: "Ed25519", x: hash.x });
        continue;
      }
      if (typeof hash !== "string" || !/^[0-9a-f]{64}$/.test(hash)) throw new ConfigError(`NODE_CREDENTIALS.${id} is neither an Ed25519 public JWK nor a sha-256 hex`);
      nodeCredentials.set(id, hash);
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError("NODE_CREDENTIALS is not valid JSON");
  }
  const adminKey = text(env, "ADMIN_KEY");
  if (adminKey.length < 16) throw new ConfigError("ADMIN_KEY is too short (16 characters at least)");
  const publicUrl = text(env, "PUBLIC_URL", "http://127.0.0.1:8787").replace(/\/+$/, "");
  const header = typeof env.CLIENT_IP_HEADER === "string" && env.CLIENT_IP_HEADER ? env.CLIENT_IP_HEADER : defaults.clientIpHeader;
  return {
    issuer: text(env, "ISSUER", "huizhen-edge"),
    publicUrl,
    tokenTtlSec: int(env, "TOKEN_TTL_SECONDS", 600),
    groupTtlSec: int(env, "GROUP_TTL_SECONDS", 4 * 3600),
    adminKeyHash: await sha256Hex(adminKey),
    nodeCredentials,
    patientHashKey: text(env, "PATIENT_HASH_KEY"),
    phi: await PhiCipher.fromSecret(text(env, "PHI_KEYS")),
    keys: await KeyRing.load(text(env, "SIGNING_KEYS"), nowMs),
    rateLimits: {
      windowSec: int(env, "RATE_LIMIT_WINDOW_SECONDS", 60),
      perClinic: int(env, "RATE_LIMIT_CLINIC", 3000),
      perIp: int(env, "RATE_LIMIT_IP", 6000),
    },
    clientIpHeader: header?.toLowerCase(),
    nodeTimeoutMs: int(env, "NODE_TIMEOUT_MS", 2000),
    staleNodeMs: int(env, "NODE_STALE_MS", 15_000),
  };
}
