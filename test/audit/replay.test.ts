// Tamper classes (issue "Audit event store"): each must be detected, with the right seq, on
// both backends.
import { afterEach, describe, expect, it } from "vitest";
import { canonicalize, type JsonValue } from "../../src/canonical/jcs.ts";
import { fold } from "../../src/audit/fold.ts";
import { TRUST_FROM_LOG, isTrustFromLog, rehydrateDecisionInput, trustSnapshotOf } from "../../src/audit/trust-view.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { bundleKeyFor } from "../../src/audit/keys.ts";
import type { AuditRecord, CheckpointPayload } from "../../src/audit/records.ts";
import { replay, type ReplayReport } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { decide } from "../../src/core/decide.ts";
import type { DecisionInput, SnapshotDecisionInput } from "../../src/core/types.ts";
import type { Signed } from "../../src/crypto/signing.ts";
import { scenarioTrustRoots, writeScenario } from "./scenario.ts";
import { withWorkersKilled } from "../helpers/worker-killer.ts";
import { GATEWAY_KEY, HARNESSES, ROGUE_KEY, openStore, type BackendHarness } from "./support.ts";
import { deleteRecords, flipBit, readRecords, swapRecords, writeForgedLog, type Forgeable } from "./tamper.ts";

const TASKS = 30;

const strip = (r: AuditRecord): Forgeable => {
  const { seq: _s, prev: _p, ...rest } = r;
  return rest;
};
const kinds = (rep: ReplayReport): string[] => rep.divergences.map((d) => `${d.seq}:${d.kind}`);

