// The byte-wise encoding checks of the hot path (ed25519.ts) against plain BigInt arithmetic:
// S < L, and a point encoding is canonical when y < p and x = 0 is never spelled with the sign bit.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isCanonicalPointEncoding, scalarIsCanonical } from "../../src/crypto/ed25519.ts";

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const le = (n: bigint): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
const num = (b: Uint8Array): bigint => b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);

function scalarReference(s: Uint8Array): boolean {
  return num(s) < L;
}
function pointReference(b: Uint8Array): boolean {
  const sign = (b[31]! & 0x80) !== 0;
  const y = num(b) & ((1n << 255n) - 1n);
  if (y >= P) return false;
  return !(sign && (y === 1n || y === P - 1n));
}
const sigWithS = (s: Uint8Array): Uint8Array => {
  const sig = new Uint8Array(64).fill(0x5a);
  sig.set(s, 32);
  return sig;
};

// Every value next to a boundary the checks draw, with and without the sign bit.
const edges = [0n, 1n, 2n, L - 1n, L, L + 1n, P - 2n, P - 1n, P, P + 1n, (1n << 255n) - 1n, (1n << 256n) - 1n, (1n << 252n), 8n * L];
const withSign = (n: bigint): bigint[] => [n & ((1n << 256n) - 1n), (n | (1n << 255n)) & ((1n << 256n) - 1n)];

describe("Ed25519 encoding checks ≡ BigInt arithmetic", () => {
  it("agree at every boundary", () => {
    for (const e of edges.flatMap(withSign)) {
      const b = le(e);
      expect(scalarIsCanonical(sigWithS(b)), `S=${e}`).toBe(scalarReference(b));
      expect(isCanonicalPointEncoding(b, 0), `y=${e}`).toBe(pointReference(b));
    }
    // Known answers: L itself is refused, L - 1 accepted; y = p refused; y = 1 with the sign bit refused.
    expect(scalarIsCanonical(sigWithS(le(L)))).toBe(false);
    expect(scalarIsCanonical(sigWithS(le(L - 1n)))).toBe(true);
    expect(isCanonicalPointEncoding(le(P), 0)).toBe(false);
    expect(isCanonicalPointEncoding(le(1n | (1n << 255n)), 0)).toBe(false);
    expect(isCanonicalPointEncoding(le(2n | (1n << 255n)), 0)).toBe(true);
  });

  it("agree on random values and on values near the limits", () => {
    const near = (limit: bigint) => fc.bigInt({ min: -300n, max: 300n }).map((d) => le((limit + d) & ((1n << 256n) - 1n)));
    const bytes = fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), near(L), near(P), near(P | (1n << 255n)), near(1n | (1n << 255n)));
    fc.assert(
      fc.property(bytes, (b) => {
        expect(scalarIsCanonical(sigWithS(b))).toBe(scalarReference(b));
        expect(isCanonicalPointEncoding(b, 0)).toBe(pointReference(b));
      }),
      { numRuns: 5_000 },
    );
  });
});
