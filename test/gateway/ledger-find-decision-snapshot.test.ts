// Found by review (0168ab9, Ledger.appendPrepared's decisionSeq fix-up). The fix-up moves a task's
// decisionSeq to the log's numbering only when its receipt comes back, on the live projection.
// A fold snapshot captures the projection synchronously when it is queued (Ledger.snapshot →
// captureState), which for a periodic snapshot (snapshotEvery; the service's default 1,000,000)
// is in the same tick as the entry that triggers it, and always before the receipts of every
// decision still in the group commit. Those decisions are written into the snapshot with their
// PROJECTED seq; the store's open check (foldDifference) ignores decisionSeq values, so the
// snapshot is accepted, and after a restart from it (a crash, or a stop() whose snapshot raced a
// decision) the task's decisionSeq names another record (here, the checkpoint). #allowedSubmission
// then answered undefined, and a copy of a task that ran, its claims lost, was `claimsUnread` →
// settled "denied" by its client: 0168ab9's failure, back after a restart. Now the gateway reads
// a task's decision with Ledger.findDecision, which reads on from decisionSeq (never behind the
// log's position) to the task's own decision.
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

it("after a restart from a periodic snapshot taken before a decision's receipt, the ledger still finds that decision in the log", async () => {
  h = levelHarness();
  let store = await AuditStore.open(await h.open(), storeOptions());
  const ledger = new Ledger(store, { snapshotEvery: 2 });
  // log [t0, cp]; the projection never sees the checkpoint.
  await ledger.append(trustEntry(0));
  expect(await store.checkpoint()).toBeDefined();
  // The second entry: a periodic snapshot is queued in the same tick.
  const allow = await ledger.append(claimDecision("T", "allow", "n1"));
  await ledger.snapshotSettled();
  expect(allow.seq).toBe(2);
  expect(ledger.state.tasks.get("T")?.decisionSeq).toBe(2); // live: fixed up
  await store.close(); // a crash: no shutdown snapshot

  store = await AuditStore.open(await h.open(), storeOptions());
  try {
    expect(store.openedFrom.snapshotSize).toBe(3); // restored from the periodic snapshot
    // The snapshot holds the projection's number (1: the checkpoint in the log)…
    const seq = store.state.tasks.get("T")?.decisionSeq;
    expect(seq).toBe(1);
    expect((await store.getRecord(1))?.type).toBe("checkpoint");
    // …and the ledger reads on to the task's own allow.
    const reopened = new Ledger(store);
    const rec = await reopened.findDecision("T");
    expect({ seq: rec?.seq, taskId: rec?.taskId, verdict: rec?.decision.verdict }).toEqual({ seq: 2, taskId: "T", verdict: "allow" });
    expect(await reopened.findDecision("nobody")).toBeUndefined();
  } finally {
    await store.close();
  }
});
