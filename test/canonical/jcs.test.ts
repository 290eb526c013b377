import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalBytes, canonicalize, canonicalizeReference } from "../../src/canonical/jcs.ts";
import { parseStrict, tryParseStrict } from "../../src/canonical/strict-parse.ts";
import { CanonicalError } from "../../src/canonical/errors.ts";
import { describeWithVectors } from "../helpers/vectors.ts";

describeWithVectors("RFC 8785 JCS vectors (cyberphone/json-canonicalization)", (dir) => {
  const inputs = readdirSync(join(dir, "jcs-rfc8785/input")).filter((f) => f.endsWith(".json"));
  it("has all six files", () => expect(inputs.sort()).toEqual(["arrays.json", "french.json", "structures.json", "unicode.json", "values.json", "weird.json"]));
  for (const f of inputs) {
    it(`${f}: byte-exact canonical output`, () => {
      const input = readFileSync(join(dir, "jcs-rfc8785/input", f), "utf8");
      const expected = readFileSync(join(dir, "jcs-rfc8785/output", f));
      const hex = readFileSync(join(dir, "jcs-rfc8785/outhex", f.replace(".json", ".txt")), "utf8").trim().split(/\s+/).join("");
      // values.json holds 1E30, beyond the safe-integer range our wire parser refuses, so the
      // encoder is tested on JSON.parse's reading; the parser is tested on the others.
      const value: unknown = f === "values.json" ? JSON.parse(input) : parseStrict(input);
      const out = Buffer.from(canonicalize(value, { ijson: f !== "values.json" }), "utf8");
      expect(out.equals(expected)).toBe(true);
      expect(Buffer.from(canonicalizeReference(value, { ijson: f !== "values.json" }), "utf8").equals(expected)).toBe(true);
      expect(out.toString("hex")).toBe(hex);
    });
  }
});

describe("RFC 8785 known answers (built in)", () => {
  it("sorts keys by UTF-16 code units and serializes numbers as ES6", () => {
    // RFC 8785 §3.2.3's example ordering and §3.2.2.3 number forms.
    expect(canonicalize({ "\u20ac": 1, "\r": 2, "\ud83d\ude00": 3, "1": 4, "\u0080": 5, "\u00f6": 6 })).toBe(
      '{"\\r":2,"1":4,"\u0080":5,"\u00f6":6,"\u20ac":1,"\ud83d\ude00":3}',
    );
    expect(canonicalize([1e30, 4.5, 0.000001, 1e-7, -0, 333333333.3333333], { ijson: false })).toBe(
      "[1e+30,4.5,0.000001,1e-7,0,333333333.3333333]",
    );
    expect(() => canonicalize(1e30)).toThrow(/UNSAFE_INTEGER/);
    expect(canonicalize({ b: [true, null, "x\u0001"], a: {} })).toBe('{"a":{},"b":[true,null,"x\\u0001"]}');
  });

  it("refuses what is not I-JSON", () => {
    const bad: [unknown, string][] = [
      [NaN, "NON_FINITE"],
      [Infinity, "NON_FINITE"],
      ["\ud800", "LONE_SURROGATE"],
      [{ "\udc00": 1 }, "LONE_SURROGATE"],
      [1n, "NOT_JSON"],
      [{ a: undefined }, "NOT_JSON"],
      [new Date(0), "NOT_JSON"],
      [() => 1, "NOT_JSON"],
    ];
    for (const [v, code] of bad) {
      expect(() => canonicalize(v)).toThrow(CanonicalError);
      try {
        canonicalize(v);
      } catch (e) {
        expect((e as CanonicalError).code).toBe(code);
      }
    }
  });

  it("round-trips: parseStrict(canonicalize(x)) canonicalizes to the same bytes", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        let c1: string;
        try {
          c1 = canonicalize(v);
        } catch (e) {
          // The encoder and the wire reader refuse the same numbers.
          expect((e as CanonicalError).code).toBe("UNSAFE_INTEGER");
          expect(tryParseStrict(JSON.stringify(v)).ok).toBe(false);
          return;
        }
        const back = tryParseStrict(c1);
        if (!back.ok) {
          // The encoder writes any JSON key; the wire reader refuses "__proto__" (FORBIDDEN_KEY).
          expect(back.error.code).toBe("FORBIDDEN_KEY");
          expect(c1).toContain('"__proto__"');
          return;
        }
        expect(canonicalize(back.value)).toBe(c1);
        // JSON.parse agrees with the strict reader on well-formed input.
        expect(canonicalize(JSON.parse(c1))).toBe(c1);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("strict parser: hostile input gets a stable code, never an exception escaping tryParseStrict", () => {
  const cases: [string | Uint8Array, string][] = [
    ['{"a":1,"a":2}', "DUPLICATE_KEY"],
    ['{"a":1,"\\u0061":2}', "DUPLICATE_KEY"],
    ['{"__proto__":{"admin":true}}', "FORBIDDEN_KEY"],
    ['"\\ud800"', "LONE_SURROGATE"],
    ['"\\udc00\\ud800"', "LONE_SURROGATE"],
    ["9007199254740992", "UNSAFE_INTEGER"],
    ["-9007199254740992", "UNSAFE_INTEGER"],
    ["1e30", "UNSAFE_INTEGER"],
    ["1e400", "NON_FINITE"],
    ["1e-400", "UNDERFLOW"],
    ["[-2.5e-999]", "UNDERFLOW"],
    ['{"a":0.0000001e-330}', "UNDERFLOW"],
    ["NaN", "SYNTAX"],
    ["Infinity", "SYNTAX"],
    ["[1,]", "SYNTAX"],
    ["{'a':1}", "SYNTAX"],
    ["01", "SYNTAX"],
    ["[1] x", "SYNTAX"],
    ['"a\nb"', "SYNTAX"],
    ["\ufeff{}", "SYNTAX"],
    ["", "SYNTAX"],
    [Uint8Array.from([0x22, 0xff, 0x22]), "INVALID_UTF8"],
    ["[".repeat(100) + "]".repeat(100), "TOO_DEEP"],
    ["[" + "1,".repeat(200_000) + "1]", "TOO_LARGE"],
  ];
  it("zero written as zero, and the smallest subnormal, are numbers, not underflows", () => {
    const r = tryParseStrict("[0e-400,0.000e5,-0.0,5e-324]");
    expect(r.ok && r.value).toEqual([0, 0, -0, 5e-324]);
  });
  for (const [input, code] of cases) {
    const label = typeof input === "string" ? input.slice(0, 40) : `bytes(${input.length})`;
    it(`${JSON.stringify(label)} → ${code}`, () => {
      const r = tryParseStrict(input);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe(code);
    });
  }

  it("accepts the safe-integer boundary and ordinary documents", () => {
    expect(parseStrict("9007199254740991")).toBe(9007199254740991);
    expect(parseStrict("-9007199254740991")).toBe(-9007199254740991);
    expect(parseStrict(' { "a" : [1, 2.5, "x\\u00e9\\n", true, false, null] } ')).toEqual({ a: [1, 2.5, "xé\n", true, false, null] });
    expect(parseStrict('{"constructor":1}')).toEqual({ constructor: 1 });
  });

  it("never throws from tryParseStrict on random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const r = tryParseStrict(b);
        if (r.ok) expect(() => canonicalize(r.value)).not.toThrow();
      }),
      { numRuns: 3000 },
    );
  });
});

