// The hot path (OpenSSL + byte checks) and the definition (OpenSSL AND noble strict) must be
// one rule. fast-check mutates valid signatures, keys and messages; any disagreement fails.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { publicKeyFromSeed, signEd25519, verifyEd25519, verifyNobleStrict, verifyOpenSsl, verifyReference } from "../../src/crypto/ed25519.ts";

const RUNS = Number(process.env["FAILCLOSED_PROPERTY_RUNS"] ?? 10_000);

// Points that trip lenient verifiers: small-order encodings and y >= p spellings.
const NASTY_POINTS = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000080",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
].map((h) => Uint8Array.from(Buffer.from(h, "hex")));

describe("Ed25519 hot path ≡ reference rule (differential)", () => {
  const seedArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
  const msgArb = fc.uint8Array({ maxLength: 64 });

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant("none" as const) }),
    fc.record({ kind: fc.constant("sigbit" as const), at: fc.nat(511) }),
    fc.record({ kind: fc.constant("keybit" as const), at: fc.nat(255) }),
    fc.record({ kind: fc.constant("msgbyte" as const), at: fc.nat(63), v: fc.nat(255) }),
    fc.record({ kind: fc.constant("sAddL" as const) }),
    fc.record({ kind: fc.constant("nastyR" as const), i: fc.nat(NASTY_POINTS.length - 1) }),
    fc.record({ kind: fc.constant("nastyA" as const), i: fc.nat(NASTY_POINTS.length - 1) }),
    fc.record({ kind: fc.constant("truncate" as const), n: fc.integer({ min: 0, max: 63 }) }),
  );

  it(`agrees on ${RUNS} mutated signatures, keys and messages`, () => {
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    let accepted = 0;
    fc.assert(
      fc.property(seedArb, msgArb, mutation, (seed, msg, mut) => {
        let pub = publicKeyFromSeed(seed);
        let sig = signEd25519(seed, msg);
        let m = msg;
        switch (mut.kind) {
          case "none":
            break;
          case "sigbit":
            sig = Uint8Array.from(sig);
            sig[mut.at >> 3]! ^= 1 << (mut.at & 7);
            break;
          case "keybit":
            pub = Uint8Array.from(pub);
            pub[mut.at >> 3]! ^= 1 << (mut.at & 7);
            break;
          case "msgbyte":
            m = Uint8Array.from(msg.length ? msg : [0]);
            m[mut.at % m.length] = mut.v;
            break;
          case "sAddL": {
            // S + L: the classic malleability; strict verifiers must refuse it.
            let s = 0n;
            for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]!);
            s += L;
            sig = Uint8Array.from(sig);
            for (let i = 32; i < 64; i++) {
              sig[i] = Number(s & 0xffn);
              s >>= 8n;
            }
            break;
          }
          case "nastyR":
            sig = Uint8Array.from(sig);
            sig.set(NASTY_POINTS[mut.i]!, 0);
            break;
          case "nastyA":
            pub = NASTY_POINTS[mut.i]!;
            break;
          case "truncate":
            sig = sig.slice(0, mut.n);
            break;
        }
        const hot = verifyEd25519(pub, m, sig);
        const ref = verifyReference(pub, m, sig);
        if (hot) accepted++;
        // Unmutated signatures must verify; the rule is not allowed to be "reject everything".
        if (mut.kind === "none") expect(hot).toBe(true);
        return hot === ref && ref === (verifyOpenSsl(pub, m, sig) && verifyNobleStrict(pub, m, sig));
      }),
      { numRuns: RUNS },
    );
    expect(accepted).toBeGreaterThan(0);
  });
});
