// The reporter's queue on disk, so events the edge has not acknowledged survive a crash or a
// kill of the node: one JSON object per line, `{"e": event}` when an event is queued and
// `{"done": [ids]}` once the edge has taken it (or it was dropped). On start the pending events
// are read back, in order and with their ids (the edge de-duplicates by id, so a re-send is
// harmless). Only the listed event fields are ever written: ids, types and times, never a token
// or patient data. The file itself is behind `JournalStore` (media/journal-file.ts on Deno).
import type { RelayEvent, RelayEventType } from "./relay/relay.ts";

/** An event as queued for the edge (media/reporter.ts): a relay event with its id. */
export type JournaledEvent = RelayEvent & { id: string };

/** Where the lines go; appends happen one at a time, in order. */
export interface JournalStore {
  /** The whole journal as it is on disk ("" when there is none). */
  read(): Promise<string>;
  /** Appends; with `sync`, resolves once the data is on disk (fdatasync). */
  append(text: string, sync: boolean): Promise<void>;
  /** Replaces the whole journal atomically (write aside, sync, rename). */
  replace(text: string): Promise<void>;
  close(): Promise<void>;
}

export interface JournalOptions {
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Journal size below which acknowledged lines are left in place, bytes (default 64 KiB). */
  compactMinBytes?: number;
}

const TYPES: ReadonlySet<string> = new Set<RelayEventType>(["joined", "left", "connected", "group-closed"]);
const OPTIONAL = ["terminalId", "jti", "reason"] as const;

function shortString(v: unknown, max: number): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= max;
}

/** The event with only the fields the edge takes (nothing else reaches the file), or undefined if malformed. */
export function journalFields(e: unknown): JournaledEvent | undefined {
  if (!e || typeof e !== "object") return undefined;
  const r = e as Record<string, unknown>;
  if (!shortString(r.id, 128) || !shortString(r.type, 32) || !TYPES.has(r.type)) return undefined;
  if (!shortString(r.consultationId, 64) || !shortString(r.groupId, 64)) return undefined;
  if (typeof r.at !== "number" || !Number.isFinite(r.at)) return undefined;
  const out: JournaledEvent = { id: r.id, type: r.type as RelayEventType, consultationId: r.consultationId, groupId: r.groupId, at: r.at };
  // An optional field that is not a short string is left out rather than losing the event.
  for (const k of OPTIONAL) if (shortString(r[k], 128)) out[k] = r[k] as string;
  return out;
}

export function eventLine(e: JournaledEvent): string {
  return JSON.stringify({ e: journalFields(e) }) + "\n";
}

export function doneLine(ids: readonly string[]): string {
  return JSON.stringify({ done: ids }) + "\n";
}

export interface ParsedJournal {
  /** Events not acknowledged, in the order they were queued. */
  pending: JournaledEvent[];
  /** Lines that could not be read (a write cut short by a crash, or damage). */
  skipped: number;
}

/** Reads a journal's text; unreadable lines are counted and left out, never fatal. */
export function parseJournal(text: string): ParsedJournal {
  const events = new Map<string, JournaledEvent>();
  const done = new Set<string>();
  let skipped = 0;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    const rec = v && typeof v === "object" ? (v as { e?: unknown; done?: unknown }) : undefined;
    if (rec?.e !== undefined) {
      const e = journalFields(rec.e);
      if (!e) skipped++;
      else if (!events.has(e.id)) events.set(e.id, e);
    } else if (Array.isArray(rec?.done)) {
      for (const id of rec.done) if (typeof id === "string") done.add(id);
    } else skipped++;
  }
  return { pending: [...events.values()].filter((e) => !done.has(e.id)), skipped };
}

export class EventJournal {
  /** Pending events' lines by id, in queue order: what a compaction keeps. */
  private readonly live = new Map<string, string>();
  private liveBytes = 0;
  private fileBytes = 0;
  private tail: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private readonly compactMinBytes: number;

  private constructor(private readonly store: JournalStore, opts: JournalOptions) {
    this.log = opts.log ?? (() => {});
    this.compactMinBytes = opts.compactMinBytes ?? 64 * 1024;
  }

  /**
   * Reads what a previous run left, and rewrites the journal with only that (so a torn last
   * line is gone before anything is appended after it). `recovered` are the events to re-send.
   */
  static async open(store: JournalStore, opts: JournalOptions = {}): Promise<{ journal: EventJournal; recovered: JournaledEvent[] }> {
    const j = new EventJournal(store, opts);
    const { pending, skipped } = parseJournal(await store.read());
    if (skipped) j.log("event journal: unreadable lines skipped (a write cut short by a crash?)", { lines: skipped });
    for (const e of pending) j.track(e);
    await j.rewrite();
    if (pending.length) j.log("event journal: undelivered events from the last run will be sent first", { events: pending.length });
    return { journal: j, recovered: pending };
  }

  /** Pending (not acknowledged) events in the journal. */
  get pending(): number {
    return this.live.size;
  }

  /** Bytes in the journal file as this process wrote it. */
  get bytes(): number {
    return this.fileBytes;
  }

  /** Writes the events and syncs: once this resolves they survive a crash. */
  append(events: readonly JournaledEvent[]): Promise<void> {
    if (!events.length) return this.tail;
    return this.enqueue(async () => {
      let text = "";
      for (const e of events) text += this.track(e);
      await this.store.append(text, true);
      this.fileBytes += text.length;
    });
  }

  /**
   * Marks events delivered (or dropped). Not synced: should the mark be lost in a crash, the
   * events are sent again and the edge ignores them by id.
   */
  done(ids: readonly string[]): Promise<void> {
    if (!ids.length) return this.tail;
    return this.enqueue(async () => {
      const gone = ids.filter((id) => this.untrack(id));
      if (!gone.length) return;
      if (this.live.size === 0) return this.rewrite();
      // Compact once acknowledged lines outweigh the pending ones: the file stays within about
      // twice the pending events' size (and at least compactMinBytes).
      const line = doneLine(gone);
      if (this.fileBytes + line.length > Math.max(this.compactMinBytes, 2 * this.liveBytes)) return this.rewrite();
      await this.store.append(line, false);
      this.fileBytes += line.length;
    });
  }

  /** Waits for every write asked for so far, then closes the file. */
  async close(): Promise<void> {
    await this.tail;
    if (this.closed) return;
    this.closed = true;
    await this.store.close();
  }

  private track(e: JournaledEvent): string {
    const line = eventLine(e);
    if (!this.live.has(e.id)) {
      this.live.set(e.id, line);
      this.liveBytes += line.length;
    }
    return line;
  }

  private untrack(id: string): boolean {
    const line = this.live.get(id);
    if (line === undefined) return false;
    this.live.delete(id);
    this.liveBytes -= line.length;
    return true;
  }

  private async rewrite(): Promise<void> {
    const text = [...this.live.values()].join("");
    await this.store.replace(text);
    this.fileBytes = text.length;
  }

  /** One write at a time, in call order; a failed write does not stop later ones. */
  private enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.tail.then(() => {
      if (this.closed) throw new Error("event journal closed");
      return op();
    });
    this.tail = run.catch(() => {});
    return run;
  }
}
