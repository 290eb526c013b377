// The fold's view of tasks: what crash recovery and auditors follow from decision to outcome.
import { describe, expect, it } from "vitest";
import { applyRecord, cloneState, emptyState, fold, taskDecided, type AuditState } from "../../src/audit/fold.ts";
import { recordOf, type AuditEntry, type AuditRecord } from "../../src/audit/records.ts";
import { claimDecision as decision, claimOutcome as outcome } from "./support.ts";

const log = (entries: AuditEntry[]): AuditRecord[] => entries.map((e, seq) => recordOf(e, seq, "", 0));

describe("fold: task states", () => {
  it("a duplicate submission's deny never hides an allow still waiting for its outcome", () => {
    const s = fold(log([decision("a", "allow", "n1"), decision("a", "deny", "n1")]));
    expect(s.tasks.get("a")).toMatchObject({ status: "allowed", decisionSeq: 0, lastSeq: 1 });
    // …so its outcome still closes it, and a later duplicate does not reopen or relabel it.
    const done = fold(log([decision("a", "allow", "n1"), decision("a", "deny", "n1"), outcome("a"), decision("a", "deny", "n1")]));
    expect(done.tasks.get("a")).toMatchObject({ status: "succeeded", decisionSeq: 0, lastSeq: 3 });
  });

  it("a nonce seen taken spends it here only in logs from before task claims", () => {
    // With claims: a copy's REPLAYED (nonce taken) queued before the winner's decision on the
    // same gateway must not make the winner's nonce look spent; only a won claim spends it.
    const withClaims = fold(log([decision("copy", "deny", "n1")]));
    expect(withClaims.consumedNonces.has("n1")).toBe(false);
    expect(fold(log([decision("win", "allow", "n1")])).consumedNonces.has("n1")).toBe(true);
    const legacy = fold(log([{ type: "decision", taskId: "copy", input: { nonce: { key: "n1", local: "fresh", cluster: "taken" } }, decision: { verdict: "deny", checks: [], reasons: ["REPLAYED"] } }]));
    expect(legacy.consumedNonces.has("n1")).toBe(true);
  });

  it("a deny, then an allow for the same task id: the allow stands", () => {
    const s = fold(log([decision("b", "deny", "n2"), decision("b", "allow", "n3")]));
    expect(s.tasks.get("b")).toMatchObject({ status: "allowed", decisionSeq: 1 });
    expect(fold(log([decision("c", "deny", "n4")])).tasks.get("c")).toMatchObject({ status: "denied", decisionSeq: 0 });
  });
});

