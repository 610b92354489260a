// Media objects: opaque encoded frames behind a fixed 20-byte header. The node reads only the
// header (never the payload) and rewrites the `source` byte; see docs/protocol.md.

export const MEDIA_VERSION = 1;
export const HEADER_BYTES = 20;

export const Track = { audio: 0, video: 1, still: 2 } as const;

export const Flag = {
  keyframe: 0x01,
  /** The frame travels on a reliable stream rather than datagrams. */
  reliable: 0x02,
  /**
   * Forward error correction: the XOR of a group of this frame's fragments (`fragmentIndex`
   * is the group's first fragment, `fragmentCount` the frame's), so a receiver rebuilds one
   * lost fragment per group without a round trip (docs/protocol.md §4).
   */
  parity: 0x04,
  /** A re-sent frame (after a `nack`) travelling as datagrams: older than what was delivered, yet wanted. */
  retransmission: 0x08,
  /** Dropping this frame breaks no later frame (e.g. a top temporal layer). */
  discardable: 0x40,
  /**
   * A copy the node sends only to probe a path's capacity (simulcast, docs/protocol.md §11):
   * the receiver counts its bytes in its receive report and drops it.
   */
  padding: 0x80,
} as const;
const LAYER_SHIFT = 4;
const LAYER_MASK = 0x30;

export interface MediaHeader {
  flags: number;
  track: number;
  /** Group slot of the publisher; 0 from terminals, stamped by the node when forwarding. */
  source: number;
  /** Frame number within the track, u32, wraps. */
  sequence: number;
  fragmentIndex: number;
  fragmentCount: number;
  /** Capture time on the sender's clock, µs. */
  timestamp: number;
}

export class MediaHeaderError extends Error {
  override name = "MediaHeaderError";
}

export function isKeyframe(h: Pick<MediaHeader, "flags">): boolean {
  return (h.flags & Flag.keyframe) !== 0;
}

export function layerOf(flags: number): number {
  return (flags & LAYER_MASK) >> LAYER_SHIFT;
}

export function withLayer(flags: number, layer: number): number {
  return (flags & ~LAYER_MASK) | ((layer << LAYER_SHIFT) & LAYER_MASK);
}

export function writeHeader(out: Uint8Array, h: MediaHeader): void {
  const dv = new DataView(out.buffer, out.byteOffset, HEADER_BYTES);
  dv.setUint8(0, MEDIA_VERSION);
  dv.setUint8(1, h.flags);
  dv.setUint8(2, h.track);
  dv.setUint8(3, h.source);
  dv.setUint32(4, h.sequence >>> 0);
  dv.setUint16(8, h.fragmentIndex);
  dv.setUint16(10, h.fragmentCount);
  dv.setFloat64(12, h.timestamp);
}

