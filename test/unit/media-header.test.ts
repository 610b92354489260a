import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  encodeObject, Flag, fragmentFrame, HEADER_BYTES, layerOf, MediaHeaderError, peekTrack, readHeader,
  Reassembler, seqNewer, withLayer, writeHeader,
} from "../../src/protocol/media.ts";

const base = { flags: Flag.keyframe, track: 1, source: 0, sequence: 42, timestamp: 1_700_000_000_123_456 };

function payloadOf(n: number, seed = 1): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

test("header round trip at fixed offsets", () => {
  const b = new Uint8Array(HEADER_BYTES);
  writeHeader(b, { ...base, fragmentIndex: 3, fragmentCount: 9 });
  assert.equal(b[0], 1);
  assert.equal(b[1], Flag.keyframe);
  assert.equal(b[2], 1);
  assert.equal(Array.from(b.subarray(4, 8)), [0, 0, 0, 42]);
  assert.equal(readHeader(b), { ...base, fragmentIndex: 3, fragmentCount: 9 });
  assert.is(peekTrack(b), 1);
});

test("malformed headers are refused", () => {
  const ok = encodeObject(base, new Uint8Array(4));
  const short = ok.subarray(0, HEADER_BYTES - 1);
  assert.throws(() => readHeader(short), (e: unknown) => e instanceof MediaHeaderError);
  assert.is(peekTrack(short), -1);
  const badVersion = ok.slice(); badVersion[0] = 9;
  assert.throws(() => readHeader(badVersion), (e: unknown) => e instanceof MediaHeaderError);
  assert.is(peekTrack(badVersion), -1);
  const zeroCount = ok.slice(); zeroCount[10] = 0; zeroCount[11] = 0;
  assert.throws(() => readHeader(zeroCount), (e: unknown) => e instanceof MediaHeaderError);
  assert.is(peekTrack(zeroCount), -1);
  const indexPastCount = ok.slice(); indexPastCount[9] = 5;
  assert.throws(() => readHeader(indexPastCount), (e: unknown) => e instanceof MediaHeaderError);
  const nanTime = ok.slice(); new DataView(nanTime.buffer).setFloat64(12, NaN);
  assert.throws(() => readHeader(nanTime), (e: unknown) => e instanceof MediaHeaderError);
});

test("layer bits", () => {
  const f = withLayer(Flag.keyframe, 2);
  assert.is(layerOf(f), 2);
  assert.is(f & Flag.keyframe, Flag.keyframe);
  assert.is(layerOf(withLayer(f, 0)), 0);
});

test("a frame fragments within the datagram size and reassembles out of order", () => {
  const p = payloadOf(30_000);
  const parts = fragmentFrame(base, p, 1200);
  assert.ok(parts.every((d) => d.length <= 1200));
  assert.is(parts.length, Math.ceil(30_000 / (1200 - HEADER_BYTES)));
  const r = new Reassembler();
  const shuffled = [...parts].reverse();
  let got;
  for (const d of shuffled) got = r.push(d) ?? got;
  assert.ok(got);
  assert.equal(got!.payload, p);
  assert.is(got!.header.sequence, 42);
  assert.is(r.lost, 0);
});

test("duplicates are ignored and older frames are never delivered after newer ones", () => {
  const r = new Reassembler();
  const a = fragmentFrame({ ...base, sequence: 1 }, payloadOf(3000, 1), 1200);
  const b = fragmentFrame({ ...base, sequence: 2 }, payloadOf(3000, 2), 1200);
  r.push(a[0]!);
  r.push(a[0]!); // duplicate
  for (const d of b) r.push(d);
  // frame 1 completes only after frame 2 was delivered: dropped as late
  assert.is(r.push(a[1]!), undefined);
  assert.is(r.push(a[2]!), undefined);
  assert.is(r.lost, 1);
});

test("incomplete frames expire and count as lost", () => {
  const r = new Reassembler({ timeoutMs: 100 });
  const a = fragmentFrame({ ...base, sequence: 5 }, payloadOf(5000), 1200);
  r.push(a[0]!, 1000);
  assert.is(r.expire(1050), 0);
  assert.is(r.expire(1200), 1);
  assert.is(r.lost, 1);
});

test("tracks and sources reassemble independently", () => {
  const r = new Reassembler();
  const audio = encodeObject({ ...base, track: 0, sequence: 9 }, payloadOf(100));
  const video = fragmentFrame({ ...base, track: 1, sequence: 3 }, payloadOf(2500), 1200);
  assert.ok(r.push(audio));
  let v;
  for (const d of video) v = r.push(d) ?? v;
  assert.ok(v);
  const other = encodeObject({ ...base, track: 0, source: 2, sequence: 1 }, payloadOf(10));
  assert.ok(r.push(other), "another source's lower sequence is not late");
});

test("sequence comparison wraps", () => {
  assert.ok(seqNewer(1, 0));
  assert.ok(seqNewer(0, 0xffffffff));
  assert.not.ok(seqNewer(0xffffffff, 0));
  assert.not.ok(seqNewer(5, 5));
});

test("fragmentFrame refuses sizes that leave no room", () => {
  assert.throws(() => fragmentFrame(base, payloadOf(10), 40), (e: unknown) => e instanceof RangeError);
});

test.run();
