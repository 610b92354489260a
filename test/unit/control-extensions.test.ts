// The control fields added for resume and datagram size changes: round trips and refusals.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Packr } from "msgpackr";
import { decodeNodeMessage, decodeTerminalMessage, encodeControl, ProtocolError, type WelcomeMessage } from "../../src/protocol/control.ts";

const member = { terminalId: "trm_a", role: "requester", slot: 1 } as const;

test("join with resume and maxDatagramSize, welcome with resume and expiresAt, datagram-size, bye with reason", () => {
  const join = { t: "join", v: 1, token: "a.b.c", resume: "rs_abc", maxDatagramSize: 1350 } as const;
  assert.equal(decodeTerminalMessage(encodeControl(join)), join);
  const bye = { t: "bye", reason: "user" } as const;
  assert.equal(decodeTerminalMessage(encodeControl(bye)), bye);
  const welcome: WelcomeMessage = {
    t: "welcome", v: 1, sessionId: "s", consultationId: "c", groupId: "g", self: member, members: [member],
    maxDatagramSize: 1200, pingIntervalMs: 2000, resume: "rs_abc", expiresAt: 1_900_000_000,
  };
  assert.equal(decodeNodeMessage(encodeControl(welcome)), welcome);
  assert.equal(decodeNodeMessage(encodeControl({ t: "datagram-size", maxDatagramSize: 1100 })), { t: "datagram-size", maxDatagramSize: 1100 });
  const nack = { t: "nack", track: 1, sequences: [7, 8, 4294967295], slot: 2 } as const;
  assert.equal(decodeTerminalMessage(encodeControl({ ...nack, sequences: [...nack.sequences] })), nack);
  assert.equal(decodeNodeMessage(encodeControl({ ...nack, sequences: [...nack.sequences] })), nack);
  const partial = { t: "nack" as const, track: 1, sequences: [7, 8], slot: 2, parts: [[1, 5], []] };
  assert.equal(decodeTerminalMessage(encodeControl(partial)), partial);
  assert.equal(decodeNodeMessage(encodeControl(partial)), partial);
});

test("malformed extensions are refused", () => {
  const packr = new Packr({ useRecords: false });
  const bad: [string, unknown, "t" | "n"][] = [
    ["resume not a string", { t: "join", v: 1, token: "x", resume: 5 }, "t"],
    ["resume too long", { t: "join", v: 1, token: "x", resume: "r".repeat(200) }, "t"],
    ["negative datagram size", { t: "join", v: 1, token: "x", maxDatagramSize: -1 }, "t"],
    ["bye reason not a string", { t: "bye", reason: 3 }, "t"],
    ["datagram-size missing", { t: "datagram-size" }, "n"],
    ["nack without sequences", { t: "nack", track: 1, sequences: [], slot: 1 }, "t"],
    ["nack without slot", { t: "nack", track: 1, sequences: [1] }, "t"],
    ["nack with too many sequences", { t: "nack", track: 1, sequences: Array.from({ length: 65 }, (_, i) => i), slot: 1 }, "t"],
    ["nack with a negative sequence", { t: "nack", track: 1, sequences: [-1], slot: 1 }, "n"],
    ["nack parts not one per sequence", { t: "nack", track: 1, sequences: [1, 2], slot: 1, parts: [[0]] }, "t"],
    ["nack part index out of range", { t: "nack", track: 1, sequences: [1], slot: 1, parts: [[70000]] }, "n"],
    ["nack parts not lists", { t: "nack", track: 1, sequences: [1], slot: 1, parts: [3] }, "t"],
    ["datagram-size too big", { t: "datagram-size", maxDatagramSize: 70000 }, "n"],
  ];
  for (const [name, v, side] of bad) {
    const decode = side === "t" ? decodeTerminalMessage : decodeNodeMessage;
    assert.throws(() => decode(packr.pack(v)), (e: unknown) => e instanceof ProtocolError, name);
  }
});

test.run();