for (const make of HARNESSES) {
  describe(`audit replay: ${make().name}`, () => {
    let h: BackendHarness;
    let store: AuditStore;
    let published: Signed<CheckpointPayload>[];
    afterEach(async () => {
      await store.close();
      h.cleanup();
    });

    const setup = async (): Promise<void> => {
      h = make();
      published = [];
      store = await openStore(h, { checkpointEvery: 16, origin: "gw-test", onCheckpoint: (cp) => void published.push(cp) });
      await writeScenario(store, TASKS);
    };
    const run = (withPublished = false): Promise<ReplayReport> =>
      replay(backendLogSource(store.backend), scenarioTrustRoots(), withPublished ? { checkpoints: published } : {});
    const checkpointSeqs = async (): Promise<number[]> => (await readRecords(store.backend)).filter((r) => r.type === "checkpoint").map((r) => r.seq);

    it("an untouched log verifies and every decision re-derives", async () => {
      await setup();
      const rep = await run(true);
      expect(kinds(rep)).toEqual([]);
      expect(rep.ok).toBe(true);
      expect(rep.decisionsRederived).toBe(TASKS);
      expect(rep.recordsChecked).toBe(store.size);
      expect(rep.checkpointsVerified).toBeGreaterThanOrEqual(2 * published.length);
      expect(rep.root).toBe(store.root());
    });

    it("one bit flipped in any record is reported at that record", async () => {
      await setup();
      const size = store.size;
      // A deterministic spread of records and bit positions, including first and last.
      for (const [seq, bit] of [[0, 3], [1, 100], [size - 1, 77], [Math.floor(size / 2), 900], [17, 5], [40, 2000], [size - 2, 13]] as const) {
        const original = (await store.backend.get(bundleKeyFor(seq)))!;
        await flipBit(store.backend, seq, bit);
        const rep = await run();
        expect(rep.ok, `flip ${seq}/${bit}`).toBe(false);
        expect(rep.divergences[0]!.seq, `flip ${seq}/${bit}: ${kinds(rep).join(" ")}`).toBe(seq);
        await store.backend.batch([{ type: "put", key: bundleKeyFor(seq), value: original }], { sync: true });
      }
      expect((await run()).ok).toBe(true);
    });

    it("a deleted record is reported at its seq", async () => {
      await setup();
      await deleteRecords(store.backend, [20]);
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: 20, kind: "SEQ_MISMATCH" });
    });

    it("two swapped records are reported at the first", async () => {
      await setup();
      await swapRecords(store.backend, 30, 31);
      const rep = await run();
      expect(rep.divergences[0]!.seq).toBe(30);
      expect(rep.divergences[0]!.kind).toMatch(/SEQ_MISMATCH|RECORD_MALFORMED|LEAF_MISMATCH/);
    });

    it("a truncated tail is caught by the head, and by published checkpoints when the head is rewritten too", async () => {
      await setup();
      const records = await readRecords(store.backend);
      const cut = (await checkpointSeqs()).at(-1)! - 3;
      await deleteRecords(store.backend, records.slice(cut).map((r) => r.seq));
      expect((await run()).divergences[0]).toMatchObject({ seq: cut, kind: "TRUNCATED" });
      // A careful attacker fixes head and tree: only a witness's checkpoint still knows.
      await writeForgedLog(store.backend, records.slice(0, cut).map(strip));
      expect((await run()).ok).toBe(true);
      const rep = await run(true);
      expect(rep.divergences[0]).toMatchObject({ seq: cut, kind: "TRUNCATED" });
    });

    it("a tail rewritten with a recomputed chain is caught by the signed checkpoints", async () => {
      await setup();
      const records = await readRecords(store.backend);
      const k = records.findIndex((r) => r.seq > 20 && r.type === "outcome");
      const forged = records.map((r) => (r.seq === k && r.type === "outcome" ? { ...r, status: "failed" as const } : r)).map(strip);
      await writeForgedLog(store.backend, forged);
      const firstCp = (await checkpointSeqs()).find((s) => s > k)!;
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: firstCp, kind: "CHECKPOINT_ROOT" });
      expect(kinds(await run(true))).toContain(`${published.find((c) => c.payload.size > k)!.payload.size}:CHECKPOINT_ROOT`);
    });

    it("a forged allow with a valid chain and checkpoints re-signed by an untrusted key is caught by the checkpoint signatures", async () => {
      await setup();
      const records = await readRecords(store.backend);
      const allow = records.find((r) => r.type === "decision" && r.decision.verdict === "allow" && r.seq > 25)!;
      const k = allow.seq + 1;
      const forged = [...records.slice(0, k), { ...allow, taskId: "forged-task" }, ...records.slice(k)].map(strip);
      await writeForgedLog(store.backend, forged, ROGUE_KEY);
      const firstCp = (await checkpointSeqs()).find((s) => s > k)!;
      const rep = await run();
      expect(rep.divergences[0]!.seq).toBeGreaterThanOrEqual(k);
      expect(kinds(rep)).toContain(`${firstCp}:CHECKPOINT_SIGNATURE`);
      expect(rep.divergences.filter((d) => d.kind === "CHECKPOINT_SIGNATURE").every((d) => d.seq > k)).toBe(true);
    });

    describe("a forged allow whose evidence does not support it is caught by re-derivation (writer holds the gateway key)", () => {
      const forgeDecision = async (pick: (r: AuditRecord) => boolean, edit: (input: SnapshotDecisionInput) => void, keepDecision = false): Promise<number> => {
        const records = await readRecords(store.backend);
        const target = records.find(pick)!;
        if (target.type !== "decision") throw new Error("not a decision");
        // A by-reference input (trust-view.ts) is forged on the full snapshot the fold gives there.
        const snapshot = trustSnapshotOf(fold(records.slice(0, target.seq)));
        const input = structuredClone(rehydrateDecisionInput(target.input, snapshot)) as unknown as SnapshotDecisionInput;
        const trustBefore = canonicalize(input.trust);
        edit(input);
        // Keep the reference unless the forger rewrote the trust snapshot itself.
        const byRef = canonicalize(input.trust) === trustBefore && isTrustFromLog((target.input as { trust?: unknown }).trust);
        const recordedInput = byRef ? { ...(input as unknown as Record<string, JsonValue>), trust: TRUST_FROM_LOG } : (input as unknown as JsonValue);
        const decision = keepDecision ? { ...target.decision, verdict: "allow" as const, reasons: [], checks: target.decision.checks.map((c) => ({ check: c.check, ok: true })) } : decide(input);
        expect(decision.verdict).toBe("allow");
        const forged = records.map((r) => (r.seq === target.seq ? { ...target, input: recordedInput, decision } : r)).map(strip);
        await writeForgedLog(store.backend, forged, GATEWAY_KEY);
        return target.seq;
      };
      const denied = (code: string) => (r: AuditRecord) => r.type === "decision" && r.decision.reasons.includes(code);

      it("recorded verdict flipped to allow → DECISION_MISMATCH", async () => {
        await setup();
        const k = await forgeDecision(denied("REVOKED"), () => undefined, true);
        const rep = await run();
        expect(rep.divergences).toEqual([expect.objectContaining({ seq: k, kind: "DECISION_MISMATCH" })]);
      });

      it("input claims 'not revoked' → TRUST_STATE", async () => {
        await setup();
        const k = await forgeDecision(denied("REVOKED"), (i) => void (i.trust.revokedArtifacts = []));
        const rep = await run();
        expect(rep.divergences[0]).toMatchObject({ seq: k, kind: "TRUST_STATE" });
      });

      it("input claims 'nonce unused' → NONCE_STATE", async () => {
        await setup();
        const k = await forgeDecision(denied("REPLAYED"), (i) => {
          i.nonce = { ...i.nonce, local: "fresh", cluster: "claimed" };
          // The forger also claims the task id was won (the gateway makes that claim only after the nonce's).
          if (i.taskClaim !== undefined) i.taskClaim = { ...i.taskClaim, cluster: "claimed" };
        });
        const rep = await run();
        // The claim contradicts the fold, and the nonce an earlier allow spent is spent again.
        expect(kinds(rep)).toEqual([`${k}:NONCE_STATE`, `${k}:NONCE_REUSED`]);
      });

      for (const legacy of [false, true]) {
        it(`a second allow for a task id the log already allowed → TASK_STATE (${legacy ? "input without a task claim, as logs from before claims" : "input claiming the id is fresh"})`, async () => {
          await setup();
          const records = await readRecords(store.backend);
          const allow = records.find((r) => r.type === "decision" && r.decision.verdict === "allow" && r.seq > 20)!;
          if (allow.type !== "decision") throw new Error("not a decision");
          const evidence = records.filter((r) => r.type === "evidence" && r.taskId === allow.taskId);
          let second: AuditRecord = allow;
          if (legacy) {
            const input = structuredClone(rehydrateDecisionInput(allow.input, trustSnapshotOf(fold(records.slice(0, allow.seq))))) as unknown as DecisionInput;
            delete input.taskClaim;
            const decision = decide(input);
            expect(decision.verdict).toBe("allow");
            second = { ...allow, input: { ...(input as unknown as Record<string, JsonValue>), trust: TRUST_FROM_LOG }, decision };
          }
          // The task's evidence and decision again, right after its outcome: a second run of one task.
          const outcomeAt = records.findIndex((r) => r.type === "outcome" && r.taskId === allow.taskId);
          const forged = [...records.slice(0, outcomeAt + 1), ...evidence, second, ...records.slice(outcomeAt + 1)];
          await writeForgedLog(store.backend, forged.map(strip), GATEWAY_KEY);
          const rep = await run();
          const at = outcomeAt + 1 + evidence.length;
          expect(kinds(rep)).toContain(`${at}:TASK_STATE`);
          expect(rep.divergences.find((d) => d.kind === "TASK_STATE")!.detail).toMatch(legacy ? /second allow for task/ : /claimed undecided but the log already allowed it/);
        });
      }

      it("input claims its task id was already decided when the log never allowed it → TASK_STATE", async () => {
        await setup();
        // A deny stays a deny here: the forged claim is caught as a claim, not by the verdict.
        const records = await readRecords(store.backend);
        const target = records.find((r) => r.type === "decision" && r.decision.verdict === "allow" && r.seq > 20)!;
        if (target.type !== "decision") throw new Error("not a decision");
        const input = structuredClone(target.input) as Record<string, JsonValue>;
        input["taskClaim"] = { ...(input["taskClaim"] as Record<string, JsonValue>), local: "decided" };
        const decision = decide(rehydrateDecisionInput(input, trustSnapshotOf(fold(records.slice(0, target.seq)))) as unknown as DecisionInput);
        expect(decision.reasons).toEqual(["REPLAYED"]);
        await writeForgedLog(store.backend, records.map((r) => (r.seq === target.seq ? { ...target, input, decision } : r)).map(strip), GATEWAY_KEY);
        const rep = await run();
        expect(rep.divergences.filter((d) => d.kind === "TASK_STATE").map((d) => d.seq)).toEqual([target.seq]);
      });

      it("allow without recorded evidence → EVIDENCE_MISSING", async () => {
        await setup();
        const records = await readRecords(store.backend);
        const allow = records.find((r) => r.type === "decision" && r.decision.verdict === "allow" && r.seq > 20)!;
        const forged = records.filter((r) => !(r.type === "evidence" && r.taskId === (allow as { taskId: string }).taskId));
        await writeForgedLog(store.backend, forged.map(strip), GATEWAY_KEY);
        const rep = await run();
        expect(rep.divergences.length).toBeGreaterThan(0);
        expect(rep.divergences.every((d) => d.kind === "EVIDENCE_MISSING" && d.seq === allow.seq - 3)).toBe(true);
      });
    });
  });
}

