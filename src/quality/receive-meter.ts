// What a receiver measures per publisher, for the feedback that drives the estimate: bytes
// that arrived, datagrams lost on the path (from each frame's fragment count and the gaps in
// sequence numbers), queueing delay (one-way delay above its recent minimum; the two clocks
// differ by a constant, which the minimum cancels) and inter-arrival jitter. Frames the node
// chose not to forward (`skip`) are not loss.
import { seqNewer } from "../protocol/media.ts";
import { WindowMin } from "./estimator.ts";

export interface ReceiveReport {
  intervalMs: number;
  bytes: number;
  /** Datagrams lost on the path, 0..1. */
  loss: number;
  /** Queueing delay, ms. */
  delayMs: number;
  jitterMs: number;
  /** Datagrams that arrived. */
  datagrams: number;
}

interface FrameTally { count: number; got: number; at: number }

interface TrackTally {
  highest?: number;
  frames: Map<number, FrameTally>;
  skipped: Set<number>;
}

export class ReceiveMeter {
  private bytes = 0;
  private datagrams = 0;
  private expected = 0;
  private received = 0;
  private started: number;
  private readonly tracks = new Map<number, TrackTally>();
  private readonly baseline = new WindowMin(10_000);
  private intervalMinOwd = Infinity;
  private jitter = 0;
  private lastOwd?: number;

  constructor(now: number) {
    this.started = now;
  }

  /**
   * One media datagram from this publisher; `timestampUs` is the frame's capture time. Delay
   * and jitter use each frame's first fragment only: later fragments of a big frame arrive
   * later by design (serialisation), which is not queueing.
   */
  onDatagram(track: number, sequence: number, fragmentCount: number, size: number, timestampUs: number, now: number, fragmentIndex = 0, retransmission = false): void {
    this.bytes += size;
    this.datagrams++;
    if (retransmission) return; // the path's loss is what the first copies met
    if (fragmentIndex === 0) {
      const owd = now - timestampUs / 1000;
      if (owd < this.intervalMinOwd) this.intervalMinOwd = owd;
      if (this.lastOwd !== undefined) this.jitter += (Math.abs(owd - this.lastOwd) - this.jitter) / 16;
      this.lastOwd = owd;
    }
    let t = this.tracks.get(track);
    if (!t) this.tracks.set(track, (t = { frames: new Map(), skipped: new Set() }));
    let f = t.frames.get(sequence);
    if (!f) {
      if (t.highest !== undefined && !seqNewer(sequence, t.highest) && !t.frames.has(sequence)) {
        // An old frame already settled as lost: it arrived after all.
        this.received++;
        return;
      }
      t.frames.set(sequence, (f = { count: fragmentCount, got: 0, at: now }));
      if (t.highest === undefined) t.highest = sequence;
      else if (seqNewer(sequence, t.highest)) {
        // Frames between the old highest and this one that never showed up: at least one datagram each.
        for (let s = (t.highest + 1) >>> 0; s !== sequence && t.frames.size < 4096; s = (s + 1) >>> 0) {
          if (!t.frames.has(s)) t.frames.set(s, { count: 1, got: 0, at: now });
        }
        t.highest = sequence;
      }
    } else if (f.got === 0) f.count = fragmentCount;
    if (f.got >= f.count) return; // a duplicate (audio redundancy)
    f.got++;
  }

  /** Smoothed inter-arrival jitter (RFC 3550 style), ms. */
  get jitterMs(): number {
    return this.jitter;
  }

  /** The node dropped these frames on purpose. */
  onSkip(track: number, sequences: number[]): void {
    let t = this.tracks.get(track);
    if (!t) this.tracks.set(track, (t = { frames: new Map(), skipped: new Set() }));
    for (const s of sequences) {
      t.skipped.add(s);
      if (t.skipped.size > 1024) t.skipped.delete(t.skipped.values().next().value!);
    }
  }

  /** Closes the interval: settles frames old enough and returns the report. */
  report(now: number, settleMs = 200): ReceiveReport {
    for (const t of this.tracks.values()) {
      for (const [seq, f] of t.frames) {
        if (now - f.at < settleMs && t.frames.size < 4096) continue;
        t.frames.delete(seq);
        if (t.skipped.delete(seq) && f.got === 0) continue;
        this.expected += Math.max(f.count, f.got);
        this.received += f.got;
      }
    }
    let delayMs = 0;
    if (this.intervalMinOwd !== Infinity) {
      this.baseline.push(now, this.intervalMinOwd);
      delayMs = Math.max(0, this.intervalMinOwd - (this.baseline.value ?? this.intervalMinOwd));
    } else this.baseline.trim(now);
    const r: ReceiveReport = {
      intervalMs: Math.max(1, now - this.started),
      bytes: this.bytes,
      loss: this.expected > 0 ? Math.max(0, 1 - this.received / this.expected) : 0,
      delayMs: Math.round(delayMs * 10) / 10,
      jitterMs: Math.round(this.jitter * 10) / 10,
      datagrams: this.datagrams,
    };
    this.started = now;
    this.bytes = this.datagrams = this.expected = this.received = 0;
    this.intervalMinOwd = Infinity;
    return r;
  }
}
