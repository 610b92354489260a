// A subscriber's outgoing datagram queue, apart from the forwarding policy: the policy decides
// what to send, the queue decides when (audio first) and what is too late to send at all.
import { Track } from "../../src/protocol/media.ts";

export interface QueueOptions {
  /** Most datagrams held. */
  maxItems: number;
  /** Audio older than this is dropped, not sent, ms. */
  audioDeadlineMs: number;
  /** Video older than this is dropped, not sent, ms. */
  videoDeadlineMs: number;
}

export const DEFAULT_QUEUE: QueueOptions = { maxItems: 1024, audioDeadlineMs: 150, videoDeadlineMs: 250 };

/**
 * A subscriber's outgoing datagrams: audio before video, bounded, and late media dropped
 * rather than delivered late. A video frame that loses one fragment to the deadline loses the
 * rest of its queued fragments too (half a frame is worth nothing).
 */
export class DeliveryQueue {
  private readonly audio: { d: Uint8Array; at: number }[] = [];
  private readonly video: { d: Uint8Array; at: number }[] = [];
  private head = { audio: 0, video: 0 };
  /** (source, track, sequence) of the last frame cut by the deadline. */
  private cut = -1;
  private cutSeq = -1;
  expired = 0;
  full = 0;
  private readonly o: QueueOptions;

  constructor(private readonly onExpired: (d: Uint8Array) => void, opts: Partial<QueueOptions> = {}) {
    this.o = { ...DEFAULT_QUEUE, ...opts };
  }

  get size(): number {
    return this.audio.length - this.head.audio + this.video.length - this.head.video;
  }

  push(d: Uint8Array, now: number): boolean {
    if (this.size >= this.o.maxItems) {
      this.full++;
      return false;
    }
    (d[2] === Track.audio ? this.audio : this.video).push({ d, at: now });
    return true;
  }

  /** The next datagram to send, or undefined; drops what has passed its deadline. */
  shift(now: number): Uint8Array | undefined {
    for (;;) {
      const audio = this.head.audio < this.audio.length;
      const q = audio ? this.audio : this.video;
      const k = audio ? "audio" : "video";
      const item = q[this.head[k]];
      if (!item) return undefined;
      this.head[k]++;
      if (this.head[k] > 256 && this.head[k] * 2 > q.length) {
        q.splice(0, this.head[k]);
        this.head[k] = 0;
      }
      const d = item.d;
      const frameKey = (d[3]! << 8) | d[2]!;
      const seq = ((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0;
      const deadline = audio ? this.o.audioDeadlineMs : this.o.videoDeadlineMs;
      if (now - item.at > deadline || (!audio && frameKey === this.cut && seq === this.cutSeq)) {
        if (!(frameKey === this.cut && seq === this.cutSeq)) {
          this.cut = frameKey;
          this.cutSeq = seq;
          this.onExpired(d);
        }
        this.expired++;
        continue;
      }
      return d;
    }
  }
}
