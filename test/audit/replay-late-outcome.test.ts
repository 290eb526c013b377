// Late outcomes (records.ts `late`) once the fold window has let their task go: replay
// (rederive.ts lateOutcomeProblem) then asks only "did the log ever allow this task id?"
// (AllowHistory), never how that allow's execution ended, nor what the fold holds for the id now.
// (Found by review, session 11. Now replay keeps the failed executions awaiting a late outcome,
// unwindowed, and judges a late outcome by that alone.)
import { afterEach, describe, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { scenarioTrustRoots, writeTrustSetup } from "../audit/scenario.ts";
import { T0, artifact, runTask } from "../audit/operator.ts";
import { memoryHarness, openStore } from "../audit/support.ts";

const W = 8;

describe("review s11: late outcomes after the fold window", () => {
  let store: AuditStore;
  afterEach(async () => {
    await store.close();
  });
  const setup = async (): Promise<void> => {
    store = await openStore(memoryHarness(), { checkpointEvery: 4, origin: "gw-test", foldWindow: W });
    await writeTrustSetup(store, true);
  };
  const found = async (): Promise<string[]> =>
    (await replay(backendLogSource(store.backend), scenarioTrustRoots(), { foldWindow: W })).divergences.map((d) => `${d.seq}:${d.kind}`);
  /** Honest traffic: pushes the fold window past earlier tasks (an operator controls how fast). */
  const traffic = async (tag: string): Promise<void> => {
    for (let i = 0; i < 3 * W; i++) await runTask(store, `t-${tag}-${i}`, artifact({ nonce: `n-${tag}-${String(i).padStart(3, "0")}`, now: T0 }), { now: T0 + 1 + i });
  };

  it("a 'late' outcome after a succeeded execution, once the window let the task go, is OUTCOME_WITHOUT_ALLOW (it would hide a second execution)", async () => {
    await setup();
    const { decision } = await runTask(store, "t-once", artifact({ nonce: "n-once", now: T0 }), { now: T0 });
    expect(decision.verdict).toBe("allow"); // and its outcome: succeeded (not timed out: no late outcome may follow)
    await traffic("a");
    // The operator runs t-once a second time and logs it as the 'rest' of the first execution.
    const second = await store.append({ type: "outcome", taskId: "t-once", status: "succeeded", late: true, resultDigest: "z".repeat(43) });
    await store.checkpoint();
    // Inside the window the same record is OUTCOME_WITHOUT_ALLOW (replay-outcomes.test.ts); it must stay one.
    expect(await found()).toEqual([`${second.seq}:OUTCOME_WITHOUT_ALLOW`]);
  });

  it("allowed, timed out (failed), the window passes, a redelivered copy is denied REPLAYED by the KV claim, then the handler ends: the genuine late outcome replays clean", async () => {
    await setup();
    const art = artifact({ nonce: "n-slow", now: T0 });
    const { decision } = await runTask(store, "t-slow", art, { now: T0, outcome: false });
    expect(decision.verdict).toBe("allow");
    await store.append({ type: "outcome", taskId: "t-slow", status: "failed", error: 'handler "transfer" took longer than 300000 ms: told to stop (ctx.signal), but it may still be running' });
    await traffic("b");
    // The fold (the gateway's ledger, too) has forgotten t-slow and its nonce. A copy of the
    // submission (redelivered, or published again) comes in: the local claims read fresh, the
    // cluster's nonce claim is taken: decide gives REPLAYED, as gateway.ts records it.
    const copy = await runTask(store, "t-slow", art, { now: T0 + 100, nonce: { key: art.payload.nonce, local: "fresh", cluster: "taken" } });
    expect(copy.decision.verdict).toBe("deny");
    expect(copy.decision.reasons).toEqual(["REPLAYED"]);
    // Then the timed-out handler ends after all: gateway.ts #watchLateHandler writes its late outcome.
    await store.append({ type: "outcome", taskId: "t-slow", status: "succeeded", late: true, resultDigest: "l".repeat(43) });
    await store.checkpoint();
    expect(await found()).toEqual([]);
  });
});
