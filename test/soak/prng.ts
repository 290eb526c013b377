// A small seeded PRNG (mulberry32) for the soak schedule: the seed alone fixes which tasks,
// faults and delays the run picks. Real-time interleavings still vary between runs.
export interface Rng {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  chance(p: number): boolean;
  pick<T>(xs: readonly T[]): T;
  /** One of the keys, with probability proportional to its weight. */
  weighted<K extends string>(w: Readonly<Record<K, number>>): K;
}

export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng: Rng = {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (xs) => {
      if (xs.length === 0) throw new RangeError("pick from an empty list");
      return xs[Math.floor(next() * xs.length)]!;
    },
    weighted: (w) => {
      const entries = Object.entries(w) as [never, number][];
      const total = entries.reduce((s, [, x]) => s + x, 0);
      let r = next() * total;
      for (const [k, x] of entries) {
        r -= x;
        if (r < 0) return k;
      }
      return entries[entries.length - 1]![0];
    },
  };
  return rng;
}

/** The seed from FC_SOAK_SEED (decimal or 0x-hex), else a fresh one. */
export function soakSeed(): number {
  const raw = process.env["FC_SOAK_SEED"];
  if (raw !== undefined && raw.trim() !== "") {
    const n = Number(raw.trim());
    if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`FC_SOAK_SEED must be an integer in [0, 2^32): ${raw}`);
    return n;
  }
  // Under CI one seed that has run clean, so a red build is news about the code, not a new
  // schedule; elsewhere a fresh one each run, to explore (printed either way).
  if (process.env["CI"] !== undefined && process.env["CI"] !== "") return CI_SEED;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}

/** The seed CI runs (FC_SOAK_SEED overrides it). */
export const CI_SEED = 1983258311;