/** Parses and checks a header; throws MediaHeaderError on anything a sender may not send. */
export function readHeader(bytes: Uint8Array): MediaHeader {
  if (bytes.length < HEADER_BYTES) throw new MediaHeaderError(`media object of ${bytes.length} bytes is shorter than its header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  if (dv.getUint8(0) !== MEDIA_VERSION) throw new MediaHeaderError(`unknown media version ${dv.getUint8(0)}`);
  const h: MediaHeader = {
    flags: dv.getUint8(1),
    track: dv.getUint8(2),
    source: dv.getUint8(3),
    sequence: dv.getUint32(4),
    fragmentIndex: dv.getUint16(8),
    fragmentCount: dv.getUint16(10),
    timestamp: dv.getFloat64(12),
  };
  if (h.fragmentCount === 0 || h.fragmentIndex >= h.fragmentCount) {
    throw new MediaHeaderError(`fragment ${h.fragmentIndex} of ${h.fragmentCount} is out of range`);
  }
  if (!Number.isFinite(h.timestamp) || h.timestamp < 0) throw new MediaHeaderError("timestamp is not a finite positive number");
  return h;
}

/** The node's per-datagram check: cheap, no allocation. Returns the track or -1 when malformed. */
export function peekTrack(bytes: Uint8Array): number {
  if (bytes.length < HEADER_BYTES || bytes[0] !== MEDIA_VERSION) return -1;
  const count = (bytes[10]! << 8) | bytes[11]!;
  const index = (bytes[8]! << 8) | bytes[9]!;
  if (count === 0 || index >= count) return -1;
  return bytes[2]!;
}

/** Splits one encoded frame into datagrams of at most `maxDatagramSize` bytes each. */
export function fragmentFrame(
  h: Omit<MediaHeader, "fragmentIndex" | "fragmentCount">,
  payload: Uint8Array,
  maxDatagramSize: number,
): Uint8Array[] {
  const room = maxDatagramSize - HEADER_BYTES;
  if (room < 64) throw new RangeError(`datagram size ${maxDatagramSize} leaves no room for media`);
  const count = Math.max(1, Math.ceil(payload.length / room));
  if (count > 0xffff) throw new RangeError(`frame of ${payload.length} bytes needs too many fragments`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = payload.subarray(i * room, Math.min(payload.length, (i + 1) * room));
    const d = new Uint8Array(HEADER_BYTES + part.length);
    writeHeader(d, { ...h, fragmentIndex: i, fragmentCount: count });
    d.set(part, HEADER_BYTES);
    out.push(d);
  }
  return out;
}

/** Fragments one parity datagram covers at most: one loss in six is repaired without a round trip. */
export const PARITY_GROUP = 6;

/** Size of the parity groups of a frame of `count` fragments (balanced: 7 → 4 + 3, never a group of one). */
export function parityGroupSize(count: number): number {
  return Math.ceil(count / Math.ceil(count / PARITY_GROUP));
}

/**
 * The parity datagrams of one frame's fragments (as `fragmentFrame` made them): per group, the
 * first fragment's header with `Flag.parity`, then the XOR of the group's fragment lengths
 * (u16) and of their bodies, each zero-padded to the longest. Two bytes longer than the group's
 * longest fragment: a sender using parity cuts its fragments two bytes short of the datagram size.
 */
export function parityFor(fragments: readonly Uint8Array[]): Uint8Array[] {
  const n = fragments.length;
  if (n < 2) return [];
  const g = parityGroupSize(n);
  const out: Uint8Array[] = [];
  for (let start = 0; start < n; start += g) {
    const group = fragments.slice(start, Math.min(n, start + g));
    let longest = 0;
    let lengths = 0;
    for (const d of group) {
      longest = Math.max(longest, d.length - HEADER_BYTES);
      lengths ^= d.length - HEADER_BYTES;
    }
    const p = new Uint8Array(HEADER_BYTES + 2 + longest);
    p.set(group[0]!.subarray(0, HEADER_BYTES));
    p[1] = (p[1]! | Flag.parity) & ~Flag.retransmission;
    p[HEADER_BYTES] = lengths >> 8;
    p[HEADER_BYTES + 1] = lengths & 0xff;
    const x = p.subarray(HEADER_BYTES + 2);
    for (const d of group) for (let i = HEADER_BYTES; i < d.length; i++) x[i - HEADER_BYTES]! ^= d[i]!;
    out.push(p);
  }
  return out;
}

/**
 * Whether an object read from a media stream stands for a datagram (a streams-only session,
 * docs/protocol.md §1: sent unchanged, without the reliable flag) rather than a whole frame.
 */
export function standsForDatagram(obj: Uint8Array): boolean {
  return obj.length > 1 && (obj[1]! & Flag.reliable) === 0;
}

/** One whole object for a reliable stream (fragment 0 of 1). */
export function encodeObject(h: Omit<MediaHeader, "fragmentIndex" | "fragmentCount">, payload: Uint8Array): Uint8Array {
  const d = new Uint8Array(HEADER_BYTES + payload.length);
  writeHeader(d, { ...h, fragmentIndex: 0, fragmentCount: 1 });
  d.set(payload, HEADER_BYTES);
  return d;
}

export interface MediaFrame {
  header: MediaHeader;
  payload: Uint8Array;
}

interface Pending {
  header: MediaHeader;
  parts: (Uint8Array | undefined)[];
  received: number;
  bytes: number;
  firstAt: number;
  /** When its latest fragment arrived. */
  lastAt?: number;
  /** Parity datagram bodies by their group's first fragment index. */
  parity?: Map<number, Uint8Array>;
  /** A newer frame was delivered first (counted in `lost`); a retransmission may still complete it. */
  overtaken?: boolean;
}

/**
 * One sequence space: (layer, source, track). Each simulcast layer numbers its frames on its
 * own, so ordering, loss and nack state are kept per layer.
 */
export function streamKeyOf(h: Pick<MediaHeader, "flags" | "source" | "track">): number {
  return (layerOf(h.flags) << 16) | (h.source << 8) | h.track;
}

/** Serial-number comparison for u32 sequences (RFC 1982 style). */
export function seqNewer(a: number, b: number): boolean {
  return a !== b && ((a - b) >>> 0) < 0x80000000;
}

export interface ReassemblerOptions {
  /** A frame still incomplete this long after its first fragment is given up, ms. */
  timeoutMs?: number;
  /** Most frames held incomplete at once per track. */
  maxPending?: number;
  /** Largest frame accepted, bytes. */
  maxFrameBytes?: number;
}

/**
 * Rebuilds frames from datagram fragments, per (source, track, layer). Late and duplicate fragments
 * are dropped; a frame older than the newest one delivered is never delivered. `lost` counts
 * frames given up on, which is the receiver's cue to ask for a keyframe.
 */
/** An incomplete frame's key: its sequence space and sequence. */
const pendingKey = (streamKey: number, sequence: number) => `${streamKey}:${sequence}`;

export class Reassembler {
  private pending = new Map<string, Pending>();
  private lastDelivered = new Map<number, number>();
  lost = 0;
  late = 0;
  /** Fragments rebuilt from parity. */
  repaired = 0;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly maxFrameBytes: number;

  constructor(opts: ReassemblerOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.maxPending = opts.maxPending ?? 64;
    this.maxFrameBytes = opts.maxFrameBytes ?? 8 * 1024 * 1024;
  }

  /** Feeds one datagram; returns the frame it completes, if any. */
  push(datagram: Uint8Array, now = Date.now()): MediaFrame | undefined {
    const h = readHeader(datagram);
    const streamKey = streamKeyOf(h);
    const last = this.lastDelivered.get(streamKey);
    const resent = (h.flags & Flag.retransmission) !== 0;
    const parity = (h.flags & Flag.parity) !== 0;
    const key = pendingKey(streamKey, h.sequence);
    // Parity of a frame overtaken but still pending can complete it, like a retransmission.
    if (last !== undefined && !seqNewer(h.sequence, last) && !resent && !(parity && this.pending.has(key))) {
      if (!parity) this.late++;
      return undefined;
    }
    const body = datagram.subarray(HEADER_BYTES);
    if (parity && (h.fragmentCount < 2 || body.length < 2)) return undefined;
    if (!parity && h.fragmentCount === 1) return this.deliver(streamKey, h, body.slice());
    let p = this.pending.get(key);
    if (!p) {
      this.expire(now);
      if (this.pending.size >= this.maxPending) this.dropOldest();
      p = { header: parity ? { ...h, flags: h.flags & ~Flag.parity } : h, parts: new Array(h.fragmentCount), received: 0, bytes: 0, firstAt: now };
      this.pending.set(key, p);
    }
    if (p.header.fragmentCount !== h.fragmentCount) {
      if (!resent || parity) return undefined;
      // Re-sent cut to another size (the path's datagram size shrank): start over with it.
      p = { header: h, parts: new Array(h.fragmentCount), received: 0, bytes: 0, firstAt: now, overtaken: p.overtaken };
      this.pending.set(key, p);
    }
    if (parity) {
      (p.parity ??= new Map()).set(h.fragmentIndex, body.slice());
    } else {
      if (p.parts[h.fragmentIndex]) return undefined;
      p.parts[h.fragmentIndex] = body.slice();
      p.received++;
      p.bytes += body.length;
      if (h.fragmentIndex === 0) p.header = h;
    }
    p.lastAt = now;
    if (p.received < h.fragmentCount && p.parity) this.repair(p);
    if (p.bytes > this.maxFrameBytes) {
      this.pending.delete(key);
      this.lost++;
      return undefined;
    }
    if (p.received < h.fragmentCount) return undefined;
    this.pending.delete(key);
    if (p.overtaken) this.lost--; // not lost after all
    const payload = new Uint8Array(p.bytes);
    let off = 0;
    for (const part of p.parts) {
      payload.set(part!, off);
      off += part!.length;
    }
    return this.deliver(streamKey, p.header, payload);
  }

  /** Rebuilds the one fragment missing from a parity group, for each group that lacks only one. */
  private repair(p: Pending): void {
    const n = p.parts.length;
    const g = parityGroupSize(n);
    for (const [start, par] of p.parity!) {
      if (start % g !== 0 || start >= n) continue;
      const end = Math.min(n, start + g);
      let missing = -1;
      let lengths = (par[0]! << 8) | par[1]!;
      let gaps = 0;
      for (let i = start; i < end; i++) {
        const part = p.parts[i];
        if (part) lengths ^= part.length;
        else {
          missing = i;
          gaps++;
        }
      }
      if (gaps === 0) p.parity!.delete(start);
      if (gaps !== 1) continue;
      const x = par.subarray(2);
      if (lengths > x.length) continue; // not this group's parity (a cut of another size)
      const out = x.slice(0, lengths);
      for (let i = start; i < end; i++) {
        const part = p.parts[i];
        if (!part) continue;
        for (let j = 0; j < Math.min(lengths, part.length); j++) out[j]! ^= part[j]!;
      }
      p.parts[missing] = out;
      p.received++;
      p.bytes += out.length;
      p.parity!.delete(start);
      this.repaired++;
    }
  }

  /**
   * A keyframe of `streamKey` at `sequence` is partly here (some fragments arrived, the rest is
   * missing or being re-sent): worth waiting for, since nothing after it decodes without it.
   */
  partialKeyframe(streamKey: number, sequence: number, now = Date.now()): boolean {
    const p = this.pending.get(pendingKey(streamKey, sequence));
    return p !== undefined && (p.header.flags & Flag.keyframe) !== 0 && now - p.firstAt <= this.timeoutMs;
  }

  /** The fragment indices an incomplete frame still lacks (undefined: nothing of it here). */
  missingFragments(streamKey: number, sequence: number): number[] | undefined {
    const p = this.pending.get(pendingKey(streamKey, sequence));
    if (!p) return undefined;
    const out: number[] = [];
    for (let i = 0; i < p.parts.length; i++) if (!p.parts[i]) out.push(i);
    return out;
  }

  /** When the latest new fragment of an incomplete frame arrived (undefined: nothing of it here). */
  lastFragmentAt(streamKey: number, sequence: number): number | undefined {
    return this.pending.get(pendingKey(streamKey, sequence))?.lastAt;
  }

  /** Gives up frames older than the timeout; returns how many were given up. */
  expire(now = Date.now()): number {
    let n = 0;
    for (const [key, p] of this.pending) {
      if (now - p.firstAt > this.timeoutMs) {
        this.pending.delete(key);
        if (!p.overtaken) n++;
      }
    }
    this.lost += n;
    return n;
  }

  private deliver(streamKey: number, header: MediaHeader, payload: Uint8Array): MediaFrame {
    const last = this.lastDelivered.get(streamKey);
    if (last !== undefined && !seqNewer(header.sequence, last)) {
      // A retransmission filling an old gap: the order buffer downstream puts it in place.
      return { header: { ...header, fragmentIndex: 0, fragmentCount: 1 }, payload };
    }
    this.lastDelivered.set(streamKey, header.sequence);
    // Older incomplete frames of this track missed their turn: lost, unless a retransmission
    // (asked for by nack) brings the fragments they lack. Their parts are kept until then, so
    // a re-sent frame completes with the fragments it lacks instead of needing all of them again.
    for (const p of this.pending.values()) {
      if (p.overtaken || streamKeyOf(p.header) !== streamKey || seqNewer(p.header.sequence, header.sequence)) continue;
      p.overtaken = true;
      this.lost++;
    }
    return { header: { ...header, fragmentIndex: 0, fragmentCount: 1 }, payload };
  }

  private dropOldest(): void {
    const first = this.pending.keys().next();
    if (!first.done) {
      if (!this.pending.get(first.value)!.overtaken) this.lost++;
      this.pending.delete(first.value);
    }
  }
}
