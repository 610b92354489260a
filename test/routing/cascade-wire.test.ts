// The cascade link's control messages (media/cascade/wire.ts): the simulcast layer on `ask`, and
// compatibility with a peer that predates it (no `layer`: every layer for a keyframe, layer 0
// for a retransmission, as before).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Packr } from "msgpackr";
import { decodeLink, encodeLink, LinkProtocolError, type LinkMessage } from "../../media/cascade/wire.ts";

// Encoded the way the link does, so "a peer that omits the field" is the same bytes an older node sends.
const pack = (m: Record<string, unknown>) => new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true }).pack(m);

test("cascade wire: an ask keeps its layer across encode/decode", () => {
  const nack: LinkMessage = { t: "ask", tag: 3, from: 1, to: 0, track: 1, sequences: [7, 8], layer: 1 };
  const kf: LinkMessage = { t: "ask", tag: 3, from: 1, to: 0, track: 1, layer: 0 };
  assert.equal(decodeLink(encodeLink(nack)), nack);
  const partial: LinkMessage = { t: "ask", tag: 3, from: 1, to: 0, track: 1, sequences: [7, 8], parts: [[2], []] };
  assert.equal(decodeLink(encodeLink(partial)), partial);
  assert.throws(() => decodeLink(encodeLink({ ...partial, parts: [[2]] } as LinkMessage)), "parts must match the sequences");
  // Layer 0 is kept, not dropped: for a keyframe it means the lowest layer, not every layer.
  const back = decodeLink(encodeLink(kf));
  assert.equal(back, kf);
  assert.is((back as { layer?: number }).layer, 0);
});

test("cascade wire: an ask without layer (a peer predating simulcast) still decodes, layer absent", () => {
  const old = decodeLink(pack({ t: "ask", tag: 3, from: 1, to: 0, track: 1, sequences: [7] }));
  assert.is(old.t, "ask");
  assert.ok(!("layer" in old));
  const oldKf = decodeLink(pack({ t: "ask", tag: 3, from: 1, to: 0, track: 1 }));
  assert.ok(!("layer" in oldKf));
});

test("cascade wire: a layer outside 0..3 or not an integer is refused", () => {
  for (const layer of [4, -1, 1.5, "1", null]) {
    assert.throws(() => decodeLink(pack({ t: "ask", tag: 3, from: 1, to: 0, track: 1, sequences: [7], layer })), (e: unknown) => e instanceof LinkProtocolError, `layer ${String(layer)}`);
  }
});

test.run();
