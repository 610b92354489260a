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

/** A stream silent this long that comes back further on was paused by the node, not lost, ms. */
const RESUMED_AFTER_MS = 1000;

interface TrackTally {
  highest?: number;
  lastAt?: number;
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
  /**
   * One-way delay per stream (the `track` key: track and simulcast layer): each encoder adds
   * its own latency between capture and sending (a 720p frame takes longer than a 360p one or
   * an audio frame), so each stream has its own baseline, and jitter compares a stream's frames
   * with each other.
   */
  private readonly owd = new Map<number, { baseline: WindowMin; intervalMin: number; last?: number; at: number }>();
  private jitter = 0;

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
      let o = this.owd.get(track);
      if (!o) this.owd.set(track, (o = { baseline: new WindowMin(10_000), intervalMin: Infinity, at: now }));
      if (owd < o.intervalMin) o.intervalMin = owd;
      if (o.last !== undefined) this.jitter += (Math.abs(owd - o.last) - this.jitter) / 16;
      o.last = owd;
      o.at = now;
    }
    let t = this.tracks.get(track);
    if (!t) this.tracks.set(track, (t = { frames: new Map(), skipped: new Set() }));
    if (t.lastAt !== undefined && now - t.lastAt > RESUMED_AFTER_MS && t.highest !== undefined && seqNewer(sequence, t.highest)) {
      // Silent for a while and then further on: the node stopped forwarding this stream (it
      // sent another simulcast layer meanwhile) and started again. The frames between were
      // never meant for us: not loss.
      t.highest = (sequence - 1) >>> 0;
    }
    t.lastAt = now;
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
    // A queue on the path delays every stream: the smallest rise over the streams heard in the
    // interval is the queueing delay (one encoder's slow frames are not).
    let delayMs = Infinity;
    for (const [key, o] of this.owd) {
      if (o.intervalMin !== Infinity) {
        o.baseline.push(now, o.intervalMin);
        delayMs = Math.min(delayMs, Math.max(0, o.intervalMin - (o.baseline.value ?? o.intervalMin)));
        o.intervalMin = Infinity;
      } else {
        o.baseline.trim(now);
        if (now - o.at > 10_000) this.owd.delete(key);
      }
    }
    if (delayMs === Infinity) delayMs = 0;
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
    return r;
  }
}
