// The consultation token's claims. Minimum necessary: ids, role, group limits and at most a
// keyed hash of the clinic's patient id — never a name, birth date or other PHI.
import type { GroupAttributes, Role } from "../types.ts";

/** JWT `typ` of a consultation token; a node refuses any other type at join. */
export const CONSULTATION_TOKEN_TYPE = "hz-consultation+jwt";
/** JWT `typ` of an edge → node control call. */
export const NODE_API_TOKEN_TYPE = "hz-node-api+jwt";
export const ALGORITHMS = ["EdDSA", "ES256"] as const;
export type SigningAlgorithm = (typeof ALGORITHMS)[number];

/** Audience naming one media node. */
export function nodeAudience(nodeId: string): string {
  return `urn:huizhen:node:${nodeId}`;
}
export function nodeApiAudience(nodeId: string): string {
  return `urn:huizhen:node-api:${nodeId}`;
}

export interface ConsultationClaims {
  iss: string;
  aud: string;
  /** Terminal id. */
  sub: string;
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  /** Consultation id. */
  cid: string;
  /** Group id on the node. */
  gid: string;
  role: Role;
  /** Clinic (tenant) id. */
  ten: string;
  /** Keyed hash of the clinic's patient id (see patient.ts). */
  prf?: string;
  grp: GroupAttributes;
}

export class ClaimsError extends Error {
  override name = "ClaimsError";
}

const isStr = (v: unknown, max = 256) => typeof v === "string" && v.length > 0 && v.length <= max;
const isInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;

/** Checks the shape of already-verified claims; throws ClaimsError naming the bad claim. */
export function parseConsultationClaims(payload: Record<string, unknown>): ConsultationClaims {
  for (const k of ["iss", "aud", "sub", "jti", "cid", "gid", "ten"] as const) {
    if (!isStr(payload[k])) throw new ClaimsError(`claim ${k} is missing or malformed`);
  }
  for (const k of ["iat", "nbf", "exp"] as const) {
    if (!isInt(payload[k])) throw new ClaimsError(`claim ${k} is missing or malformed`);
  }
  if (payload.role !== "requester" && payload.role !== "consultant") throw new ClaimsError("claim role is malformed");
  if (payload.prf !== undefined && !isStr(payload.prf, 64)) throw new ClaimsError("claim prf is malformed");
  const g = payload.grp as Record<string, unknown> | undefined;
  if (!g || typeof g !== "object") throw new ClaimsError("claim grp is missing");
  for (const k of ["maxParticipants", "maxVideoKbps", "maxAudioKbps", "maxHeight"] as const) {
    if (!isInt(g[k])) throw new ClaimsError(`claim grp.${k} is missing or malformed`);
  }
  const known = new Set(["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "cid", "gid", "role", "ten", "prf", "grp"]);
  for (const k of Object.keys(payload)) {
    if (!known.has(k)) throw new ClaimsError(`unexpected claim ${k}`);
  }
  return payload as unknown as ConsultationClaims;
}
