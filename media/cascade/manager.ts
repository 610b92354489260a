// The node's cascade links: at most one per peer node, shared by every group the pair
// cascades. The edge tells the dialing node of a pair, per group, which node to reach and
// hands it a cascade token (src/token/cascade.ts) for that group; the listening node accepts
// `/v1/cascade` sessions and lets a group attach only with a valid token naming this node as
// listener and a group it holds. Local terminals' joins and leaves are announced to the link.
import type { JWTVerifyGetKey } from "jose";
import { pinnedCertificates } from "../../src/terminal/pinning.ts";
import { verifyCascadeToken } from "../../src/token/cascade.ts";
import type { Relay, RelayEvent } from "../relay/relay.ts";
import type { TransportSession } from "../transport/quic.ts";
import { CASCADE_JTI_PREFIX, CascadeLink, type LinkTransport } from "./link.ts";

export const CASCADE_PATH = "/v1/cascade";

export interface CascadeSpec {
  groupId: string;
  peerNodeId: string;
  /** The peer's WebTransport session URL (its `/v1/session`); the link uses `/v1/cascade` there. */
  peerUrl: string;
  certHashes?: string[];
  token: string;
}

export interface CascadeOptions {
  nodeId: string;
  issuer: string;
  relay: Relay;
  keys: JWTVerifyGetKey;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  WebTransport?: typeof WebTransport;
}

export function isCascadeSession(t: Pick<TransportSession, "url">): boolean {
  try {
    return new URL(t.url).pathname === CASCADE_PATH;
  } catch {
    return false;
  }
}

export function isCascadeJti(jti: string | undefined): boolean {
  return !!jti && jti.startsWith(CASCADE_JTI_PREFIX);
}

export class CascadeManager {
  readonly links = new Map<string, CascadeLink>();
  private readonly dialing = new Map<string, Promise<CascadeLink>>();
  /** Listener links not yet tied to a peer id (until their first attach names the dialer). */
  private readonly pending = new Set<CascadeLink>();
  /** groupId → the peer it cascades with. */
  private readonly groups = new Map<string, string>();

  constructor(private readonly opts: CascadeOptions) {}

  /** A `/v1/cascade` session from another node. */
  accept(t: TransportSession): void {
    let link: CascadeLink;
    const verifyAttach = async (token: string, gid: string) => {
      const claims = await verifyCascadeToken(token, this.opts.keys, { issuer: this.opts.issuer, listener: this.opts.nodeId });
      if (claims.gid !== gid) throw new Error("token is for another group");
      if (!this.opts.relay.groups.has(gid)) throw new Error("groupUnknown");
      if (link.peerNodeId !== "?" && link.peerNodeId !== claims.sub) throw new Error("token is for another node");
      if (link.peerNodeId === "?") {
        link.peerNodeId = claims.sub;
        this.pending.delete(link);
        this.links.get(claims.sub)?.close("replaced by a new link");
        this.links.set(claims.sub, link);
      }
      this.groups.set(gid, claims.sub);
    };
    link = new CascadeLink(t as LinkTransport, "listener", "?", {
      relay: this.opts.relay, log: this.opts.log, verifyAttach,
      onClosed: (l) => this.forget(l),
    });
    this.pending.add(link);
    // An unauthenticated link gets a few seconds to attach a group, then it is closed.
    setTimeout(() => { if (this.pending.has(link)) link.close("no valid attach"); }, 5000);
  }

