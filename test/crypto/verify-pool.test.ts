// The verify pool runs the one accept rule on worker threads; the gateway uses its answers only
// to warm decide's memo. These tests pin that it answers exactly as verifyEd25519 does, never
// rejects, and says "no answer" (undefined) once closed.
import { afterAll, describe, expect, it } from "vitest";
import { publicKeyFromSeed, signEd25519, verifyEd25519 } from "../../src/crypto/ed25519.ts";
import { VerifyPool } from "../../src/crypto/verify-pool.ts";

const seed = new Uint8Array(32).fill(3);
const pub = publicKeyFromSeed(seed);
const msg = new TextEncoder().encode("failclosed/request/v1\u0000{}");
const sig = signEd25519(seed, msg);
const flipped = sig.slice();
flipped[10] = flipped[10]! ^ 1;
// S + L: the classic malleability case both libraries must refuse.
const L = [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const malleable = sig.slice();
let carry = 0;
for (let i = 0; i < 32; i++) {
  const v = malleable[32 + i]! + L[i]! + carry;
  malleable[32 + i] = v & 0xff;
  carry = v >> 8;
}

describe("VerifyPool", () => {
  const pool = new VerifyPool(2);
  afterAll(async () => pool.close());

  it("answers as verifyEd25519 does, for good, forged, malleated and malformed input", async () => {
    const jobs = [
      { pub, msg, sig },
      { pub, msg, sig: flipped },
      { pub, msg, sig: malleable },
      { pub, msg: new Uint8Array([1, 2, 3]), sig },
      { pub: new Uint8Array(31), msg, sig },
      { pub, msg, sig: new Uint8Array(10) },
    ];
    const ok = await pool.verify(jobs, 30_000);
    expect(ok).toEqual(jobs.map((j) => verifyEd25519(j.pub, j.msg, j.sig)));
    expect(ok).toEqual([true, false, false, false, false, false]);
  });

  it("spreads concurrent batches over its workers", async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.verify([{ pub, msg, sig: i % 2 === 0 ? sig : flipped }], 30_000)));
    expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => [i % 2 === 0]));
  });

  it("gives no answer (never a rejection) when closed or empty", async () => {
    const p = new VerifyPool(1);
    expect(await p.verify([], 1_000)).toBeUndefined();
    await p.close();
    expect(await p.verify([{ pub, msg, sig }], 1_000)).toBeUndefined();
    expect(await new VerifyPool(0).verify([{ pub, msg, sig }])).toBeUndefined();
  });
});
