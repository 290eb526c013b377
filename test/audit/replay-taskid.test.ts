// Replay holds each decision to the task id its signed request names: an allow filed under
// another id would let the request's own task id run a second time unnoticed.
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { recordedDecisionInput } from "../../src/audit/trust-view.ts";
import { decide } from "../../src/core/decide.ts";
import { buildInput, makeArtifact, runTask, scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { storeOptions } from "./support.ts";

describe("decision taskId vs the request it rests on", () => {
  it("an allow recorded under another task id than its request's is reported, and so is the second execution of that request's task id", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions({ checkpointEvery: 16 }));
    const now = 1_700_000_000_000;
    await writeTrustSetup(store);
    // Task "task-0", authorised by artifact A, recorded (evidence, decision, outcome) under the id "other".
    const input = buildInput(store, "task-0", makeArtifact(0, now), now);
    for (const [kind, signed] of [["request", input.request], ["artifact", input.chain[0]], ["lineage", input.lineage[0]]] as const) {
      await store.append({ type: "evidence", taskId: "other", kind, signed: signed as never });
    }
    const decision = decide(input);
    expect(decision.verdict).toBe("allow");
    const first = await store.append({ type: "decision", taskId: "other", input: recordedDecisionInput(input), decision });
    await store.append({ type: "outcome", taskId: "other", status: "succeeded", resultDigest: "r" });
    // The same task id "task-0" allowed again, with a second artifact B (fresh nonce).
    const second = await runTask(store, "task-0", makeArtifact(1, now), now + 1);
    expect(second.decision.verdict).toBe("allow");
    await store.checkpoint();
    const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots());
    await store.close();
    expect(rep.ok).toBe(false);
    expect(rep.divergences.map((d) => [d.seq, d.kind])).toContainEqual([first.seq, "TASK_ID_MISMATCH"]);
    expect(rep.divergences.find((d) => d.kind === "TASK_ID_MISMATCH")!.detail).toBe('decision recorded for task "other"; its request names "task-0"');
    // The second allow of the request's task id: the first one spent it, under another name.
    expect(rep.divergences.filter((d) => d.seq !== first.seq)).toEqual([{ seq: second.seq, kind: "TASK_REUSED", detail: `task task-0 was already allowed at seq ${first.seq}` }]);
  });
});
