// An outcome record is an execution: the gateway writes one only for a task whose allow it
// committed (after its handler ran, when it was stopped before running, or at a restart for an
// allow it died executing). Replay holds every outcome to an allow waiting for it in the fold;
// anything else is OUTCOME_WITHOUT_ALLOW: a task nobody authorized, a denied one, or one allow
// executed twice.
import { afterEach, describe, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { HOUR, T0, artifact, runTask } from "./operator.ts";
import { evidenceEntry, memoryHarness, openStore } from "./support.ts";

describe("replay and outcome records", () => {
  let store: AuditStore;
  afterEach(async () => {
    await store.close();
  });

  const setup = async (foldWindow?: number): Promise<void> => {
    store = await openStore(memoryHarness(), { checkpointEvery: 4, origin: "gw-test", ...(foldWindow !== undefined ? { foldWindow } : {}) });
    await writeTrustSetup(store, true);
  };
  const run = (foldWindow?: number) => replay(backendLogSource(store.backend), scenarioTrustRoots(), foldWindow !== undefined ? { foldWindow } : {});
  const found = async (foldWindow?: number): Promise<string[]> => (await run(foldWindow)).divergences.map((d) => `${d.seq}:${d.kind}`);

  it("an honest allow and its outcome replay clean", async () => {
    await setup();
    const { decision } = await runTask(store, "t-honest", artifact({ nonce: "n-honest", now: T0 }), { now: T0 });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    expect((await run()).divergences).toEqual([]);
  });

  it("the outcomes a gateway writes without running the handler replay clean: stopped before execution, interrupted by a crash", async () => {
    await setup();
    // Allowed, then stopped between commit and execution (gateway.ts recordDenial).
    await runTask(store, "t-stopped", artifact({ nonce: "n-stopped", now: T0 }), { now: T0, outcome: false });
    await store.append({ type: "outcome", taskId: "t-stopped", status: "failed", error: "denied before execution: REVOKED: revoked while committing" });
    // Allowed, then the process died executing; a duplicate submission's deny comes in between
    // and leaves the allow waiting (fold.ts); the restart records it interrupted.
    const crashed = artifact({ nonce: "n-crashed", now: T0 });
    await runTask(store, "t-crashed", crashed, { now: T0, outcome: false });
    const dup = await runTask(store, "t-crashed", crashed, { now: T0 + 1 });
    expect(dup.decision.verdict).toBe("deny");
    await store.append({ type: "outcome", taskId: "t-crashed", status: "failed", error: "interrupted: gateway stopped before the outcome was recorded" });
    await store.checkpoint();
    expect((await run()).divergences).toEqual([]);
  });

  it("an allowed task waiting for its outcome is never forgotten by the fold window: a long execution's outcome replays clean", async () => {
    const W = 8;
    await setup(W);
    await runTask(store, "t-long", artifact({ nonce: "n-long", now: T0 }), { now: T0, outcome: false });
    for (let i = 0; i < 3 * W; i++) await runTask(store, `t-${i}`, artifact({ nonce: `n-${String(i).padStart(3, "0")}`, now: T0 }), { now: T0 + 1 + i });
    await store.append({ type: "outcome", taskId: "t-long", status: "succeeded", resultDigest: "r".repeat(43) });
    await store.checkpoint();
    expect(await found(W)).toEqual([]);
  });

  it("an outcome for a task id the log never decided is OUTCOME_WITHOUT_ALLOW", async () => {
    await setup();
    await runTask(store, "t-honest", artifact({ nonce: "n-honest", now: T0 }), { now: T0 });
    // The operator ran a task nobody authorized and logged its result.
    const ghost = await store.append({ type: "outcome", taskId: "t-ghost", status: "succeeded", resultDigest: "x".repeat(43) });
    await store.checkpoint();
    const rep = await run();
    expect(rep.ok).toBe(false);
    expect(rep.divergences).toEqual([{ seq: ghost.seq, kind: "OUTCOME_WITHOUT_ALLOW", detail: "outcome for task t-ghost, which the log never allowed" }]);
  });

  it("an outcome for a task with evidence but no decision is OUTCOME_WITHOUT_ALLOW", async () => {
    await setup();
    await store.append(evidenceEntry("t-pending"));
    const ran = await store.append({ type: "outcome", taskId: "t-pending", status: "succeeded", resultDigest: "x".repeat(43) });
    await store.checkpoint();
    expect(await found()).toEqual([`${ran.seq}:OUTCOME_WITHOUT_ALLOW`]);
  });

  it("an outcome for a task the log denied is OUTCOME_WITHOUT_ALLOW", async () => {
    await setup();
    // Denied: the artifact expired an hour before the clock reading.
    const { decision, seq } = await runTask(store, "t-denied", artifact({ nonce: "n-denied", now: T0 - 2 * HOUR }), { now: T0 });
    expect(decision.verdict).toBe("deny");
    const ran = await store.append({ type: "outcome", taskId: "t-denied", status: "succeeded", resultDigest: "y".repeat(43) });
    expect(ran.seq).toBe(seq + 1);
    await store.checkpoint();
    const rep = await run();
    expect(rep.ok).toBe(false);
    expect(rep.divergences).toEqual([{ seq: ran.seq, kind: "OUTCOME_WITHOUT_ALLOW", detail: `outcome for task t-denied, which the log denied at seq ${seq}` }]);
  });

  it("two outcomes for one allow (the task executed twice) are OUTCOME_WITHOUT_ALLOW at the second", async () => {
    await setup();
    const { decision } = await runTask(store, "t-twice", artifact({ nonce: "n-twice", now: T0 }), { now: T0 });
    expect(decision.verdict).toBe("allow");
    const again = await store.append({ type: "outcome", taskId: "t-twice", status: "failed", error: "ran again" });
    await store.checkpoint();
    const rep = await run();
    expect(rep.divergences).toEqual([{ seq: again.seq, kind: "OUTCOME_WITHOUT_ALLOW", detail: "second outcome for task t-twice, already succeeded: one allow, two executions" }]);
  });

  it("a late outcome (a timed-out handler that ended after all) follows its failed outcome once; after success, twice, or for nothing it is OUTCOME_WITHOUT_ALLOW", async () => {
    const W = 8;
    await setup(W);
    // Honest: allowed, failed (timed out), late: succeeded. Then a late one for a task the fold
    // window has let go of since: still the allow's.
    await runTask(store, "t-late", artifact({ nonce: "n-late", now: T0 }), { now: T0, outcome: false });
    await store.append({ type: "outcome", taskId: "t-late", status: "failed", error: 'handler "transfer" took longer than 300 ms: told to stop' });
    await store.append({ type: "outcome", taskId: "t-late", status: "succeeded", late: true, resultDigest: "l".repeat(43) });
    await runTask(store, "t-slow", artifact({ nonce: "n-slow", now: T0 }), { now: T0, outcome: false });
    await store.append({ type: "outcome", taskId: "t-slow", status: "failed", error: "timed out" });
    for (let i = 0; i < 3 * W; i++) await runTask(store, `t-${i}`, artifact({ nonce: `n-${String(i).padStart(3, "0")}`, now: T0 }), { now: T0 + 1 + i });
    await store.append({ type: "outcome", taskId: "t-slow", status: "failed", late: true, error: "after its timeout: ECONNRESET" });
    await store.checkpoint();
    expect(await found(W)).toEqual([]);
    // Forged: a second late one, one after a success, one for a task never allowed.
    const second = await store.append({ type: "outcome", taskId: "t-late", status: "succeeded", late: true, resultDigest: "m".repeat(43) });
    await runTask(store, "t-done", artifact({ nonce: "n-done", now: T0 }), { now: T0 + 100 });
    const afterSuccess = await store.append({ type: "outcome", taskId: "t-done", status: "succeeded", late: true, resultDigest: "n".repeat(43) });
    const ghost = await store.append({ type: "outcome", taskId: "t-ghost", status: "succeeded", late: true, resultDigest: "o".repeat(43) });
    await store.checkpoint();
    expect(await found(W)).toEqual([`${second.seq}:OUTCOME_WITHOUT_ALLOW`, `${afterSuccess.seq}:OUTCOME_WITHOUT_ALLOW`, `${ghost.seq}:OUTCOME_WITHOUT_ALLOW`]);
  });

  it("verify (structure only) does not judge outcomes", async () => {
    await setup();
    await store.append({ type: "outcome", taskId: "t-ghost", status: "succeeded", resultDigest: "x".repeat(43) });
    await store.checkpoint();
    expect((await replay(backendLogSource(store.backend), scenarioTrustRoots(), { rederive: false })).divergences).toEqual([]);
  });
});
