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