  /** The edge asks this node to cascade `groupId` with a peer: dial it (or reuse the link) and attach. */
  async cascade(spec: CascadeSpec): Promise<boolean> {
    this.groups.set(spec.groupId, spec.peerNodeId);
    for (let attempt = 0; attempt < 20; attempt++) {
      const link = await this.linkTo(spec).catch((err) => {
        this.opts.log("cascade dial failed", { peer: spec.peerNodeId, error: String((err as Error)?.message ?? err).slice(0, 120) });
        return undefined;
      });
      const r = link ? await link.attach(spec.groupId, spec.token) : "unreachable";
      if (r === true) {
        this.opts.log("cascade attached", { groupId: spec.groupId, peer: spec.peerNodeId });
        return true;
      }
      // The peer may not hold the group yet (the edge reserves both), or the link broke: try
      // again shortly. A refused token is final.
      if (r !== "groupUnknown" && r !== "unreachable" && r !== "link closed") {
        this.groups.delete(spec.groupId);
        return false;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  }

  /** Relay events: local terminals of a cascaded group are announced to its link. */
  onRelayEvent(e: RelayEvent): void {
    const peer = this.groups.get(e.groupId);
    if (!peer) return;
    const link = this.links.get(peer);
    if (e.type === "group-closed") {
      link?.detach(e.groupId);
      this.groups.delete(e.groupId);
      return;
    }
    if (!link || !e.terminalId || isCascadeJti(e.jti)) return;
    if (e.type === "joined") link.announce(e.groupId, e.terminalId, true);
    else if (e.type === "left") link.announce(e.groupId, e.terminalId, false);
  }

  stats() {
    return {
      links: [...this.links.values()].map((l) => ({ peer: l.peerNodeId, role: l.role, groups: l.byGid.size, maxDatagramSize: l.maxDatagramSize, ...l.counters })),
    };
  }

  close(): void {
    for (const l of [...this.links.values(), ...this.pending]) l.close("node stopping");
  }

  private forget(l: CascadeLink): void {
    this.pending.delete(l);
    if (this.links.get(l.peerNodeId) === l) this.links.delete(l.peerNodeId);
  }

  private linkTo(spec: CascadeSpec): Promise<CascadeLink> {
    const live = this.links.get(spec.peerNodeId);
    if (live && !live.closed) return Promise.resolve(live);
    let p = this.dialing.get(spec.peerNodeId);
    if (!p) {
      p = this.dial(spec).finally(() => this.dialing.delete(spec.peerNodeId));
      this.dialing.set(spec.peerNodeId, p);
    }
    return p;
  }

  private async dial(spec: CascadeSpec): Promise<CascadeLink> {
    const WT = this.opts.WebTransport ?? globalThis.WebTransport;
    const url = new URL(spec.peerUrl);
    url.pathname = CASCADE_PATH;
    url.search = "";
    const wt = new WT(url.href, pinnedCertificates(spec.certHashes));
    wt.closed.catch(() => {});
    await Promise.race([wt.ready, new Promise((_, rej) => setTimeout(() => rej(new Error("connect timeout")), 3000))]);
    const t: LinkTransport = {
      get maxDatagramSize() { return wt.datagrams.maxDatagramSize; },
      datagrams: wt.datagrams as unknown as LinkTransport["datagrams"],
      incomingBidirectionalStreams: wt.incomingBidirectionalStreams as unknown as LinkTransport["incomingBidirectionalStreams"],
      incomingUnidirectionalStreams: wt.incomingUnidirectionalStreams as unknown as LinkTransport["incomingUnidirectionalStreams"],
      createUnidirectionalStream: () => wt.createUnidirectionalStream() as unknown as Promise<WritableStream<Uint8Array>>,
      createBidirectionalStream: () => wt.createBidirectionalStream() as unknown as ReturnType<NonNullable<LinkTransport["createBidirectionalStream"]>>,
      close: (info) => { try { wt.close(info); } catch { /* closed */ } },
      closed: wt.closed.then(() => undefined, () => undefined),
    };
    const link = new CascadeLink(t, "dialer", spec.peerNodeId, { relay: this.opts.relay, log: this.opts.log, onClosed: (l) => this.forget(l) });
    this.links.set(spec.peerNodeId, link);
    this.opts.log("cascade link up", { peer: spec.peerNodeId });
    return link;
  }
}
