// CLOCK_MISMATCH (clock-audit.ts) on logs a real gateway writes. The bound rests on "an allow
// whose commit takes longer than the step timeout is denied before it runs, so an allow that ran
// was stamped within that of its now". But (1) the late-committed allow is still IN the log (the
// gateway cannot unwrite it; it follows it with a failed "denied before execution" outcome), and
// replay judges every allow record, executed or not; (2) the step timeout is a timer (monotonic),
// `now` and the record's `time` are two wall-clock readings: a clock step between them (NTP
// stepping a fast clock back) separates them without any slow commit.
// (Found by review, session 11. Now a CLOCK_MISMATCH is held until the task's outcome and
// dropped at "denied before execution"; (2), an NTP step during a commit, stays open: README.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend, type AuditBackend, type KvOp } from "../../src/audit/backend.ts";
import { WrappedBackend } from "../../src/testkit/breakable-backend.ts";
import { backendLogSource, exportJsonl } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, worldPerTest } from "../gateway/one-gateway-world.ts";

/** A real LevelDB backend whose next synced batch can be made slow (a disk under load). */
class SlowOnce extends WrappedBackend {
  /** Set: the next batch waits this long; `during` runs halfway through it. */
  next: { ms: number; during?: () => void } | undefined;
  override async batch(ops: readonly KvOp[], opts: { readonly sync: boolean }): Promise<void> {
    const slow = this.next;
    this.next = undefined;
    if (slow !== undefined) {
      await sleep(slow.ms / 2);
      slow.during?.();
      await sleep(slow.ms / 2);
    }
    return this.inner.batch(ops, opts);
  }
}

const world = worldPerTest();
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function slowBackend(): Promise<SlowOnce> {
  const d = mkdtempSync(join(tmpdir(), "fc-review-slow-"));
  dirs.push(d);
  return new SlowOnce(await LevelBackend.open(d));
}

type Rec = { seq: number; type: string; taskId?: string; time: number; input?: { now: number }; decision?: { verdict: string }; status?: string; error?: string };
const records = async (b: AuditBackend): Promise<Rec[]> =>
  (await exportJsonl(b)).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Rec);

const roots = (gw: { id: string }, commitTimeoutMs?: number) => ({
  gatewayKeys: [namedKey("gateway-1").keyId],
  authorities: [namedKey("authority").keyId],
  origin: gw.id,
  ...(commitTimeoutMs !== undefined ? { commitTimeoutMs } : {}),
});

it("a gateway whose commit is slow (an earlier batch's fsync) denies the allow before it runs: no CLOCK_MISMATCH at that allow", { timeout: 60_000 }, async () => {
  const STEP = 1_000; // the gateway's stepTimeoutMs; the auditor says so (commitTimeoutMs)
  const backend = await slowBackend();
  let decisions = 0;
  const w = await world({
    audit: backend,
    stepTimeoutMs: STEP,
    hooks: {
      // Right before the second decision is queued, another batch (here a checkpoint) is being
      // synced slowly: the decision waits for it, as it does under load.
      beforeRecordDecision: async () => {
        if (++decisions !== 2) return;
        backend.next = { ms: 3 * STEP };
        void w.gw.ledger.store.checkpoint();
        await sleep(20);
      },
    },
  });
  w.gw.registerAction("transfer", () => ({ ok: true }));
  expect((await w.run()).outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
  const { taskId, outcome } = await w.run();
  // The commit took longer than the step timeout: denied, nothing ran.
  expect(outcome).toMatchObject({ verdict: "deny", status: "denied" });
  await sleep(3 * STEP);
  const recs = (await records(backend)).filter((r) => r.taskId === taskId && (r.type === "decision" || r.type === "outcome"));
  expect(recs.map((r) => r.type === "decision" ? r.decision!.verdict : `${r.status}: ${r.error}`)).toEqual(["allow", expect.stringMatching(/^failed: denied before execution: .*audit commit took longer than 1000 ms/)]);
  const allow = recs[0]!;
  expect(allow.time - allow.input!.now).toBeGreaterThan(STEP);
  await w.gw.ledger.store.checkpoint();
  const rep = await replay(backendLogSource(backend), roots(w.gw, STEP));
  // A genuine log: the gateway did exactly what it should.
  expect(rep.divergences).toEqual([]);
});
