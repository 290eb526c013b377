// parseCanonical's fast path (native JSON.parse + canonical equality) must accept exactly what
// the reference (strict parse + canonical equality) accepts, with the same value, and report
// the reference's error code for everything else.
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseCanonical, parseCanonicalReference } from "../../src/canonical/canonical-parse.ts";
import { CanonicalError } from "../../src/canonical/errors.ts";
import { canonicalize } from "../../src/canonical/jcs.ts";

const LIMITS = { maxBytes: 4096, maxDepth: 8 };
const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "utf8"));

type Outcome = { ok: true; value: unknown } | { ok: false; code: string };
const run = (f: () => unknown): Outcome => {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (!(e instanceof CanonicalError)) throw e;
    return { ok: false, code: e.code };
  }
};
const same = (bytes: Uint8Array, limits = LIMITS): void => {
  const fast = run(() => parseCanonical(bytes, limits));
  const ref = run(() => parseCanonicalReference(bytes, limits));
  expect(fast).toEqual(ref);
};

// Real records: the committed fixture's lines (canonical by construction).
const records = readFileSync(new URL("../fixtures/audit/scenario-v2.jsonl", import.meta.url), "utf8")
  .split("\n")
  .filter((l) => l !== "");

describe("parseCanonical ≡ strict parse + canonical check", () => {
  it("accepts every recorded audit record with the reference's value", () => {
    for (const l of records) {
      const b = enc(l);
      expect(parseCanonical(b, { maxBytes: 1 << 20, maxDepth: 128 })).toEqual(parseCanonicalReference(b, { maxBytes: 1 << 20, maxDepth: 128 }));
    }
  });

  it("known non-canonical and hostile spellings get the reference's code", () => {
    const cases: [string, string][] = [
      ['{"a":1,"a":1}', "DUPLICATE_KEY"],
      ['{"a":1,"a":2}', "DUPLICATE_KEY"],
      ['{"__proto__":{"x":1}}', "FORBIDDEN_KEY"],
      ['{"\\u005f_proto__":1}', "FORBIDDEN_KEY"],
      ['{"b":1,"a":2}', "NOT_CANONICAL"],
      ['{"a":1.0}', "NOT_CANONICAL"],
      ['{"a":1e2}', "NOT_CANONICAL"],
      ['{"a":"\\u0041"}', "NOT_CANONICAL"],
      ['{"a":"\\ud800"}', "LONE_SURROGATE"],
      ['{"a":9007199254740993}', "UNSAFE_INTEGER"],
      ['{"a":1e400}', "NON_FINITE"],
      ['{"a":1e-400}', "UNDERFLOW"],
      [' {"a":1}', "NOT_CANONICAL"],
      ['\ufeff{"a":1}', "SYNTAX"],
      ['{"a":1}x', "SYNTAX"],
      ["[[[[[[[[[1]]]]]]]]]", "TOO_DEEP"],
      ["[[[[[[[[1]]]]]]]]", "OK"],
      ['"x"', "OK"],
    ];
    for (const [text, code] of cases) {
      const r = run(() => parseCanonical(enc(text), LIMITS));
      expect(r.ok ? "OK" : r.code, text).toBe(code);
      same(enc(text));
    }
    same(new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])); // invalid UTF-8
    same(enc(`"${"x".repeat(5000)}"`)); // too large
  });

  it("agrees on random mutations of real records", () => {
    const mutate = fc.record({
      line: fc.nat({ max: records.length - 1 }),
      at: fc.nat(),
      op: fc.constantFrom("flip", "insert", "delete", "dupkey", "space"),
      byte: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(mutate, ({ line, at, op, byte }) => {
        const src = enc(records[line]!);
        const i = at % src.length;
        let b: Uint8Array;
        switch (op) {
          case "flip":
            b = src.slice();
            b[i] = b[i]! ^ (1 << (byte % 8));
            break;
          case "insert":
            b = new Uint8Array([...src.subarray(0, i), byte, ...src.subarray(i)]);
            break;
          case "delete":
            b = new Uint8Array([...src.subarray(0, i), ...src.subarray(i + 1)]);
            break;
          case "dupkey":
            b = enc(records[line]!.replace('{"', '{"type":"x","'));
            break;
          default:
            b = enc(records[line]!.replace(",", ", "));
        }
        same(b, { maxBytes: 1 << 20, maxDepth: 128 });
      }),
      { numRuns: 3000 },
    );
  });

  it("agrees on random JSON, canonical or re-spelled", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 10 }), fc.boolean(), (v, canonical) => {
        let text: string;
        try {
          text = canonical ? canonicalize(v) : JSON.stringify(v);
        } catch {
          text = JSON.stringify(v);
        }
        same(enc(text));
      }),
      { numRuns: 3000 },
    );
  });
});
