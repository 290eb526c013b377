import { createPublicKey, verify } from "node:crypto";
import { publicKeyFromSeed, signEd25519 } from "../src/crypto/ed25519.ts";

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

/**
 * Raw OpenSSL Ed25519 verifies/s on one core (node:crypto, a 400-byte message): the physical
 * baseline every figure is divided by, measured in the same run.
 */
export function rawVerifyPerSec(): number {
  const seed = new Uint8Array(32).fill(9);
  const msg = new Uint8Array(400);
  const sig = signEd25519(seed, msg);
  const key = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), publicKeyFromSeed(seed)]), format: "der", type: "spki" });
  return opsPerSec(() => verify(null, msg, key, sig), 2000);
}
