// Edge → media node control calls (docs/internal-apis.md), each with its own short-lived
// node-API JWT and a hard timeout, so a silent node costs at most `timeoutMs`.
import type { GroupSpec } from "../src/types.ts";
import { randomId } from "../src/bytes.ts";
import { nodeApiAudience } from "../src/token/claims.ts";
import { signNodeApiToken } from "../src/token/sign.ts";
import type { KeyRing } from "./config.ts";

export interface NodeRef {
  id: string;
  apiUrl: string;
}

/** The group as the edge asks a node to hold it: the node's own `GroupSpec`. */
export type GroupRequest = GroupSpec;

/** `reserved`: the node holds the group; anything else: try another node. */
export type ReserveOutcome = { ok: true } | { ok: false; reason: string };

export interface NodeApi {
  reserveGroup(node: NodeRef, req: GroupRequest): Promise<ReserveOutcome>;
  closeGroup(node: NodeRef, groupId: string, reason: string): Promise<{ ok: boolean; closedSessions?: number }>;
  revoke(node: NodeRef, groupId: string, what: { jtis?: string[]; terminalIds?: string[] }): Promise<{ ok: boolean }>;
  /** Tells `node` to cascade the group with a peer node (docs/internal-apis.md, cascading). */
  cascade?(node: NodeRef, groupId: string, spec: { peerNodeId: string; peerUrl: string; certHashes: string[]; token: string }): Promise<{ ok: boolean }>;
}

export interface FetchNodeApiOptions {
  issuer: string;
  keys: KeyRing;
  timeoutMs: number;
  now: () => number;
  fetch?: typeof fetch;
}

export function fetchNodeApi(opts: FetchNodeApiOptions): NodeApi {
  const doFetch = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));

  async function call(node: NodeRef, method: string, path: string, body?: unknown): Promise<Response> {
    const { active } = await opts.keys.get(opts.now());
    const token = await signNodeApiToken({ issuer: opts.issuer, audience: nodeApiAudience(node.id), ttlSeconds: 60, jti: randomId("napi", 12) }, active);
    return doFetch(`${node.apiUrl.replace(/\/+$/, "")}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
  }

  return {
    async reserveGroup(node, req) {
      try {
        const res = await call(node, "POST", "/v1/groups", req);
        await res.body?.cancel().catch(() => {});
        if (res.status === 201 || res.status === 200) return { ok: true };
        return { ok: false, reason: `status ${res.status}` };
      } catch (err) {
        return { ok: false, reason: (err as Error)?.name === "TimeoutError" ? "timeout" : "unreachable" };
      }
    },
    async closeGroup(node, groupId, reason) {
      try {
        const res = await call(node, "DELETE", `/v1/groups/${encodeURIComponent(groupId)}`, { reason });
        if (!res.ok) {
          await res.body?.cancel().catch(() => {});
          return { ok: false };
        }
        const body = (await res.json().catch(() => ({}))) as { closedSessions?: number };
        return { ok: true, closedSessions: typeof body.closedSessions === "number" ? body.closedSessions : undefined };
      } catch {
        return { ok: false };
      }
    },
    async cascade(node, groupId, spec) {
      try {
        const res = await call(node, "POST", `/v1/groups/${encodeURIComponent(groupId)}/cascade`, spec);
        await res.body?.cancel().catch(() => {});
        return { ok: res.ok };
      } catch {
        return { ok: false };
      }
    },
    async revoke(node, groupId, what) {
      try {
        const res = await call(node, "POST", `/v1/groups/${encodeURIComponent(groupId)}/revocations`, what);
        await res.body?.cancel().catch(() => {});
        return { ok: res.ok };
      } catch {
        return { ok: false };
      }
    },
  };
}
