// foldDifference (the gateway's own check of the records before its snapshot, and replay's snapshot
// audit) compares everything a fold means, the policy floor included: a snapshot whose floor is
// lowered would let a retired policy's entry be taken again after a restart. (Found by review.)
import { describe, expect, it } from "vitest";
import { cloneState, emptyState } from "../../src/audit/fold.ts";
import { foldDifference } from "../../src/audit/snapshot-audit.ts";

describe("foldDifference", () => {
  it("reports folds whose policy floor differs, and only then", () => {
    const a = emptyState();
    a.policyHigh = { version: 1_700_000_000_000, digest: "d", issuer: "k" };
    expect(foldDifference(a, cloneState(a))).toBeUndefined();
    const lower = cloneState(a);
    lower.policyHigh = { version: 1, digest: "d", issuer: "k" };
    expect(foldDifference(a, lower)).toMatch(/^policy floor/);
    const none = cloneState(a);
    none.policyHigh = undefined;
    expect(foldDifference(a, none)).toMatch(/^policy floor/);
  });
});
