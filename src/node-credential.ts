// A media node's own credential towards the edge: an Ed25519 key pair made for that node
// (never the edge's signing key). The node signs every report (heartbeat, events, revocation
// poll) with a short JWT bound to the method, path and a hash of the body; the edge holds only
// the public key, so nothing it stores lets anyone speak for the node.
//
// Secret format on the node: `hznk.<base64url(JSON private JWK)>` (NODE_SECRET).
// Entry on the edge: NODE_CREDENTIALS = {"<nodeId>": {"kty":"OKP","crv":"Ed25519","x":"…"}}.
// A legacy bearer secret (`hzn_…`, edge entry = sha-256 hex) is still accepted; see
// docs/internal-apis.md.
import { SignJWT, exportJWK, generateKeyPair, importJWK, jwtVerify, errors, type JWK } from "jose";
import { fromBase64, randomId, toBase64Url } from "./bytes.ts";

export const NODE_REPORT_TOKEN_TYPE = "hz-node-report+jwt";
export const EDGE_AUDIENCE = "urn:huizhen:edge";
const PREFIX = "hznk.";
/** A signed report is good for this long (clock skew included). */
export const REPORT_TOKEN_TTL_SEC = 60;

export class NodeCredentialError extends Error {
  override name = "NodeCredentialError";
}

export interface NodeKeyPair {
  /** NODE_SECRET for the node. */
  secret: string;
  /** The value for NODE_CREDENTIALS[nodeId] on the edge. */
  publicJwk: { kty: "OKP"; crv: "Ed25519"; x: string };
}

export async function generateNodeKey(): Promise<NodeKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const priv = await exportJWK(privateKey);
  const pub = await exportJWK(publicKey);
  return {
    secret: PREFIX + toBase64Url(new TextEncoder().encode(JSON.stringify({ kty: priv.kty, crv: priv.crv, x: priv.x, d: priv.d }))),
    publicJwk: { kty: "OKP", crv: "Ed25519", x: pub.x! },
  };
}

export function isSigningSecret(secret: string): boolean {
  return secret.startsWith(PREFIX);
}

export function publicJwkOfSecret(secret: string): NodeKeyPair["publicJwk"] {
  const jwk = parseSecret(secret);
  return { kty: "OKP", crv: "Ed25519", x: jwk.x! };
}

function parseSecret(secret: string): JWK {
  if (!isSigningSecret(secret)) throw new NodeCredentialError("not a node signing secret (hznk.…)");
  let jwk: JWK;
  try {
    jwk = JSON.parse(new TextDecoder().decode(fromBase64(secret.slice(PREFIX.length)))) as JWK;
  } catch {
    throw new NodeCredentialError("node signing secret is not readable");
  }
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.d !== "string" || typeof jwk.x !== "string") {
    throw new NodeCredentialError("node signing secret is not an Ed25519 private key");
  }
  return jwk;
}

/** True when `v` has the shape of an Ed25519 public JWK (the edge's config check). */
export function isPublicNodeJwk(v: unknown): v is NodeKeyPair["publicJwk"] {
  const j = v as Record<string, unknown>;
  return !!j && typeof j === "object" && j.kty === "OKP" && j.crv === "Ed25519" && typeof j.x === "string" && /^[A-Za-z0-9_-]{43}$/.test(j.x) && j.d === undefined;
}

export async function bodyHash(body: Uint8Array | string): Promise<string> {
  const data = typeof body === "string" ? new TextEncoder().encode(body) : body;
  return toBase64Url(new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource)));
}

/** Signs one node → edge request. `path` is the URL path (no query), `body` what is sent ("" for none). */
export class NodeSigner {
  private key?: Promise<CryptoKey | Uint8Array>;
  constructor(private readonly nodeId: string, private readonly secret: string) {
    parseSecret(secret); // fail at start, not at the first heartbeat
  }

  async sign(method: string, path: string, body: string, nowSec = Math.floor(Date.now() / 1000)): Promise<string> {
    this.key ??= importJWK({ ...parseSecret(this.secret), alg: "EdDSA" }, "EdDSA");
    return new SignJWT({ htm: method.toUpperCase(), htp: path, bh: await bodyHash(body) })
      .setProtectedHeader({ alg: "EdDSA", typ: NODE_REPORT_TOKEN_TYPE })
      .setIssuer(this.nodeId)
      .setAudience(EDGE_AUDIENCE)
      .setIssuedAt(nowSec)
      .setExpirationTime(nowSec + REPORT_TOKEN_TTL_SEC)
      .setJti(randomId("nrp", 12))
      .sign(await this.key);
  }
}

export interface ExpectedRequest {
  nodeId: string;
  method: string;
  path: string;
  /** Read only after the signature checked out. */
  body: () => Promise<Uint8Array>;
  now?: Date;
}

export interface VerifiedReport {
  jti: string;
  /** Unix s after which the signature is refused anyway (lifetime plus clock tolerance). */
  refusedAfter: number;
}

/**
 * Verifies a node's signed request; throws NodeCredentialError with a safe message. The caller
 * must refuse a `jti` it has seen before: the signature alone does not stop a replay.
 */
export async function verifyNodeRequest(token: string, publicJwk: NodeKeyPair["publicJwk"], want: ExpectedRequest): Promise<VerifiedReport> {
  let payload: Record<string, unknown>;
  try {
    const key = await importJWK({ ...publicJwk, alg: "EdDSA" }, "EdDSA");
    ({ payload } = await jwtVerify(token, key, {
      algorithms: ["EdDSA"], typ: NODE_REPORT_TOKEN_TYPE, issuer: want.nodeId, audience: EDGE_AUDIENCE,
      requiredClaims: ["exp", "iat", "jti"], clockTolerance: 30, maxTokenAge: REPORT_TOKEN_TTL_SEC + 30, currentDate: want.now,
    }));
  } catch (err) {
    throw new NodeCredentialError(err instanceof errors.JWTExpired ? "node report signature expired" : "node report signature invalid");
  }
  if (payload.htm !== want.method.toUpperCase() || payload.htp !== want.path) throw new NodeCredentialError("node report signed for another request");
  if (payload.bh !== (await bodyHash(await want.body()))) throw new NodeCredentialError("node report body does not match its signature");
  if (typeof payload.jti !== "string" || payload.jti.length === 0 || payload.jti.length > 64) throw new NodeCredentialError("node report signature invalid");
  return { jti: payload.jti, refusedAfter: (payload.iat as number) + REPORT_TOKEN_TTL_SEC + 60 };
}