describe("well-formedness: the native check and the reference loop agree", () => {
  it("on random UTF-16 including lone and paired surrogates", async () => {
    const { isWellFormedString, isWellFormedLoop } = await import("../../src/canonical/jcs.ts");
    const unit = fc.oneof(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff }));
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 12 }), (units) => {
        const s = String.fromCharCode(...units);
        expect(isWellFormedString(s)).toBe(isWellFormedLoop(s));
      }),
      { numRuns: 5000 },
    );
  });
});

describe("fast encoder ≡ reference encoder", () => {
  const outcome = (f: () => string): string => {
    try {
      return `ok:${f()}`;
    } catch (e) {
      return e instanceof CanonicalError ? `err:${e.code}` : `throw:${String(e)}`;
    }
  };
  // Keys and strings that hit every branch: plain ASCII (the shortcut), quotes, backslashes,
  // controls, non-ASCII, paired and lone surrogates, integer-like keys, and long strings.
  const unit = fc.oneof(
    fc.constantFrom(0x22, 0x5c, 0x00, 0x1f, 0x7f, 0x20, 0x7e, 0xe9, 0x2028, 0xd800, 0xdc00),
    fc.integer({ min: 0x20, max: 0x7e }),
    fc.integer({ min: 0, max: 0xffff }),
  );
  const str = fc.oneof(
    fc.array(unit, { maxLength: 10 }).map((u) => String.fromCharCode(...u)),
    fc.nat({ max: 1000 }).map(String),
    fc.constant("x".repeat(300)),
    fc.constant(`${"y".repeat(300)}\ud800`),
  );
  const num = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(-0, 2 ** 53, 2 ** 53 - 1, 1e21, 5e-324, NaN, Infinity));
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: "small" }, fc.constant(null), fc.boolean(), num, str, fc.array(tie("v"), { maxLength: 4 }), fc.dictionary(str, tie("v"), { maxKeys: 5 })),
  })).v;

  it("same bytes or the same error code on hostile values", () => {
    fc.assert(
      fc.property(value, fc.boolean(), (v, ijson) => {
        expect(outcome(() => canonicalize(v, { ijson }))).toBe(outcome(() => canonicalizeReference(v, { ijson })));
      }),
      { numRuns: 5000 },
    );
  });

  it("canonicalBytes is the UTF-8 of canonicalize, as a plain Uint8Array", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        if (outcome(() => canonicalizeReference(v)).startsWith("err:")) return;
        const b = canonicalBytes(v);
        expect(Object.getPrototypeOf(b)).toBe(Uint8Array.prototype);
        expect(Buffer.from(b).equals(Buffer.from(new TextEncoder().encode(canonicalizeReference(v))))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
