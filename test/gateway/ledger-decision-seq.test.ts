// Found by review (0168ab9, Ledger.appendPrepared's decisionSeq fix-up). The fix-up that moves a task's
// decisionSeq from the projection's numbering to the log's runs for EVERY decision entry, and
// decides "this entry is the one that set decisionSeq" by comparing the task's current
// decisionSeq with the entry's projected seq. But a deny after an allow (a copy of the
// submission, REPLAYED) does not set decisionSeq (fold.ts keeps the allow's), and the allow's
// decisionSeq has already been moved to the LOG's numbering. When the allow's log seq equals
// the deny's projected seq (the deny comes as many entries after the allow as checkpoints were
// written this run before the allow), the deny's fix-up matches and moves decisionSeq onto the
// DENY record. #allowedSubmission (gateway.ts) then reads a deny there and answers undefined:
// the copy of a task that RAN is `claimsUnread`, and with its claims lost its client settles
// it "denied" — the very failure 0168ab9 set out to fix. Now only the entry that set decisionSeq
// (as the fold decides it) moves it.
//
// Real LevelDB (test/audit/support.ts levelHarness), the gateway's own Ledger.
import { afterEach, expect, it } from "vitest";
import { AuditStore } from "../../src/audit/store.ts";
import { Ledger } from "../../src/gateway/ledger.ts";
import { claimDecision, levelHarness, storeOptions, trustEntry, type BackendHarness } from "../audit/support.ts";

let h: BackendHarness | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

it("a deny after an allow for the same task never moves the task's decisionSeq off the allow", async () => {
  h = levelHarness();
  const store = await AuditStore.open(await h.open(), storeOptions());
  try {
    const ledger = new Ledger(store);
    // One entry, then one checkpoint the projection never sees: log [t0, cp], projection [t0].
    await ledger.append(trustEntry(0));
    expect(await store.checkpoint()).toBeDefined();
    // The allow: projected seq 1, log seq 2.
    const allow = await ledger.append(claimDecision("T", "allow", "n1"));
    expect(allow.seq).toBe(2);
    expect(ledger.state.tasks.get("T")?.decisionSeq).toBe(2); // the fix-up worked for the allow
    // A copy of the submission, denied REPLAYED: projected seq 2 (= the allow's log seq), log seq 3.
    const deny = await ledger.append(claimDecision("T", "deny", "n1"));
    expect(deny.seq).toBe(3);
    const seq = ledger.state.tasks.get("T")?.decisionSeq;
    const rec = seq === undefined ? undefined : await store.getRecord(seq);
    // The task's decisionSeq must still name its allow, as a fold of the log gives it.
    expect({ seq, type: rec?.type, verdict: rec?.type === "decision" ? rec.decision.verdict : undefined }).toEqual({ seq: 2, type: "decision", verdict: "allow" });
  } finally {
    await store.close();
  }
});
