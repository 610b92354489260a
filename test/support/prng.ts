// A small seeded PRNG (mulberry32) so fuzz runs and impairments repeat exactly.
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytesFrom(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

/** Flips, inserts, deletes or overwrites a few bytes of `input`. */
export function mutate(rand: () => number, input: Uint8Array): Uint8Array {
  let b = Array.from(input);
  const edits = 1 + Math.floor(rand() * 4);
  for (let e = 0; e < edits; e++) {
    const pos = Math.floor(rand() * (b.length + 1));
    switch (Math.floor(rand() * 5)) {
      case 0: if (b.length) b[pos % b.length] = b[pos % b.length]! ^ (1 << Math.floor(rand() * 8)); break;
      case 1: b.splice(pos, 0, Math.floor(rand() * 256)); break;
      case 2: b.splice(pos, 1 + Math.floor(rand() * 4)); break;
      case 3: if (b.length) b[pos % b.length] = [0x00, 0xff, 0x7f, 0x80, 0xc1, 0xdd, 0xdf][Math.floor(rand() * 7)]!; break;
      default: b = b.slice(0, pos);
    }
  }
  return new Uint8Array(b);
}

/** A JSON-ish value of the kinds that break validators. */
export function randomValue(rand: () => number, depth = 0): unknown {
  switch (Math.floor(rand() * (depth > 2 ? 7 : 9))) {
    case 0: return null;
    case 1: return rand() < 0.5;
    case 2: return [0, -1, 1e308, -1e-9, 2 ** 53 + 1, 0.5, 31, 1e15, NaN][Math.floor(rand() * 9)];
    case 3: return "";
    case 4: return "x".repeat(Math.floor(rand() * 5000));
    case 5: return ["\u0000", "\ud800", "'; DROP TABLE consultations; --", "../../etc/passwd", "%00", "💉", "<script>"][Math.floor(rand() * 7)];
    case 6: return "2026-02-30T25:61:00Z";
    case 7: return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1));
    default: return Object.fromEntries(Array.from({ length: Math.floor(rand() * 4) }, (_, i) => [["id", "name", "__proto__", "constructor", `k${i}`][Math.floor(rand() * 5)]!, randomValue(rand, depth + 1)]));
  }
}

/** Replaces, drops or adds one field somewhere in a copy of `value`. */
export function mangle(rand: () => number, value: unknown): unknown {
  if (value === null || typeof value !== "object") return rand() < 0.7 ? randomValue(rand) : value;
  const copy: Record<string, unknown> = Array.isArray(value) ? ([...value] as unknown as Record<string, unknown>) : { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const r = rand();
  if (keys.length && r < 0.45) {
    const k = keys[Math.floor(rand() * keys.length)]!;
    copy[k] = rand() < 0.5 ? mangle(rand, copy[k]) : randomValue(rand);
  } else if (keys.length && r < 0.7) {
    delete copy[keys[Math.floor(rand() * keys.length)]!];
  } else {
    copy[`extra${Math.floor(rand() * 3)}`] = randomValue(rand);
  }
  return copy;
}
