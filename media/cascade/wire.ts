// The node-to-node cascade link's wire format. One WebTransport session per node pair (path
// `/v1/cascade`, opened by the dialing node) carries every cascaded group of the pair:
// - control: one bidirectional stream (the dialer opens it), length-framed msgpack messages
//   below; each group on the link has a 16-bit `tag` the dialer picks at `attach`;
// - media datagrams: u16 tag · the media datagram exactly as the relay forwards it (header
//   slot stamped with the publishing terminal's slot, the same on both nodes);
// - reliable media objects: one unidirectional stream per direction, length-framed
//   u16 tag · object.
// Media stays opaque: nothing here parses more than the tag.
import { Packr } from "msgpackr";
import { isNackParts } from "../../src/protocol/control.ts";

export type LinkMessage =
  | { t: "attach"; tag: number; gid: string; token: string }
  | { t: "attached"; tag: number }
  | { t: "refused"; tag: number; reason: string }
  /** A terminal of the group is (no longer) present on the sender's node, with the largest datagram it takes. */
  | { t: "member"; tag: number; terminalId: string; present: boolean; maxDatagramSize?: number }
  /**
   * Terminal `from` (on the sender's node) asks publisher `to` (on the receiver's) for a keyframe
   * (no `sequences`) or retransmission. `layer` is the simulcast layer, with the meaning it has in
   * `keyframe-request` / `nack`: absent means every layer for a keyframe, layer 0 for a
   * retransmission (what a peer that predates simulcast sends; such a peer ignores the field).
   */
  | { t: "ask"; tag: number; from: number; to: number; track: number; sequences?: number[]; layer?: number; /** With `sequences`: the nack's missing fragments per sequence. */ parts?: number[][] }
  | { t: "ping"; n: number }
  | { t: "pong"; n: number };

export class LinkProtocolError extends Error {
  override name = "LinkProtocolError";
}

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });
export const MAX_LINK_CONTROL_BYTES = 16 * 1024;

export function encodeLink(m: LinkMessage): Uint8Array {
  return packr.pack(m);
}

const u16 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff;
const u8 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xff;
const id = (v: unknown) => typeof v === "string" && v.length > 0 && v.length <= 128;

export function decodeLink(bytes: Uint8Array): LinkMessage {
  let m: Record<string, unknown>;
  try {
    m = packr.unpack(bytes) as Record<string, unknown>;
  } catch {
    throw new LinkProtocolError("link message is not msgpack");
  }
  if (!m || typeof m !== "object") throw new LinkProtocolError("link message is not a map");
  const ok = (() => {
    switch (m.t) {
      case "attach": return u16(m.tag) && id(m.gid) && typeof m.token === "string" && (m.token as string).length < 4096;
      case "attached": return u16(m.tag);
      case "refused": return u16(m.tag) && typeof m.reason === "string";
      case "member": return u16(m.tag) && id(m.terminalId) && typeof m.present === "boolean" && (m.maxDatagramSize === undefined || (u16(m.maxDatagramSize) && (m.maxDatagramSize as number) >= 200));
      case "ask": return u16(m.tag) && u8(m.from) && u8(m.to) && u8(m.track) &&
        (m.sequences === undefined || (Array.isArray(m.sequences) && m.sequences.length <= 256 && m.sequences.every((s) => Number.isInteger(s) && s >= 0 && s <= 0xffffffff))) &&
        (m.layer === undefined || (Number.isInteger(m.layer) && (m.layer as number) >= 0 && (m.layer as number) <= 3)) &&
        (m.parts === undefined || (Array.isArray(m.sequences) && isNackParts(m.parts, m.sequences.length)));
      case "ping": case "pong": return Number.isInteger(m.n);
      default: return false;
    }
  })();
  if (!ok) throw new LinkProtocolError(`malformed link message ${String(m.t).slice(0, 20)}`);
  return m as unknown as LinkMessage;
}

/** `tag` · `body` (a datagram or an object). */
export function tagged(tag: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + body.length);
  out[0] = tag >> 8;
  out[1] = tag & 0xff;
  out.set(body, 2);
  return out;
}

export function untag(bytes: Uint8Array): { tag: number; body: Uint8Array } | undefined {
  if (bytes.length < 3) return undefined;
  return { tag: (bytes[0]! << 8) | bytes[1]!, body: bytes.subarray(2) };
}
