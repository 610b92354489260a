// The SDK's pure parts, in Node: payload formats inside the opaque media objects, still
// chunking and reassembly with retransmission, and the peer clock estimate.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseVideoPayload } from "../../client/sdk/video.ts";
import { chunkPayload, parseStill, requestPayload, StillAssembler, stillChunks, STILL_CHUNK_BYTES } from "../../client/sdk/still.ts";
import { PeerClock } from "../../client/sdk/clock.ts";

function keyPayload(codec: string, w: number, h: number, data: Uint8Array): Uint8Array {
  const name = new TextEncoder().encode(codec);
  const out = new Uint8Array(6 + name.length + data.length);
  out[0] = 1;
  out[1] = name.length;
  out.set(name, 2);
  new DataView(out.buffer).setUint16(2 + name.length, w);
  new DataView(out.buffer).setUint16(4 + name.length, h);
  out.set(data, 6 + name.length);
  return out;
}

test("video payload: keyframes carry codec and size, deltas only data; junk is refused", () => {
  const k = parseVideoPayload(keyPayload("avc1.640028", 1920, 1080, new Uint8Array([9, 8, 7])))!;
  assert.equal({ ...k, data: [...k.data] }, { keyframe: true, codec: "avc1.640028", width: 1920, height: 1080, data: [9, 8, 7] });
  const d = parseVideoPayload(new Uint8Array([0, 5, 6]))!;
  assert.equal({ keyframe: d.keyframe, data: [...d.data] }, { keyframe: false, data: [5, 6] });
  assert.is(parseVideoPayload(new Uint8Array([7, 1, 2])), undefined, "unknown kind");
  assert.is(parseVideoPayload(new Uint8Array([1, 40, 1])), undefined, "codec name runs past the end");
  assert.is(parseVideoPayload(new Uint8Array([0])), undefined, "too short");
});

test("still: request and chunk round trip", () => {
  assert.equal(parseStill(requestPayload(77)), { kind: "request", id: 77 });
  const c = parseStill(chunkPayload({ id: 3, index: 1, count: 4, total: 100, mime: "image/png", width: 4000, height: 3000, data: new Uint8Array([1, 2]) }));
  assert.ok(c && c.kind === "chunk");
  if (c?.kind === "chunk") {
    assert.equal([c.id, c.index, c.count, c.total, c.mime, c.width, c.height, [...c.data]], [3, 1, 4, 100, "image/png", 4000, 3000, [1, 2]]);
  }
  assert.is(parseStill(new Uint8Array([1, 0, 0])), undefined);
});

test("still: chunks reassemble bit for bit in any order, with the missing ones named", async () => {
  const bytes = new Uint8Array(STILL_CHUNK_BYTES * 3 + 123).map((_, i) => (i * 31 + 7) & 0xff);
  const blob = new Blob([bytes], { type: "image/jpeg" });
  const chunks = await stillChunks(9, { blob, mime: "image/jpeg", width: 1280, height: 720, bytes: bytes.length });
  assert.is(chunks.length, 4);
  const asm = new StillAssembler();
  const parsed = chunks.map((c) => parseStill(c)!);
  let r = asm.push(parsed[3] as any);
  r = asm.push(parsed[0] as any);
  assert.equal(r, { id: 9, received: STILL_CHUNK_BYTES + 123, total: bytes.length });
  assert.equal(asm.missing(9), { count: 4, indices: [1, 2] });
  assert.is(asm.push(parsed[0] as any), undefined, "a duplicate changes nothing");
  asm.push(parsed[2] as any);
  r = asm.push(parsed[1] as any);
  assert.ok(r?.image);
  const got = new Uint8Array(await r!.image!.blob.arrayBuffer());
  assert.equal(got, bytes);
  assert.is(r!.image!.mime, "image/jpeg");
  assert.is(asm.missing(9), undefined, "done with it");
});

test("still: oversized or inconsistent chunks are refused", () => {
  const asm = new StillAssembler();
  const big = parseStill(chunkPayload({ id: 1, index: 0, count: 2, total: 64 * 1024 * 1024, mime: "image/png", width: 1, height: 1, data: new Uint8Array(1) }))!;
  assert.is(asm.push(big as any), undefined);
  const bad = parseStill(chunkPayload({ id: 2, index: 5, count: 2, total: 10, mime: "image/png", width: 1, height: 1, data: new Uint8Array(1) }))!;
  assert.is(asm.push(bad as any), undefined);
});

test("peer clock: offset from the least-delayed probe", () => {
  const clock = new PeerClock();
  // Peer is 5 000 µs ahead. Probe 1: symmetric 2 ms RTT. Probe 2: 40 ms RTT, skewed by queuing.
  clock.add(1_000_000, 1_006_000, 1_002_000);
  clock.add(2_000_000, 2_035_000, 2_040_000);
  assert.is(clock.offsetUs, 5_000);
  assert.is(clock.toLocal(10_005_000), 10_000_000);
  clock.add(3_000_000, 2_000_000, 2_999_000); // negative RTT: ignored
  assert.is(clock.offsetUs, 5_000);
});

test.run();
