// A frame that missed a fragment and was overtaken by a newer one keeps its other fragments:
// the copy re-sent after a nack then completes it with the fragments it lacks, instead of
// needing every fragment to arrive again (at 6% loss an 11-fragment keyframe arrives whole only
// half the time). Pure: the reassembler alone, no network.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Flag, fragmentFrame, Reassembler, type MediaHeader } from "../../src/protocol/media.ts";

const base: Omit<MediaHeader, "fragmentIndex" | "fragmentCount"> = { flags: Flag.keyframe, track: 1, source: 2, sequence: 7, timestamp: 1 };
const payload = (n: number) => new Uint8Array(n).map((_, i) => (i * 13) & 0xff);
const resent = (h: typeof base) => ({ ...h, flags: h.flags | Flag.retransmission });

test("an overtaken frame is completed by the re-sent fragments it lacks, and is then not counted lost", () => {
  const r = new Reassembler();
  const p = payload(11 * 1100);
  const first = fragmentFrame(base, p, 1200);
  first.forEach((d, i) => { if (i !== 4) assert.is(r.push(d), undefined); }); // fragment 4 lost
  const next = fragmentFrame({ ...base, flags: 0, sequence: 8 }, payload(500), 1200);
  assert.ok(r.push(next[0]!), "the newer frame is delivered");
  assert.is(r.lost, 1, "the older one missed its turn");
  const again = fragmentFrame(resent(base), p, 1200);
  // Of the re-sent copy only fragment 4 arrives (the others are lost this time).
  const done = r.push(again[4]!);
  assert.ok(done, "completed by the one fragment it lacked");
  assert.equal(done!.payload, p);
  assert.is(done!.header.sequence, 7);
  assert.is(r.lost, 0);
});

test("a re-sent copy cut to a smaller datagram size replaces the partial frame", () => {
  const r = new Reassembler();
  const p = payload(5900);
  const first = fragmentFrame(base, p, 1200);
  r.push(first[0]!);
  r.push(fragmentFrame({ ...base, flags: 0, sequence: 8 }, payload(100), 1200)[0]!);
  const again = fragmentFrame(resent(base), p, 1100);
  assert.ok(again.length !== first.length);
  let done;
  for (const d of again) done = r.push(d) ?? done;
  assert.ok(done);
  assert.equal(done!.payload, p);
  assert.is(r.lost, 0);
});

test("fragments of an overtaken frame that are not re-sent copies are still late", () => {
  const r = new Reassembler();
  const first = fragmentFrame(base, payload(3000), 1200);
  r.push(first[0]!);
  r.push(fragmentFrame({ ...base, flags: 0, sequence: 8 }, payload(100), 1200)[0]!);
  assert.is(r.push(first[1]!), undefined);
  assert.is(r.push(first[2]!), undefined);
  assert.is(r.late, 2);
  assert.is(r.lost, 1);
});

test.run();
