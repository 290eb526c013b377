// A claim's bytes come from the claims bucket, which anyone who may write there could fill:
// parseTaskClaim reads the three kinds gateways write and refuses (undefined: unreadable, never
// free) anything else that says it is a denied-copies claim but is not one.
import { describe, expect, it } from "vitest";
import { DENIED_CLAIM_MARK, DENIED_COPIES_MARK, MAX_DENIED_COPIES, parseTaskClaim } from "../../src/nats/contract.ts";

const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));

describe("parseTaskClaim", () => {
  it("reads an allow's claim, a spend and a denied-copies claim", () => {
    expect(parseTaskClaim(bytes({ taskId: "t-1", nonce: "n", submissionId: "S", gatewayId: "gw" }))).toEqual({ kind: "held", submissionId: "S" });
    expect(parseTaskClaim(bytes({ taskId: "t-1", submissionId: "S", outcome: DENIED_CLAIM_MARK }))).toEqual({ kind: "denied", submissionId: "S" });
    expect(parseTaskClaim(bytes({ taskId: "t-1", outcome: DENIED_COPIES_MARK, submissionIds: ["A", "B"] }))).toEqual({ kind: "denied-copies", submissionIds: ["A", "B"] });
  });

  it("a claim with no submission id is held by an unknown submission", () => {
    expect(parseTaskClaim(bytes({ taskId: "t-1" }))).toEqual({ kind: "held", submissionId: undefined });
    expect(parseTaskClaim(bytes({ taskId: "t-1", submissionId: 7 }))).toEqual({ kind: "held", submissionId: undefined });
  });

  it.each([
    ["not JSON", "{"],
    ["an array", [1]],
    ["a string", '"x"'],
    ["null", "null"],
    ["duplicate keys", '{"outcome":"denied","outcome":"x"}'],
    ["ids missing", { outcome: DENIED_COPIES_MARK }],
    ["ids not an array", { outcome: DENIED_COPIES_MARK, submissionIds: "A" }],
    ["an id not a string", { outcome: DENIED_COPIES_MARK, submissionIds: ["A", 1] }],
    ["more ids than a gateway writes", { outcome: DENIED_COPIES_MARK, submissionIds: Array.from({ length: MAX_DENIED_COPIES + 1 }, (_, i) => `S${i}`) }],
    ["larger than any claim", { taskId: "t-1", pad: "x".repeat(5_000) }],
  ])("%s is no claim", (_, v) => {
    expect(parseTaskClaim(bytes(v))).toBeUndefined();
  });
});