describe("fold: the window (finished tasks and spent nonces are forgotten, so memory stays flat)", () => {
  const evidence = (taskId: string): AuditEntry => ({ type: "evidence", taskId, kind: "request", signed: { payload: { taskId }, sig: "s" } });
  const filler = (n: number): AuditEntry[] => Array.from({ length: n }, (_, i) => ({ type: "trust", change: { op: "gateway.add", keyId: `k${i}` } }));
  const W = 5;
  const windowed = (entries: AuditEntry[]): AuditState => fold(log(entries), emptyState(W));

  it("a finished task and a spent nonce stay for exactly a window of records after their last record, then go", () => {
    // The nonce is spent at seq 0, the task finished at seq 1; what happened at seq q is still
    // in the fold that record q+W sees, and gone for record q+W+1.
    const head = [decision("a", "allow", "n1"), outcome("a")];
    const both = windowed([...head, ...filler(W - 1)]); // seqs up to W
    expect(taskDecided(both, "a")).toBe(true);
    expect(both.consumedNonces.has("n1")).toBe(true);
    const taskOnly = windowed([...head, ...filler(W)]); // up to W+1
    expect(taskDecided(taskOnly, "a")).toBe(true);
    expect(taskOnly.consumedNonces.has("n1")).toBe(false);
    const none = windowed([...head, ...filler(W + 1)]); // up to W+2
    expect(none.tasks.has("a")).toBe(false);
    expect(none.consumedNonces.has("n1")).toBe(false);
  });

  it("an allowed task without an outcome is never forgotten (crash recovery needs it)", () => {
    const s = windowed([decision("a", "allow", "n1"), ...filler(10 * W)]);
    expect(s.tasks.get("a")).toMatchObject({ status: "allowed" });
    expect(s.consumedNonces.has("n1")).toBe(false); // its nonce is the KV's to keep from then on
    const closed = windowed([decision("a", "allow", "n1"), ...filler(10 * W), outcome("a"), ...filler(W + 1)]);
    expect(closed.tasks.has("a")).toBe(false);
  });

  it("a task or nonce touched again is kept a window after its latest record, not its first", () => {
    // Denied after both claims were won (a Cedar deny, say): the nonce is spent.
    const spentDeny = (taskId: string, nonce: string): AuditEntry => ({
      type: "decision",
      taskId,
      input: { nonce: { key: nonce, local: "fresh", cluster: "claimed" }, taskClaim: { taskId, local: "fresh", cluster: "claimed" } },
      decision: { verdict: "deny", checks: [], reasons: ["POLICY_MISMATCH"] },
    });
    const s = windowed([spentDeny("a", "n1"), ...filler(W - 1), evidence("a"), spentDeny("b", "n1"), ...filler(W - 1)]);
    // Seq 0's entries are due, but "a" was touched at seq W and n1 spent again at W+1.
    expect(s.tasks.get("a")).toMatchObject({ status: "denied", lastSeq: W });
    expect(s.consumedNonces.get("n1")).toBe(W + 1);
    const later = windowed([spentDeny("a", "n1"), ...filler(W - 1), evidence("a"), spentDeny("b", "n1"), ...filler(W + 2)]);
    expect(later.tasks.has("a")).toBe(false);
    expect(later.consumedNonces.has("n1")).toBe(false);
  });

  it("a fold resumed mid-log from a copy (fold(records, from)) goes on exactly as the straight fold", () => {
    const entries = Array.from({ length: 400 }, (_, i) => [evidence(`t${i}`), decision(`t${i}`, i % 3 === 0 ? "deny" : "allow", `n${i % 50}`), ...(i % 3 === 0 || i % 7 === 0 ? [] : [outcome(`t${i}`)])]).flat();
    const records = log(entries);
    const straight = fold(records, emptyState(37));
    const half = fold(records.slice(0, 500), emptyState(37));
    const resumed = cloneState(half);
    for (const r of records.slice(500)) applyRecord(resumed, r);
    expect([...resumed.tasks].sort()).toEqual([...straight.tasks].sort());
    expect([...resumed.consumedNonces].sort()).toEqual([...straight.consumedNonces].sort());
  });

  it("checkpoints do not count: the gateway's projection, which never sees them, forgets in step with the log", () => {
    const entries = Array.from({ length: 200 }, (_, i) => [evidence(`t${i}`), decision(`t${i}`, i % 4 === 0 ? "deny" : "allow", `n${i % 30}`), ...(i % 4 === 0 ? [] : [outcome(`t${i}`)])]).flat();
    const projection = fold(log(entries), emptyState(W * 3));
    // The store's log: the same entries with a checkpoint after every 7th.
    const withCheckpoints: AuditRecord[] = [];
    entries.forEach((e, i) => {
      withCheckpoints.push(recordOf(e, withCheckpoints.length, "", 0));
      if (i % 7 === 6) {
        const seq = withCheckpoints.length;
        withCheckpoints.push({ v: 1, seq, prev: "", time: 0, type: "checkpoint", checkpoint: { payload: { kind: "failclosed/checkpoint/v1", origin: "o", size: seq, root: "r", time: 0 }, sig: "s" } });
      }
    });
    const logState = fold(withCheckpoints, emptyState(W * 3));
    expect([...logState.tasks.keys()].sort()).toEqual([...projection.tasks.keys()].sort());
    expect([...logState.consumedNonces.keys()].sort()).toEqual([...projection.consumedNonces.keys()].sort());
    expect(logState.entries).toBe(projection.entries);
  });

  it("a log from before task claims never forgets: it is folded, and replayed, as it was written", () => {
    const legacy = (taskId: string, nonce: string): AuditEntry => ({ type: "decision", taskId, input: { nonce: { key: nonce, local: "fresh", cluster: "claimed" } }, decision: { verdict: "allow", checks: [], reasons: [] } });
    const old = windowed([legacy("a", "n1"), outcome("a"), ...filler(10 * W)]);
    expect(old.windowed).toBe(false);
    expect(taskDecided(old, "a")).toBe(true);
    expect(old.consumedNonces.has("n1")).toBe(true);
    expect(old.retire.tasks.seqs).toEqual([]);
    // A gateway of this version continuing that log: forgetting starts at its first claim.
    const continued = windowed([legacy("a", "n1"), outcome("a"), decision("b", "allow", "n2"), outcome("b"), ...filler(10 * W)]);
    expect(continued.windowed).toBe(true);
    expect(taskDecided(continued, "a")).toBe(true);
    expect(continued.tasks.has("b")).toBe(false);
    expect(continued.consumedNonces.has("n2")).toBe(false);
  });

  it("memory stays flat over a long log: 100,000 tasks through a window of 1,000 records", () => {
    const s = emptyState(1000);
    let seq = 0;
    for (let i = 0; i < 100_000; i++) {
      for (const e of [evidence(`t${i}`), decision(`t${i}`, i % 10 === 0 ? "deny" : "allow", `n${i}`), ...(i % 10 === 0 ? [] : [outcome(`t${i}`)])]) {
        applyRecord(s, recordOf(e, seq++, "", 0));
      }
    }
    expect(s.size).toBe(seq);
    expect(s.tasks.size).toBeLessThanOrEqual(1000);
    expect(s.consumedNonces.size).toBeLessThanOrEqual(1000);
    for (const r of [s.retire.tasks, s.retire.nonces]) expect(r.seqs.length).toBeLessThan(3 * 1000 + 8192);
    // The newest are all there.
    expect(taskDecided(s, "t99999")).toBe(true);
    expect(s.consumedNonces.has("n99999")).toBe(true);
  });
});
