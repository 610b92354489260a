// Node → edge: a heartbeat every few seconds and session events, queued with unique ids and
// retried until the edge answers 200. Calls go on whether or not the edge is up; nothing here
// sits on the media path. With a journal (media/journal.ts) the queue is on disk too: an event
// is sent only once it is synced there, and what a killed node had not delivered is sent first
// when it starts again, with the same ids.
import { randomId } from "../src/bytes.ts";
import type { NodeCapacity, NodeLoad } from "../src/types.ts";
import type { RelayEvent } from "./relay/relay.ts";
import { journalFields, type EventJournal, type JournaledEvent } from "./journal.ts";

export interface HeartbeatBody {
  region: string;
  url: string;
  apiUrl: string;
  certHashes: string[];
  /** The TCP fallback's URL (WebTransport over WebSocket), when the node serves one. */
  fallbackUrl?: string;
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
  /** Events kept at most; the oldest are dropped beyond (counted and logged). */
  maxQueued?: number;
  /** The queue on disk; `recovered` (what it held at open) is sent before anything new. */
  journal?: { journal: EventJournal; recovered: JournaledEvent[] };
}

export type QueuedEvent = JournaledEvent;

/** How often, at most, a full queue's drops are logged. */
const DROP_LOG_EVERY_MS = 60_000;

export class EdgeReporter {
  readonly queue: QueuedEvent[] = [];
  /** The first `durable` events of the queue are on disk (all of them without a journal). */
  durable = 0;
  dropped = 0;
  edgeUp = false;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private flushing = false;
  private persisting = false;
  private persistRun: Promise<void> = Promise.resolve();
  private flushRun: Promise<void> = Promise.resolve();
  private readonly journal?: EventJournal;
  private droppedUnlogged = 0;
  private lastDropLog = -Infinity;
  private retryMs = 500;
  private stopped = false;
  private readonly doFetch: typeof fetch;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;

  constructor(private readonly opts: ReporterOptions) {
    this.doFetch = opts.fetch ?? ((i: RequestInfo | URL, init?: RequestInit) => fetch(i, init));
    this.log = opts.log ?? (() => {});
    if (opts.journal) {
      this.journal = opts.journal.journal;
      this.queue.push(...opts.journal.recovered);
      this.durable = this.queue.length;
    }
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

  /** Stops, waits for journal writes under way, closes the journal (its events stay for the next start). */
  async close(): Promise<void> {
    this.stop();
    await this.journal?.close().catch(() => {});
  }

  enqueue(e: RelayEvent): void {
    // Only the fields the edge takes, so nothing else can reach the journal or the wire.
    const q = journalFields({ id: randomId("ev", 12), ...e });
    if (!q) return void this.log("event not queued: malformed", { type: String(e.type).slice(0, 32) });
    this.queue.push(q);
    if (!this.journal) this.durable = this.queue.length;
    const max = this.opts.maxQueued ?? 10_000;
    if (this.queue.length > max) this.drop(this.queue.length - max, max);
    if (this.journal) void this.persist();
    else void this.flush();
  }

  /** Drops the oldest events (the edge will miss them): counted, journaled as gone, logged. */
  private drop(n: number, max: number): void {
    const gone = this.queue.splice(0, n);
    this.durable = Math.max(0, this.durable - n);
    this.dropped += n;
    this.droppedUnlogged += n;
    void this.journal?.done(gone.map((e) => e.id)).catch(() => {});
    const now = Date.now();
    if (now - this.lastDropLog >= DROP_LOG_EVERY_MS) {
      this.log("event queue full: oldest undelivered events dropped, the edge's record will miss them", { dropped: this.droppedUnlogged, droppedTotal: this.dropped, max });
      this.lastDropLog = now;
      this.droppedUnlogged = 0;
    }
  }

  /** Journals what is queued and sends it, as far as the edge takes it now (a node stopping). */
  async deliver(): Promise<void> {
    await this.persist();
    await this.flush();
  }

  /** Writes the events not yet on disk, all at once and synced, then lets them be sent. */
  private persist(): Promise<void> {
    if (this.journal && !this.persisting) this.persistRun = this.persistLoop();
    return this.persistRun;
  }

  private async persistLoop(): Promise<void> {
    if (!this.journal) return;
    this.persisting = true;
    try {
      while (this.durable < this.queue.length) {
        const batch = this.queue.slice(this.durable);
        try {
          await this.journal.append(batch);
        } catch (err) {
          // A disk problem must not stop the reports: these events go on from memory only.
          this.log("event journal write failed; events kept in memory only", { events: batch.length, error: (err as Error)?.name });
        }
        // Drops while writing took from the head (and moved `durable` back): the batch's events
        // still queued start at `durable`.
        const written = new Set(batch);
        let i = this.durable;
        while (i < this.queue.length && written.has(this.queue[i]!)) i++;
        this.durable = i;
      }
    } finally {
      this.persisting = false;
    }
    void this.flush();
  }

  /** Sends queued events (those on disk) in order; on failure retries with backoff (0.5 s … 10 s). */
  flush(): Promise<void> {
    if (!this.flushing && !this.stopped) this.flushRun = this.flushLoop();
    return this.flushRun;
  }

  private async flushLoop(): Promise<void> {
    this.flushing = true;
    try {
      while (this.durable > 0 && !this.stopped) {
        const batch = this.queue.slice(0, Math.min(200, this.durable));
        const ok = await this.post(`/v1/nodes/${encodeURIComponent(this.opts.nodeId)}/events`, { events: batch });
        if (!ok) {
          const wait = this.retryMs;
          this.retryMs = Math.min(this.retryMs * 2, 10_000);
          clearTimeout(this.timers[1]);
          this.timers[1] = setTimeout(() => void this.flush(), wait);
          return;
        }
        this.retryMs = 500;
        // Only what was sent leaves the queue; events added meanwhile stay. Drops meanwhile took
        // from the head, so the batch's remaining events are still first.
        const sent = new Set(batch);
        let n = 0;
        while (n < this.queue.length && sent.has(this.queue[n]!)) n++;
        this.queue.splice(0, n);
        this.durable = Math.max(0, this.durable - n);
        void this.journal?.done(batch.map((e) => e.id)).catch(() => {});
      }
    } finally {
      this.flushing = false;
    }
  }

  private async sendHeartbeat(): Promise<void> {
    const ok = await this.post(`/v1/nodes/${encodeURIComponent(this.opts.nodeId)}/heartbeat`, this.opts.heartbeat());
    if (ok !== this.edgeUp) this.log(ok ? "edge reachable" : "edge unreachable; heartbeats go on");
    this.edgeUp = ok;
    if (ok && this.durable) void this.flush();
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
