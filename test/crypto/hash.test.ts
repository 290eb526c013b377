import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { sha256, sha256B64u } from "../../src/crypto/hash.ts";
import { bytesEqual, fromB64u, toB64u } from "../../src/crypto/base64url.ts";

describe("SHA-256 via node:crypto is equivalent to @noble/hashes", () => {
  it("FIPS 180-2 known answer for 'abc'", () => {
    expect(Buffer.from(sha256(new TextEncoder().encode("abc"))).toString("hex")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
  it("agrees on random inputs, whole and split", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), (b, cut) => {
        const c = Math.min(cut, b.length);
        expect(bytesEqual(sha256(b), nobleSha256(b))).toBe(true);
        expect(sha256B64u(b.subarray(0, c), b.subarray(c))).toBe(toB64u(nobleSha256(b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("base64url is strict", () => {
  it("round-trips and refuses second spellings", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(bytesEqual(fromB64u(toB64u(b))!, b)).toBe(true);
      }),
    );
    expect(fromB64u("AA==")).toBeUndefined(); // padding
    expect(fromB64u("AB")).toBeUndefined(); // non-zero trailing bits
    expect(fromB64u("A+")).toBeUndefined(); // base64, not base64url
    expect(fromB64u("A")).toBeUndefined();
    expect(fromB64u(42)).toBeUndefined();
    expect(fromB64u("AAAA", 4)).toBeUndefined();
    expect(fromB64u("AAAA", 3)).toEqual(new Uint8Array(3));
  });
});
