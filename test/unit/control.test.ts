import { test } from "uvu";
import * as assert from "uvu/assert";
import { Packr } from "msgpackr";
import {
  decodeNodeMessage, decodeTerminalMessage, encodeControl, MAX_CONTROL_BYTES, ProtocolError,
  type NodeMessage, type TerminalMessage,
} from "../../src/protocol/control.ts";

const member = { terminalId: "trm_a", role: "requester", slot: 1 } as const;

const terminalMessages: TerminalMessage[] = [
  { t: "join", v: 1, token: "a.b.c", sdk: "huizhen-test" },
  { t: "ping", n: 7, ts: 123.5 },
  { t: "keyframe-request", track: 1, slot: 2 },
  { t: "signal", kind: "still-request", body: { w: 1920 }, to: 2 },
  { t: "stats", report: { kbpsIn: 2400, resolution: "1280x720" } },
  { t: "bye" },
];
const nodeMessages: NodeMessage[] = [
  {
    t: "welcome", v: 1, sessionId: "s1", consultationId: "cns_1", groupId: "grp_1", self: member,
    members: [member], maxDatagramSize: 1200, pingIntervalMs: 2000,
  },
  { t: "connected", members: [member, { terminalId: "trm_b", role: "consultant", slot: 2 }] },
  { t: "peer-joined", member },
  { t: "peer-left", member, reason: "bye" },
  { t: "pong", n: 7 },
  { t: "peer-stats", from: 2, report: { lossPct: 0.3 } },
  { t: "ended", reason: "consultationEnded" },
  { t: "error", code: "tokenExpired", message: "expired" },
];

test("every terminal message survives a round trip", () => {
  for (const m of terminalMessages) assert.equal(decodeTerminalMessage(encodeControl(m)), m);
});

test("every node message survives a round trip", () => {
  for (const m of nodeMessages) assert.equal(decodeNodeMessage(encodeControl(m)), m);
});

const packr = new Packr({ useRecords: false });
const bad: [string, unknown][] = [
  ["not a map", [1, 2, 3]],
  ["unknown type", { t: "hack" }],
  ["prototype key as type", { t: "__proto__" }],
  ["join without token", { t: "join", v: 1 }],
  ["join with numeric token", { t: "join", v: 1, token: 5 }],
  ["join with huge token", { t: "join", v: 1, token: "x".repeat(9000) }],
  ["ping with negative n", { t: "ping", n: -1 }],
  ["keyframe-request with track 300", { t: "keyframe-request", track: 300 }],
  ["signal without kind", { t: "signal", body: 1 }],
  ["stats with nested object", { t: "stats", report: { a: { b: 1 } } }],
  ["null", null],
  ["string", "join"],
];

test("malformed terminal messages are refused with ProtocolError", () => {
  for (const [name, value] of bad) {
    assert.throws(() => decodeTerminalMessage(packr.pack(value)), (e: unknown) => e instanceof ProtocolError, name);
  }
});

test("a node message is not accepted where a terminal message is expected", () => {
  assert.throws(() => decodeTerminalMessage(encodeControl(nodeMessages[0]!)), (e: unknown) => e instanceof ProtocolError);
  assert.throws(() => decodeNodeMessage(encodeControl({ t: "join", v: 1, token: "x" })), (e: unknown) => e instanceof ProtocolError);
});

test("bytes that are not msgpack, and oversized messages, are refused", () => {
  assert.throws(() => decodeTerminalMessage(new Uint8Array([0xc1, 0xc1, 0xc1])), (e: unknown) => e instanceof ProtocolError);
  assert.throws(() => decodeTerminalMessage(new Uint8Array(MAX_CONTROL_BYTES + 1)), (e: unknown) => e instanceof ProtocolError);
  assert.throws(() => decodeTerminalMessage(new Uint8Array(0)), (e: unknown) => e instanceof ProtocolError);
});

test.run();
