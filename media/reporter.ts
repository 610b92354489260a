// Node → edge: a heartbeat every few seconds and session events, queued with unique ids and
// retried until the edge answers 200. Calls go on whether or not the edge is up; nothing here
// sits on the media path.
import { randomId } from "../src/bytes.ts";
import type { NodeCapacity, NodeLoad } from "../src/types.ts";
import type { RelayEvent } from "./relay/relay.ts";

export interface HeartbeatBody {
  region: string;
  url: string;
  apiUrl: string;
  certHashes: string[];
  capacity: NodeCapacity;
  load: NodeLoad;
  draining: boolean;
}

export interface ReporterOptions {
  edgeUrl: string;
  nodeId: string;
  /** NODE_SECRET, sent as bearer; never logged. */
  secret: string;
  heartbeat(): HeartbeatBody;
  heartbeatMs?: number;
  fetch?: typeof fetch;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Events kept at most; the oldest are dropped beyond (and counted). */
  maxQueued?: number;
}

export interface QueuedEvent extends RelayEvent {
  id: string;
}

export class EdgeReporter {
  readonly queue: QueuedEvent[] = [];
  dropped = 0;
  edgeUp = false;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private flushing = false;
  private retryMs = 500;
  private stopped = false;
  private readonly doFetch: typeof fetch;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;

  constructor(private readonly opts: ReporterOptions) {
    this.doFetch = opts.fetch ?? ((i: RequestInfo | URL, init?: RequestInit) => fetch(i, init));
    this.log = opts.log ?? (() => {});
  }

  start(): void {
    void this.sendHeartbeat();
    const every = this.opts.heartbeatMs ?? 5000;
    const loop = () => {
      if (this.stopped) return;
      void this.sendHeartbeat();
      this.timers[0] = setTimeout(loop, every);
    };
    this.timers[0] = setTimeout(loop, every);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
  }

  enqueue(e: RelayEvent): void {
    this.queue.push({ id: randomId("ev", 12), ...e });
    const max = this.opts.maxQueued ?? 10_000;
    if (this.queue.length > max) this.dropped += this.queue.splice(0, this.queue.length - max).length;
    void this.flush();
  }

  /** Sends queued events in order; on failure retries with backoff (0.5 s … 10 s). */
  async flush(): Promise<void> {
    if (this.flushing || this.stopped) return;
    this.flushing = true;
    try {
      while (this.queue.length && !this.stopped) {
        const batch = this.queue.slice(0, 200);
        const ok = await this.post(`/v1/nodes/${encodeURIComponent(this.opts.nodeId)}/events`, { events: batch });
        if (!ok) {
          const wait = this.retryMs;
          this.retryMs = Math.min(this.retryMs * 2, 10_000);
          this.timers[1] = setTimeout(() => void this.flush(), wait);
          return;
        }
        this.retryMs = 500;
        // Only what was sent leaves the queue; events added meanwhile stay.
        this.queue.splice(0, batch.length);
      }
    } finally {
      this.flushing = false;
    }
  }

  private async sendHeartbeat(): Promise<void> {
    const ok = await this.post(`/v1/nodes/${encodeURIComponent(this.opts.nodeId)}/heartbeat`, this.opts.heartbeat());
    if (ok !== this.edgeUp) this.log(ok ? "edge reachable" : "edge unreachable; heartbeats go on");
    this.edgeUp = ok;
    if (ok && this.queue.length) void this.flush();
  }

  private async post(path: string, body: unknown): Promise<boolean> {
    try {
      const res = await this.doFetch(`${this.opts.edgeUrl.replace(/\/+$/, "")}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${this.opts.secret}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      await res.body?.cancel().catch(() => {});
      if (res.status !== 200) this.log("edge refused a report", { path: path.split("/").pop(), status: res.status });
      return res.status === 200;
    } catch {
      return false;
    }
  }
}
