// The node's signature on its reports to the edge. Reporter and revocation poller build their
// requests with `Bearer <NODE_SECRET>`; when NODE_SECRET is a node key (`hznk.…`, made by
// `npm run node:add`), this fetch wrapper swaps that bearer for a per-request signed JWT
// (src/node-credential.ts), so the secret itself never leaves the node.
import { NodeSigner, isSigningSecret } from "../src/node-credential.ts";

export function signingFetch(nodeId: string, secret: string, inner?: typeof fetch): typeof fetch {
  const doFetch = inner ?? ((i: RequestInfo | URL, init?: RequestInit) => fetch(i, init));
  if (!isSigningSecret(secret)) return doFetch;
  const signer = new NodeSigner(nodeId, secret);
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    if (headers.get("authorization") !== `Bearer ${secret}`) return doFetch(input, init);
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const body = typeof init?.body === "string" ? init.body : "";
    if (init?.body !== undefined && init.body !== null && typeof init.body !== "string") throw new TypeError("signed node reports carry a string body");
    headers.set("authorization", `Bearer ${await signer.sign(init?.method ?? "GET", url.pathname, body)}`);
    return doFetch(input, { ...init, headers });
  }) as typeof fetch;
}
