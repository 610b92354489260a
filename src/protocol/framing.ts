// Length-prefixed framing for streams. Deno's WebTransport never delivers a stream's FIN
// reliably, so every message carries its own length and nothing waits for stream end.

export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export class FramingError extends Error {
  override name = "FramingError";
}

/** Prefixes `payload` with its length (u32, big endian). */
export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

/**
 * Accumulates stream chunks and yields whole frames. Refuses a declared length above
 * `maxFrame` before buffering it, so a peer cannot make us allocate at will.
 */
export class FrameDecoder {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;

  constructor(private readonly maxFrame = MAX_FRAME_BYTES) {}

  push(chunk: Uint8Array): Uint8Array[] {
    this.append(chunk);
    const frames: Uint8Array[] = [];
    while (this.end - this.start >= 4) {
      const len = new DataView(this.buf.buffer, this.buf.byteOffset + this.start, 4).getUint32(0);
      if (len > this.maxFrame) throw new FramingError(`frame of ${len} bytes exceeds ${this.maxFrame}`);
      if (this.end - this.start < 4 + len) break;
      frames.push(this.buf.slice(this.start + 4, this.start + 4 + len));
      this.start += 4 + len;
    }
    if (this.start === this.end) this.start = this.end = 0;
    return frames;
  }

  /** Bytes held for an incomplete frame. */
  get pending(): number {
    return this.end - this.start;
  }

  private append(chunk: Uint8Array): void {
    const need = this.end - this.start + chunk.length;
    if (this.end + chunk.length > this.buf.length) {
      const next = new Uint8Array(Math.max(need * 2, 4096));
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.end -= this.start;
      this.start = 0;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }
}

/** Reads whole frames from a byte stream until it ends, errors or `signal` aborts. */
export async function* readFrames(
  readable: ReadableStream<Uint8Array>,
  maxFrame = MAX_FRAME_BYTES,
): AsyncGenerator<Uint8Array> {
  const reader = readable.getReader();
  const decoder = new FrameDecoder(maxFrame);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const f of decoder.push(value)) yield f;
    }
  } finally {
    reader.releaseLock();
  }
}
