import { test } from "uvu";
import * as assert from "uvu/assert";
import { frame, FrameDecoder, FramingError, readFrames } from "../../src/protocol/framing.ts";

test("frames split across arbitrary chunk boundaries come out whole", () => {
  const msgs = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(70_000).fill(7), new Uint8Array([9])];
  const wire = new Uint8Array(msgs.reduce((s, m) => s + m.length + 4, 0));
  let off = 0;
  for (const m of msgs) { const f = frame(m); wire.set(f, off); off += f.length; }
  for (const step of [1, 3, 4, 5, 1000, wire.length]) {
    const d = new FrameDecoder();
    const out: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i += step) out.push(...d.push(wire.subarray(i, i + step)));
    assert.equal(out, msgs, `chunk size ${step}`);
    assert.is(d.pending, 0);
  }
});

test("a declared length above the limit is refused before buffering", () => {
  const d = new FrameDecoder(1024);
  const header = new Uint8Array([0, 0, 0x10, 0]); // 4096
  assert.throws(() => d.push(header), (e: unknown) => e instanceof FramingError);
});

test("readFrames yields frames from a stream", async () => {
  const parts = [frame(new Uint8Array([1])), frame(new Uint8Array([2, 2]))];
  const stream = new ReadableStream<Uint8Array>({
    start(c) { for (const p of parts) c.enqueue(p); c.close(); },
  });
  const got: number[][] = [];
  for await (const f of readFrames(stream)) got.push(Array.from(f));
  assert.equal(got, [[1], [2, 2]]);
});

test.run();
