// Clinical stills: one terminal asks, the other takes a full-resolution picture of its camera
// and sends it losslessly (the camera's own JPEG from ImageCapture.takePhoto, else a PNG of a
// full-size frame), cut in chunks so the receiver can show progress and ask again for any chunk
// that did not arrive (signal `still-nack`): lossless on the datagram path as well.
// Payload on the still track: byte 0 = kind; request: u32 id; chunk: see `chunkPayload`.

const KIND_REQUEST = 0;
const KIND_CHUNK = 1;
/** One chunk is one media object: small enough to travel as ~12 datagrams when need be. */
export const STILL_CHUNK_BYTES = 14 * 1024;
/** Largest still accepted, bytes. */
export const MAX_STILL_BYTES = 32 * 1024 * 1024;

export interface StillRequest { kind: "request"; id: number }
export interface StillChunk {
  kind: "chunk"; id: number; index: number; count: number; total: number;
  mime: string; width: number; height: number; data: Uint8Array;
}

export function requestPayload(id: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = KIND_REQUEST;
  new DataView(out.buffer).setUint32(1, id);
  return out;
}

export function chunkPayload(c: Omit<StillChunk, "kind">): Uint8Array {
  const mime = new TextEncoder().encode(c.mime);
  const head = 1 + 4 + 2 + 2 + 4 + 1 + mime.length + 4;
  const out = new Uint8Array(head + c.data.length);
  const dv = new DataView(out.buffer);
  out[0] = KIND_CHUNK;
  dv.setUint32(1, c.id);
  dv.setUint16(5, c.index);
  dv.setUint16(7, c.count);
  dv.setUint32(9, c.total);
  out[13] = mime.length;
  out.set(mime, 14);
  dv.setUint16(14 + mime.length, c.width);
  dv.setUint16(16 + mime.length, c.height);
  out.set(c.data, head);
  return out;
}

export function parseStill(p: Uint8Array): StillRequest | StillChunk | undefined {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (p[0] === KIND_REQUEST && p.length >= 5) return { kind: "request", id: dv.getUint32(1) };
  if (p[0] !== KIND_CHUNK || p.length < 18) return undefined;
  const n = p[13]!;
  if (p.length < 18 + n) return undefined;
  return {
    kind: "chunk", id: dv.getUint32(1), index: dv.getUint16(5), count: dv.getUint16(7), total: dv.getUint32(9),
    mime: new TextDecoder().decode(p.subarray(14, 14 + n)),
    width: dv.getUint16(14 + n), height: dv.getUint16(16 + n), data: p.subarray(18 + n),
  };
}

export interface StillImage {
  id: number;
  blob: Blob;
  mime: string;
  width: number;
  height: number;
  bytes: number;
}

interface ImageCaptureLike { takePhoto(): Promise<Blob> }

/** Takes the still: the camera's photo when it can, else a PNG of one full-size frame. */
export async function captureStill(track: MediaStreamTrack, grabFrame: () => Promise<VideoFrame>): Promise<Omit<StillImage, "id">> {
  const IC = (globalThis as { ImageCapture?: new (t: MediaStreamTrack) => ImageCaptureLike }).ImageCapture;
  if (IC) {
    try {
      const photo = await Promise.race([
        new IC(track).takePhoto(),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error("takePhoto timed out")), 4000)),
      ]);
      const bmp = await createImageBitmap(photo);
      const out = { blob: photo, mime: photo.type || "image/jpeg", width: bmp.width, height: bmp.height, bytes: photo.size };
      bmp.close();
      return out;
    } catch { /* camera without photo support: grab a frame */ }
  }
  const frame = await grabFrame();
  try {
    const canvas = new OffscreenCanvas(frame.displayWidth, frame.displayHeight);
    canvas.getContext("2d")!.drawImage(frame, 0, 0);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return { blob, mime: "image/png", width: frame.displayWidth, height: frame.displayHeight, bytes: blob.size };
  } finally {
    frame.close();
  }
}

/** Cuts a still into chunk payloads. */
export async function stillChunks(id: number, still: Omit<StillImage, "id">): Promise<Uint8Array[]> {
  const bytes = new Uint8Array(await still.blob.arrayBuffer());
  const count = Math.max(1, Math.ceil(bytes.length / STILL_CHUNK_BYTES));
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    out.push(chunkPayload({
      id, index: i, count, total: bytes.length, mime: still.mime, width: still.width, height: still.height,
      data: bytes.subarray(i * STILL_CHUNK_BYTES, (i + 1) * STILL_CHUNK_BYTES),
    }));
  }
  return out;
}

/** Puts chunks back together; one still at a time per id. */
export class StillAssembler {
  private parts = new Map<number, { chunks: Uint8Array[]; got: number; bytes: number; first: StillChunk }>();

  /** Chunk indices not yet received of an incomplete still (for a retransmission request). */
  missing(id: number, max = 256): { count: number; indices: number[] } | undefined {
    const p = this.parts.get(id);
    if (!p) return undefined;
    const indices: number[] = [];
    for (let i = 0; i < p.first.count && indices.length < max; i++) if (!p.chunks[i]) indices.push(i);
    return { count: p.first.count, indices };
  }

  /** Returns progress, and the image when the last chunk arrived. */
  push(c: StillChunk): { id: number; received: number; total: number; image?: StillImage } | undefined {
    if (c.total > MAX_STILL_BYTES || c.count === 0 || c.index >= c.count) return undefined;
    let p = this.parts.get(c.id);
    if (!p) {
      if (this.parts.size > 4) this.parts.clear();
      p = { chunks: new Array(c.count), got: 0, bytes: 0, first: c };
      this.parts.set(c.id, p);
    }
    if (p.chunks[c.index] || c.count !== p.first.count) return undefined;
    p.chunks[c.index] = c.data.slice();
    p.got++;
    p.bytes += c.data.length;
    if (p.got < c.count) return { id: c.id, received: p.bytes, total: c.total };
    this.parts.delete(c.id);
    const blob = new Blob(p.chunks as BlobPart[], { type: c.mime });
    return {
      id: c.id, received: p.bytes, total: c.total,
      image: { id: c.id, blob, mime: c.mime, width: c.width, height: c.height, bytes: blob.size },
    };
  }
}
