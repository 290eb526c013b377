// Found by review (cb52a35, recordOutcome bounded by stepTimeoutMs). When the outcome record's synced
// write outlasts stepTimeoutMs, the client is told status "failed" with the error "…: the handler
// ran and returned, but the audit log does not hold its outcome". The write is only late, not
// refused: nothing cancels it, and when the disk answers it lands — the log then holds an outcome
// "succeeded" for a task its client was told "failed", and the client's detail stated as fact
// something the audit log contradicts. (The same holds for the late "denied before execution"
// outcome recordDenial appends in the background.) The message no longer claims what the gateway
// cannot know at that point: the record is "not known to be in the audit log", and may land.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend, type KvOp } from "../../src/audit/backend.ts";
import type { AuditRecord } from "../../src/audit/records.ts";
import { WrappedBackend } from "../../src/testkit/breakable-backend.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

/** Real LevelDB; while `stalled`, a synced batch does not come back until release(). */
class StallingBackend extends WrappedBackend {
  stalled = false;
  readonly #held: (() => void)[] = [];
  override batch(ops: readonly KvOp[], opts: { readonly sync: boolean }): Promise<void> {
    if (!this.stalled) return this.inner.batch(ops, opts);
    return new Promise<void>((resolve, reject) => this.#held.push(() => void this.inner.batch(ops, opts).then(resolve, reject)));
  }
  release(): void {
    this.stalled = false;
    for (const go of this.#held.splice(0)) go();
  }
}

const agent = namedKey("agent-0");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let h: Harness | undefined;
let backend: StallingBackend | undefined;
const dirs: string[] = [];
afterEach(async () => {
  backend?.release();
  await h?.close();
  h = undefined;
  backend = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it("an outcome told 'the audit log does not hold its outcome' is not contradicted by the log once the slow write lands", async () => {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const d = mkdtempSync(join(tmpdir(), "fc-r13-stall-"));
  dirs.push(d);
  const b = (backend = new StallingBackend(await LevelBackend.open(d)));
  const STEP = 1_000;
  // The disk stalls right after the allow is durable, for a little longer than one step.
  const gw = await hh.startGateway({ audit: b, stepTimeoutMs: STEP, stopGraceMs: 500, hooks: { afterAllowCommit: () => ((b.stalled = true), Promise.resolve()) } });
  let runs = 0;
  gw.registerAction("transfer", () => (runs++, { ok: true }));
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`r13-slow-outcome-${taskId}`), attribution: { initiator: "t", reason: "review 13" } });
  void hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  const by = Date.now() + 1_500 + 8 * STEP;
  while (Date.now() < by && !hh.outcomes.some((o) => o.taskId === taskId)) await sleep(50);
  const told = hh.outcomes.find((o) => o.taskId === taskId);
  expect(runs).toBe(1);
  expect(told?.error).toMatch(/: the handler ran and returned; its outcome record is not known to be in the audit log \(a write that outlasted its wait may still land there\)$/);

  // The disk answers again: the outcome write that was only slow lands.
  b.release();
  await sleep(500);
  const store = gw.ledger.store;
  const outcomes: AuditRecord[] = [];
  for (let seq = 0; seq < store.size; seq++) {
    const r = await store.getRecord(seq);
    if (r?.type === "outcome" && r.taskId === taskId) outcomes.push(r);
  }
  // The client was told "failed" with that caveat; the log, once the disk answers, holds what the
  // handler did. Neither contradicts the other.
  expect({ told: told?.status, logged: outcomes.map((r) => (r.type === "outcome" ? r.status : "?")) }).toEqual({ told: "failed", logged: ["succeeded"] });
}, 60_000);
