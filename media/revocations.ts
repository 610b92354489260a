// Node → edge: the re-check of revocations on a timer. The edge pushes every revocation to the
// node (POST /v1/groups/:id/revocations, DELETE /v1/groups/:id); should that call be lost (the
// node's API was unreachable, the edge crashed in between), this poll of
// GET /v1/nodes/:id/revocations?since= applies it within one interval. Applying twice is
// harmless: a revoked jti stays revoked, an ended group is gone.
import type { Relay } from "./relay/relay.ts";

export interface RevocationFeed {
  now: number;
  groups: { groupId: string; endedAt: number }[];
  tokens: { jti: string; groupId: string; terminalId: string; revokedAt: number }[];
}

export interface RevocationPollerOptions {
  edgeUrl: string;
  nodeId: string;
  /** NODE_SECRET, sent as bearer; never logged. */
  secret: string;
  relay: Pick<Relay, "revoke" | "closeGroup">;
  intervalMs: number;
  fetch?: typeof fetch;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Unix ms the first poll asks from (default: a minute before now; groups live only since the node started). */
  since?: number;
}

/** The edge answers at most this many entries per list; a full list means "ask again from its last". */
const PAGE = 1000;
/** Asked again each time: a revocation written while the previous answer was read is not missed. */
const OVERLAP_MS = 2000;

export class RevocationPoller {
  private since: number;
  private timer?: ReturnType<typeof setTimeout>;
  private running = false;
  private stopped = false;
  private readonly doFetch: typeof fetch;
  /** Polls answered, and sessions closed by them (operators, tests). */
  checks = 0;
  closedSessions = 0;

  constructor(private readonly opts: RevocationPollerOptions) {
    this.since = opts.since ?? Date.now() - 60_000;
    this.doFetch = opts.fetch ?? ((i: RequestInfo | URL, init?: RequestInit) => fetch(i, init));
  }

  start(): void {
    const loop = () => {
      if (this.stopped) return;
      void this.check().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.opts.intervalMs);
      });
    };
    this.timer = setTimeout(loop, this.opts.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** One poll; returns the sessions it closed, or undefined when the edge did not answer. */
  async check(): Promise<number | undefined> {
    if (this.running) return undefined;
    this.running = true;
    try {
      const url = `${this.opts.edgeUrl.replace(/\/+$/, "")}/v1/nodes/${encodeURIComponent(this.opts.nodeId)}/revocations?since=${Math.max(0, Math.floor(this.since))}`;
      let feed: RevocationFeed;
      try {
        const res = await this.doFetch(url, { headers: { authorization: `Bearer ${this.opts.secret}` }, signal: AbortSignal.timeout(5000) });
        if (res.status !== 200) {
          await res.body?.cancel().catch(() => {});
          return undefined;
        }
        feed = parseFeed(await res.json());
      } catch {
        return undefined; // edge down or answer malformed: the next tick asks again from the same time
      }
      let closed = 0;
      for (const g of feed.groups) closed += this.opts.relay.closeGroup(g.groupId, "consultationEnded") ?? 0;
      const byGroup = new Map<string, string[]>();
      for (const t of feed.tokens) byGroup.set(t.groupId, [...(byGroup.get(t.groupId) ?? []), t.jti]);
      for (const [groupId, jtis] of byGroup) closed += this.opts.relay.revoke(groupId, jtis) ?? 0;
      // A full page: continue from its last entry; otherwise from the edge's now (its clock, not ours).
      const last: number[] = [];
      if (feed.groups.length >= PAGE) last.push(feed.groups.at(-1)!.endedAt);
      if (feed.tokens.length >= PAGE) last.push(feed.tokens.at(-1)!.revokedAt);
      this.since = last.length ? Math.min(...last) : feed.now - OVERLAP_MS;
      this.checks++;
      this.closedSessions += closed;
      if (closed) this.opts.log?.("revocation re-check closed sessions", { closedSessions: closed });
      return closed;
    } finally {
      this.running = false;
    }
  }
}

const isId = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= 128;
const isTime = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;

function parseFeed(v: unknown): RevocationFeed {
  const b = v as Partial<RevocationFeed> | null;
  if (!b || !isTime(b.now) || !Array.isArray(b.groups) || !Array.isArray(b.tokens)) throw new Error("malformed revocation feed");
  return {
    now: b.now,
    groups: b.groups.filter((g) => g && isId(g.groupId) && isTime(g.endedAt)),
    tokens: b.tokens.filter((t) => t && isId(t.jti) && isId(t.groupId) && isTime(t.revokedAt)),
  };
}
