import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkPublicKey,
  publicKeyFromSeed,
  signEd25519,
  verifyEd25519,
  verifyNobleStrict,
  verifyOpenSsl,
  verifyReference,
} from "../../src/crypto/ed25519.ts";
import { fromHex, toHex } from "../../src/crypto/base64url.ts";
import { describeWithVectors } from "../helpers/vectors.ts";

const enc = new TextEncoder();
const load = <T>(dir: string, rel: string): T => JSON.parse(readFileSync(join(dir, rel), "utf8")) as T;

// RFC 8032 §7.1 TEST 1 and TEST 2, written here as facts so they run without ../shared.
const RFC8032_KNOWN = [
  {
    seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    pub: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    msg: "",
    sig: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    pub: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    msg: "72",
    sig: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
];

describe("RFC 8032 known answers (built in)", () => {
  for (const [i, v] of RFC8032_KNOWN.entries()) {
    it(`TEST ${i + 1}: keygen, sign, verify`, () => {
      const pub = publicKeyFromSeed(fromHex(v.seed));
      expect(toHex(pub)).toBe(v.pub);
      const sig = signEd25519(fromHex(v.seed), fromHex(v.msg));
      expect(toHex(sig)).toBe(v.sig);
      expect(verifyEd25519(pub, fromHex(v.msg), sig)).toBe(true);
      expect(verifyReference(pub, fromHex(v.msg), sig)).toBe(true);
      const bad = Uint8Array.from(sig);
      bad[10]! ^= 1;
      expect(verifyEd25519(pub, fromHex(v.msg), bad)).toBe(false);
    });
  }

  it("never throws on wrong-length or garbage input", () => {
    const cases: unknown[][] = [
      [new Uint8Array(31), new Uint8Array(0), new Uint8Array(64)],
      [new Uint8Array(32), new Uint8Array(0), new Uint8Array(63)],
      [new Uint8Array(32), new Uint8Array(0), new Uint8Array(65)],
      [new Uint8Array(32).fill(0xff), new Uint8Array(3), new Uint8Array(64).fill(0xff)],
      [undefined, null, "x"],
      ["aa", 3, {}],
    ];
    for (const [p, m, s] of cases) {
      for (const f of [verifyEd25519, verifyOpenSsl, verifyNobleStrict, verifyReference]) {
        expect(f(p as Uint8Array, m as Uint8Array, s as Uint8Array)).toBe(false);
      }
    }
  });

  it("refuses small-order and non-canonical keys", () => {
    expect(checkPublicKey(new Uint8Array(32))).toEqual({ ok: false, problem: "SMALL_ORDER" }); // y = 0 has order 4
    const identity = new Uint8Array(32);
    identity[0] = 1; // y = 1: the neutral element
    expect(checkPublicKey(identity)).toEqual({ ok: false, problem: "SMALL_ORDER" });
    const negZero = Uint8Array.from(identity);
    negZero[31] = 0x80; // y = 1 with the sign bit: a second spelling of the identity
    expect(checkPublicKey(negZero)).toEqual({ ok: false, problem: "NON_CANONICAL" });
    const yp = new Uint8Array(32).fill(0xff);
    yp[31] = 0x7f;
    yp[0] = 0xed; // y = p
    expect(checkPublicKey(yp)).toEqual({ ok: false, problem: "NON_CANONICAL" });
    expect(checkPublicKey(new Uint8Array(31))).toEqual({ ok: false, problem: "WRONG_LENGTH" });
    expect(checkPublicKey(fromHex(RFC8032_KNOWN[0]!.pub))).toEqual({ ok: true });
  });
});

describeWithVectors("Ed25519 accept rule on the public vectors", (dir) => {
  const verifiers = { hot: verifyEd25519, reference: verifyReference } as const;

  it("RFC 8032: all five vectors (keygen, sign, verify)", () => {
    type V = { secretKey?: string; priv?: string; publicKey?: string; pub?: string; message?: string; msg?: string; signature?: string; sig?: string };
    const raw = load<V[] | { vectors?: V[] }>(dir, "rfc8032/rfc8032-ed25519.json");
    const list: V[] = Array.isArray(raw) ? raw : (raw.vectors ?? []);
    const abc = load<V | V[]>(dir, "rfc8032/rfc8032-test-sha-abc.json");
    const all = [...list, ...(Array.isArray(abc) ? abc : [abc])];
    expect(all.length).toBe(5);
    for (const v of all) {
      const seed = fromHex((v.secretKey ?? v.priv)!.slice(0, 64));
      const pub = fromHex((v.publicKey ?? v.pub)!);
      const msg = fromHex(v.message ?? v.msg ?? "");
      const sig = fromHex((v.signature ?? v.sig)!);
      expect(toHex(publicKeyFromSeed(seed))).toBe(toHex(pub));
      expect(toHex(signEd25519(seed, msg))).toBe(toHex(sig));
      for (const f of Object.values(verifiers)) expect(f(pub, msg, sig)).toBe(true);
    }
  });

  it("Wycheproof: 151/151 as labelled", () => {
    const w = load<{ testGroups: { publicKey: { pk: string }; tests: { tcId: number; msg: string; sig: string; result: string }[] }[] }>(
      dir,
      "wycheproof/ed25519_test.json",
    );
    for (const [name, f] of Object.entries(verifiers)) {
      let total = 0;
      const wrong: number[] = [];
      for (const g of w.testGroups) {
        const pub = fromHex(g.publicKey.pk);
        for (const t of g.tests) {
          total++;
          const got = f(pub, fromHex(t.msg), fromHex(t.sig));
          if (got !== (t.result === "valid")) wrong.push(t.tcId);
        }
      }
      expect({ name, total, wrong }).toEqual({ name, total: 151, wrong: [] });
    }
  });

  it("speccheck: accept pattern XXVVXXXXXXXX", () => {
    const cases = load<{ message: string; pub_key: string; signature: string }[]>(dir, "ed25519-edge/speccheck-cases.json");
    for (const f of Object.values(verifiers)) {
      const pattern = cases.map((c) => (f(fromHex(c.pub_key), fromHex(c.message), fromHex(c.signature)) ? "V" : "X")).join("");
      expect(pattern).toBe("XXVVXXXXXXXX");
    }
  });

  it("CCTV: exactly 86 of 914 accepted, the same set by both paths", () => {
    const cases = load<{ number: number; key: string; sig: string; msg: string }[]>(dir, "ed25519-edge/cctv-ed25519vectors.json");
    expect(cases.length).toBe(914);
    const accepted = (f: typeof verifyEd25519) =>
      cases.filter((c) => f(fromHex(c.key), enc.encode(c.msg), fromHex(c.sig))).map((c) => c.number);
    const hot = accepted(verifyEd25519);
    expect(hot.length).toBe(86);
    expect(accepted(verifyReference)).toEqual(hot);
  });

  it("ZIP215: 0 of 196 accepted", () => {
    const cases = load<{ vk_bytes: string; sig_bytes: string }[]>(dir, "ed25519-edge/zip215.json");
    expect(cases.length).toBe(196);
    for (const f of Object.values(verifiers)) {
      expect(cases.filter((c) => f(fromHex(c.vk_bytes), enc.encode("Zcash"), fromHex(c.sig_bytes))).length).toBe(0);
    }
  });
});
