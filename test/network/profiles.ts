// The network profiles of the adverse-networks work, with the mid-call changes some need.
import { PROFILES, type RelayProfile } from "../support/impairment-relay.ts";

export interface BenchProfile {
  profile: RelayProfile;
  changes?: { atMs: number; profile: RelayProfile }[];
}

const wide: RelayProfile = { name: "3 Mbit/s uplink", up: { rateKbps: 3000, queueMs: 150 } };

export const BENCH_PROFILES: Record<string, BenchProfile> = {
  clean: { profile: PROFILES.clean! },
  "3% loss": { profile: PROFILES["3% loss"]! },
  "10% loss": { profile: PROFILES["10% loss"]! },
  "200 ms RTT + jitter": { profile: PROFILES["200 ms RTT + jitter"]! },
  "1 Mbit/s uplink": { profile: PROFILES["1 Mbit/s uplink"]! },
  "300 kbit/s uplink": { profile: PROFILES["300 kbit/s uplink"]! },
  "1 Mbit/s + 3% loss": { profile: PROFILES["1 Mbit/s + 3% loss"]! },
  // 3 Mbit/s, down to 500 kbit/s for a third of the call, then back.
  "bandwidth drop": {
    profile: wide,
    changes: [
      { atMs: 0.33, profile: { name: "drop", up: { rateKbps: 500, queueMs: 150 } } },
      { atMs: 0.66, profile: wide },
    ],
  },
};

/** Mid-call change times given as a share of the call (≤ 1) become ms. */
export function scaled(p: BenchProfile, durationMs: number): BenchProfile {
  return { ...p, changes: p.changes?.map((c) => ({ ...c, atMs: c.atMs <= 1 ? Math.round(c.atMs * durationMs) : c.atMs })) };
}
