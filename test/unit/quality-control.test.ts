// The control messages of the quality work (docs/protocol.md §11): round trips and refusals.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Packr } from "msgpackr";
import { decodeNodeMessage, decodeTerminalMessage, encodeControl, ProtocolError } from "../../src/protocol/control.ts";

test("receive-report, skip and quality round-trip", () => {
  const rr = { t: "receive-report", slot: 2, intervalMs: 300, bytes: 37_500, loss: 0.031, delayMs: 12.5, jitterMs: 1.2, rttMs: 40 } as const;
  assert.equal(decodeTerminalMessage(encodeControl({ ...rr })), rr);
  const minimal = { t: "receive-report", slot: 2, intervalMs: 300, bytes: 0, loss: 0, delayMs: 0 } as const;
  assert.equal(decodeTerminalMessage(encodeControl({ ...minimal })), minimal);
  const skip = { t: "skip", slot: 1, track: 1, sequences: [7, 4294967295], discardable: true } as const;
  assert.equal(decodeNodeMessage(encodeControl({ ...skip, sequences: [...skip.sequences] })), skip);
  const q = { t: "quality", slot: 2, direction: "send", estimateKbps: 950, kbps: 800, loss: 0.02, delayMs: 3, targetKbps: 950, rttMs: 12, dropped: 3 } as const;
  assert.equal(decodeNodeMessage(encodeControl({ ...q })), q);
});

test("malformed quality messages are refused", () => {
  const packr = new Packr({ useRecords: false });
  const bad: [string, unknown, "t" | "n"][] = [
    ["loss above 1", { t: "receive-report", slot: 2, intervalMs: 300, bytes: 1, loss: 1.5, delayMs: 0 }, "t"],
    ["negative delay", { t: "receive-report", slot: 2, intervalMs: 300, bytes: 1, loss: 0, delayMs: -1 }, "t"],
    ["slot out of range", { t: "receive-report", slot: 300, intervalMs: 300, bytes: 1, loss: 0, delayMs: 0 }, "t"],
    ["interval too long", { t: "receive-report", slot: 2, intervalMs: 120_000, bytes: 1, loss: 0, delayMs: 0 }, "t"],
    ["bytes not an integer", { t: "receive-report", slot: 2, intervalMs: 300, bytes: 1.5, loss: 0, delayMs: 0 }, "t"],
    ["rtt NaN", { t: "receive-report", slot: 2, intervalMs: 300, bytes: 1, loss: 0, delayMs: 0, rttMs: NaN }, "t"],
    ["skip without sequences", { t: "skip", slot: 1, track: 1, sequences: [], discardable: true }, "n"],
    ["skip of 65 sequences", { t: "skip", slot: 1, track: 1, sequences: Array.from({ length: 65 }, (_, i) => i), discardable: true }, "n"],
    ["skip without discardable", { t: "skip", slot: 1, track: 1, sequences: [1] }, "n"],
    ["quality with another direction", { t: "quality", slot: 1, direction: "both", estimateKbps: 1, kbps: 1, loss: 0, delayMs: 0 }, "n"],
    ["quality with a string target", { t: "quality", slot: 1, direction: "send", estimateKbps: 1, kbps: 1, loss: 0, delayMs: 0, targetKbps: "x" }, "n"],
    ["a terminal sending quality", { t: "quality", slot: 1, direction: "send", estimateKbps: 1, kbps: 1, loss: 0, delayMs: 0 }, "t"],
    ["a node sending receive-report", { t: "receive-report", slot: 2, intervalMs: 300, bytes: 1, loss: 0, delayMs: 0 }, "n"],
  ];
  for (const [why, msg, side] of bad) {
    const bytes = packr.pack(msg);
    assert.throws(() => (side === "t" ? decodeTerminalMessage(bytes) : decodeNodeMessage(bytes)), (e: unknown) => e instanceof ProtocolError, why);
  }
});

test.run();
