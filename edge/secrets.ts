// Credentials the edge hands out: shown once, kept only as SHA-256 hashes.
import { randomBytes, sha256Hex, toBase64Url } from "../src/bytes.ts";

export interface IssuedSecret {
  secret: string;
  hash: string;
}

export async function newSecret(prefix: "hzk" | "hzt"): Promise<IssuedSecret> {
  const secret = `${prefix}_${toBase64Url(randomBytes(32))}`;
  return { secret, hash: await sha256Hex(secret) };
}

export const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
