// Benchmark helpers: repeat a measurement, report the median, so a noisy 2-core machine
// gives figures that can be compared within one run (always as ratios to a baseline).
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** ops/s of `fn`, run `n` times per sample, median of `samples`. */
export function opsPerSec(fn: (i: number) => void, n: number, samples = 5): number {
  for (let i = 0; i < Math.min(n, 200); i++) fn(i); // warm-up
  const rates: number[] = [];
  for (let s = 0; s < samples; s++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn(i);
    rates.push(n / ((performance.now() - t) / 1000));
  }
  return median(rates);
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

export const fmt = (x: number, d = 0): string => x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
