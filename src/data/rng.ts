// Seeded randomness for the data layer: mulberry32 (a small 32-bit PRNG, deterministic on every
// platform), seed mixing for per-epoch streams, and Fisher–Yates shuffles. Orders are reproducible
// across runs and machines for the same seed, but differ from Python's (numpy) for the same seed.

/** Checks that `seed` is a safe integer (negative allowed) and returns it. */
export function checkSeed(seed: unknown, where: string): number {
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) {
    throw new TypeError(`${where}: 'seed' must be an integer, got ${typeof seed === 'number' ? seed : typeof seed}`);
  }
  return seed;
}

/** 32-bit finaliser (murmur3 fmix32): spreads every input bit over the output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Folds a seed (any safe integer) and further integers (an epoch, a stream id) into one 32-bit seed,
 * so that `mixSeed(42, 0)` and `mixSeed(42, 1)` give unrelated streams.
 */
export function mixSeed(seed: number, ...parts: number[]): number {
  let h = fmix32((seed >>> 0) ^ fmix32(Math.floor(seed / 4294967296) >>> 0));
  for (const p of parts) h = fmix32(h ^ Math.imul((p >>> 0) + 1, 0x9e3779b9));
  return h;
}

/** mulberry32: returns a function giving uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Shuffles `arr` in place with Fisher–Yates driven by `rand`; returns `arr`. */
export function shuffleInPlace<T extends { length: number; [i: number]: unknown }>(arr: T, rand: () => number): T {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = arr[i];
    arr[i] = arr[j];
    arr[j] = tmp;
  }
  return arr;
}

/** A mulberry32 stream seeded from all bits of `seed` (any safe integer) via mixSeed. */
export function seededRandom(seed: number): () => number {
  return mulberry32(mixSeed(seed));
}

/** A seeded permutation of 0..n-1 (Fisher–Yates over a Uint32Array). */
export function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return shuffleInPlace(p, seededRandom(seed));
}
