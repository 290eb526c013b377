import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalize } from "../../src/canonical/jcs.ts";
import { tryParseStrict } from "../../src/canonical/strict-parse.ts";
import { decide } from "../../src/core/decide.ts";
import type { DecisionInput } from "../../src/core/types.ts";
import { buildTask, inputFor, makeWorld } from "../../src/testkit/world.ts";

const RUNS = Number(process.env["FAILCLOSED_PROPERTY_RUNS"] ?? 300);
const w = makeWorld();
const base = inputFor(w, buildTask(w, { depth: 2 }));
type Slot = "request" | "args" | `chain.${number}` | `lineage.${number}`;
const SLOTS: Slot[] = ["request", "args", "chain.0", "chain.1", "chain.2", "lineage.0", "lineage.1", "lineage.2"];

function get(input: DecisionInput, slot: Slot): unknown {
  if (slot === "request" || slot === "args") return input[slot];
  const [k, i] = slot.split(".") as ["chain" | "lineage", string];
  return input[k][Number(i)];
}
function set(input: DecisionInput, slot: Slot, v: unknown): DecisionInput {
  const out = structuredClone(input);
  if (slot === "request" || slot === "args") out[slot] = v;
  else {
    const [k, i] = slot.split(".") as ["chain" | "lineage", string];
    out[k][Number(i)] = v;
  }
  return out;
}

// A shared list of hostile values (noble's test/utils.ts habit): each must give MALFORMED.
const HOSTILE: unknown[] = [
  null,
  undefined,
  42,
  "string",
  [],
  {},
  { payload: null, sig: "" },
  { payload: { __proto__: { admin: true } }, sig: "x" },
  JSON.parse('{"payload":{"__proto__":{"kind":"failclosed/request/v1"}},"sig":"AA"}'),
  { payload: { kind: "failclosed/request/v1", taskId: "a".repeat(10_000) }, sig: "AA" },
  { payload: { kind: "failclosed/request/v1", createdAt: 2 ** 60 }, sig: "AA" },
  { payload: { kind: "failclosed/request/v1", createdAt: -1 }, sig: "AA" },
  { payload: { kind: "failclosed/request/v1", createdAt: NaN }, sig: "AA" },
  { payload: { kind: ["failclosed/request/v1"] }, sig: "AA" },
  { payload: { kind: { toString: "failclosed/request/v1" } }, sig: 123 },
  new Date(0),
  Object.create({ payload: {}, sig: "AA" }) as unknown,
  (() => {
    let deep: unknown = "x";
    for (let i = 0; i < 5000; i++) deep = [deep];
    return { payload: deep, sig: "AA" };
  })(),
];

describe("decide: properties", () => {
  it("flipping any byte of any signed input (or its args) never yields allow", () => {
    expect(decide(base).verdict).toBe("allow");
    fc.assert(
      fc.property(fc.constantFrom(...SLOTS), fc.nat(), fc.integer({ min: 1, max: 255 }), (slot, at, xor) => {
        const text = Buffer.from(canonicalize(get(base, slot)), "utf8");
        text[at % text.length]! ^= xor;
        const parsed = tryParseStrict(text);
        // Unparseable bytes never reach decide: the gateway records them as MALFORMED intake.
        const input = parsed.ok ? set(base, slot, parsed.value) : { ...base, intakeErrors: [parsed.error.code] };
        const d = decide(input);
        expect(d.verdict).toBe("deny");
        expect(d.reasons.length).toBeGreaterThan(0);
      }),
      { numRuns: RUNS * 10 },
    );
  });

  it("is deterministic: the same input always gives the same decision", () => {
    fc.assert(
      fc.property(fc.constantFrom(...SLOTS), fc.nat(), (slot, at) => {
        const text = Buffer.from(canonicalize(get(base, slot)), "utf8");
        text[at % text.length]! ^= 1;
        const parsed = tryParseStrict(text);
        const input = parsed.ok ? set(base, slot, parsed.value) : base;
        const a = decide(input);
        const b = decide(structuredClone(input));
        expect(canonicalize(b)).toBe(canonicalize(a));
      }),
      { numRuns: RUNS },
    );
  });

  it("hostile values in any evidence slot give MALFORMED, never an exception", () => {
    for (const slot of SLOTS.filter((s) => s !== "args")) {
      for (const h of HOSTILE) {
        const d = decide(set(base, slot, h));
        expect(d.verdict).toBe("deny");
        expect(d.reasons).toContain("MALFORMED");
      }
    }
    for (const h of [undefined, 1n, NaN, Infinity, new Date(0), { a: () => 1 }, "\ud800"]) {
      const d = decide({ ...base, args: h });
      expect(d.reasons).toContain("MALFORMED");
    }
  });
  it("allows only on both claims won: any other nonce or task-id claim state, or a malformed claim, is a deny", () => {
    const taskId = (base.request as { payload: { taskId: string } }).payload.taskId;
    const nonceKey = base.nonce.key;
    const local = fc.constantFrom("fresh", "consumed", "decided", "", null);
    const cluster = fc.constantFrom("claimed", "taken", "unavailable", "not-attempted", "won", null);
    const ids = fc.constantFrom(taskId, `${taskId}x`, "", 7);
    const claim = fc.oneof(fc.record({ taskId: ids, local, cluster }), fc.constantFrom(null, "claimed", [], 0, {}), fc.anything().filter((x) => x !== undefined));
    const nonce = fc.record({ key: fc.constantFrom(nonceKey, `${nonceKey}x`), local: fc.constantFrom("fresh", "consumed", "decided", null), cluster });
    // The control: both claims won.
    expect(decide({ ...base, nonce: { key: nonceKey, local: "fresh", cluster: "claimed" }, taskClaim: { taskId, local: "fresh", cluster: "claimed" } }).verdict).toBe("allow");
    fc.assert(
      fc.property(claim, nonce, (t, n) => {
        const input = { ...base, nonce: n, taskClaim: t } as unknown as DecisionInput;
        const d = decide(input);
        const won =
          typeof t === "object" && t !== null && !Array.isArray(t) && (t as Record<string, unknown>)["taskId"] === taskId &&
          (t as Record<string, unknown>)["local"] === "fresh" && (t as Record<string, unknown>)["cluster"] === "claimed" &&
          n.key === nonceKey && n.local === "fresh" && n.cluster === "claimed";
        expect(d.verdict).toBe(won ? "allow" : "deny");
      }),
      { numRuns: RUNS * 10 },
    );
    // Absent (a log from before task claims): the nonce alone decides, as it did.
    const { taskClaim: _absent, ...legacy } = base;
    expect(decide(legacy).verdict).toBe("allow");
  });
});