describe("audit replay: worker threads", () => {
  it("recomputes decisions on a worker pool with the same report", async () => {
    const h = HARNESSES[1]!();
    const store = await openStore(h, { checkpointEvery: 16 });
    await writeScenario(store, 20);
    const inline = await replay(backendLogSource(store.backend), scenarioTrustRoots());
    const pooled = await replay(backendLogSource(store.backend), scenarioTrustRoots(), { workers: 2, chunkSize: 4 });
    expect(pooled).toEqual(inline);
    // Workers only (this thread never helps), and one worker helped by this thread.
    expect(await replay(backendLogSource(store.backend), scenarioTrustRoots(), { workers: 2, chunkSize: 4, helpInline: false })).toEqual(inline);
    expect(await replay(backendLogSource(store.backend), scenarioTrustRoots(), { workers: 1, chunkSize: 2 })).toEqual(inline);
    expect(pooled.decisionsRederived).toBe(20);
    // A flipped verdict is still found when the pool does the recomputing.
    const records = await readRecords(store.backend);
    const target = records.find((r) => r.type === "decision" && r.decision.verdict === "deny")!;
    const forged = records.map((r) => (r.seq === target.seq && r.type === "decision" ? { ...r, decision: { ...r.decision, reasons: [] } } : r)).map(strip);
    await writeForgedLog(store.backend, forged, GATEWAY_KEY);
    const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots(), { workers: 2, chunkSize: 4 });
    expect(kinds(rep)).toEqual([`${target.seq}:DECISION_MISMATCH`]);
    await store.close();
  });

  it("a worker that dies does not hang replay or lose a decision: its chunks are recomputed here", async () => {
    const h = HARNESSES[1]!();
    const store = await openStore(h, { checkpointEvery: 16 });
    await writeScenario(store, 20);
    const records = await readRecords(store.backend);
    const target = records.find((r) => r.type === "decision" && r.decision.verdict === "deny")!;
    const forged = records.map((r) => (r.seq === target.seq && r.type === "decision" ? { ...r, decision: { ...r.decision, reasons: [] } } : r)).map(strip);
    await writeForgedLog(store.backend, forged, GATEWAY_KEY);
    const inline = await replay(backendLogSource(store.backend), scenarioTrustRoots());
    expect(kinds(inline)).toEqual([`${target.seq}:DECISION_MISMATCH`]);
    // Only the first worker dies (the pool replaces it), then every worker does (the pool retires them).
    for (const limit of [1, Infinity]) {
      const { result, killed } = await withWorkersKilled(() => replay(backendLogSource(store.backend), scenarioTrustRoots(), { workers: 1, chunkSize: 2, helpInline: false }), limit);
      expect(killed).toBeGreaterThan(0);
      expect(result).toEqual(inline);
    }
    await store.close();
  });
});
