// The fold's view of tasks: what crash recovery and auditors follow from decision to outcome.
import { describe, expect, it } from "vitest";
import { fold } from "../../src/audit/fold.ts";
import { recordOf, type AuditEntry, type AuditRecord } from "../../src/audit/records.ts";

const decision = (taskId: string, verdict: "allow" | "deny", nonce: string): AuditEntry => ({
  type: "decision",
  taskId,
  input: { nonce: { key: nonce, local: "fresh", cluster: verdict === "allow" ? "claimed" : "taken" } },
  decision: { verdict, checks: [], reasons: verdict === "deny" ? ["REPLAYED"] : [] },
});
const outcome = (taskId: string): AuditEntry => ({ type: "outcome", taskId, status: "succeeded", resultDigest: "q".repeat(43) });
const log = (entries: AuditEntry[]): AuditRecord[] => entries.map((e, seq) => recordOf(e, seq, "", 0));

describe("fold: task states", () => {
  it("a duplicate submission's deny never hides an allow still waiting for its outcome", () => {
    const s = fold(log([decision("a", "allow", "n1"), decision("a", "deny", "n1")]));
    expect(s.tasks.get("a")).toMatchObject({ status: "allowed", decisionSeq: 0, lastSeq: 1 });
    // …so its outcome still closes it, and a later duplicate does not reopen or relabel it.
    const done = fold(log([decision("a", "allow", "n1"), decision("a", "deny", "n1"), outcome("a"), decision("a", "deny", "n1")]));
    expect(done.tasks.get("a")).toMatchObject({ status: "succeeded", decisionSeq: 0, lastSeq: 3 });
  });

  it("a deny, then an allow for the same task id: the allow stands", () => {
    const s = fold(log([decision("b", "deny", "n2"), decision("b", "allow", "n3")]));
    expect(s.tasks.get("b")).toMatchObject({ status: "allowed", decisionSeq: 1 });
    expect(fold(log([decision("c", "deny", "n4")])).tasks.get("c")).toMatchObject({ status: "denied", decisionSeq: 0 });
  });
});
