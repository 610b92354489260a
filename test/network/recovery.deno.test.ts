// Heavy downlink loss, then a clean path: video must come back (issue 5's stall). Two headless
// terminals (Deno WebTransport) through seeded impairment relays to a real media node process:
// 2 s of 35% loss on both terminals' downlinks, then clean; within 5 s each must decode video
// at ≥ 10 fps again. Before the fix, keyframes cut by the node's deadline or lost on the way
// could leave a direction at 0 fps for good.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { NetworkLab, type TraceEvent } from "./harness.ts";

const t = suite("recovery after heavy loss");
let lab: NetworkLab;
t.before(async () => { lab = await NetworkLab.start(); });
t.after(async () => { await lab?.stop(); });

const clean = { name: "clean" };
const loss35 = { name: "loss35", down: { loss: 0.35 } };

for (const seed of [3, 7, 11]) {
  t(`2 s of 35% downlink loss, then clean: video back at ≥ 10 fps within 5 s (seed ${seed})`, async () => {
    const events: TraceEvent[] = [];
    const r = await lab.call(clean, {
      adaptive: true, durationMs: 10_000, seed,
      changes: [{ atMs: 2000, profile: loss35 }, { atMs: 4000, profile: clean }],
      trace: (e) => events.push(e),
    });
    for (const from of [1, 2]) {
      const decoded = events.filter((e) => e.from === from && e.kind === "decoded");
      // Frames decoded from 5 s after the loss ended to the end of the call, per second.
      const late = decoded.filter((e) => e.atMs >= 8000 && e.atMs < 10_000).length / 2;
      const firstAfter = decoded.find((e) => e.atMs >= 4000);
      assert.ok(late >= 10, `from slot ${from}: ${late} fps in 8–10 s; first decode after the loss at ${firstAfter?.atMs.toFixed(0)} ms; ${JSON.stringify({ ab: r.ab, ba: r.ba })}`);
    }
  });
}

t.run();
