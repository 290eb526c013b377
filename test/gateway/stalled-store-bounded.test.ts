// Found by review (a fail-closed pass): "Timeouts … are transitions to denied" (DESIGN §4), and a task never
// hangs. commitAllow is bounded (stepTimeoutMs), but the deny it leads to is not: recordDenial
// (gateway.ts) awaits the same allow write with no bound (`await decisionWrite.then(…)`), and a
// deny decided in `verifying` awaits its own record the same way. With a synced write that does
// not come back (a stalled disk, a hung NFS mount), the commit times out, the task goes to
// `denying`… and stays there: no outcome is ever published, the flight's `working` timer keeps
// the task message from being redelivered to a healthy gateway, its slot is never released, and
// the ledger still says "writable", so every later task is allowed, times out and hangs the same
// way until all maxInFlight slots are held for good. stop() hung too: its checkpoint queued
// behind the stalled batch. The same held after a handler ran: recordOutcome awaited its outcome
// record with no bound, so a task whose handler returned stayed `recordingOutcome` for good.
// Now each of these waits is bounded by stepTimeoutMs. And a timeout no timer can honour (over
// 2^31 − 1 ms fires at once: every handler "timed out" while it runs) is refused at the start.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend, type KvOp } from "../../src/audit/backend.ts";
import type { AuditRecord } from "../../src/audit/records.ts";
import type { Gateway } from "../../src/gateway/gateway.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
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
    return new Promise<void>((resolve, reject) =>
      this.#held.push(() => {
        this.inner.batch(ops, opts).then(resolve, reject);
      }),
    );
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
  backend?.release(); // or stop() would never end
  await h?.close();
  h = undefined;
  backend = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const STEP = 1_000;

/**
 * A harness and one gateway on a stalling LevelDB log, steps bounded to STEP, with a "transfer"
 * handler that counts its runs; `stallAfterAllow`: the disk stops answering right after an allow
 * is durable.
 */
async function stallingWorld(o: { stallAfterAllow?: boolean } = {}): Promise<{ hh: Harness; gw: Gateway; b: StallingBackend; runs: () => number }> {
  const hh = (h = await startHarness({ gateways: 0 }));
  const d = mkdtempSync(join(tmpdir(), "fc-stall-"));
  dirs.push(d);
  const b = (backend = new StallingBackend(await LevelBackend.open(d)));
  const hooks = o.stallAfterAllow === true ? { hooks: { afterAllowCommit: () => ((b.stalled = true), Promise.resolve()) } } : {};
  const gw = await hh.startGateway({ audit: b, stepTimeoutMs: STEP, stopGraceMs: 500, ...hooks });
  let runs = 0;
  gw.registerAction("transfer", () => (runs++, { ok: true }));
  return { hh, gw, b, runs: () => runs };
}

/** A root grant for a fresh task id, ready to spawn. */
async function granted(hh: Harness): Promise<{ taskId: string; spawn: () => void }> {
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`stall-${taskId}`), attribution: { initiator: "t", reason: "stalled store" } });
  return { taskId, spawn: () => void hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome };
}

/** The outcome the gateway published for `taskId`, waiting up to the evidence deadline and eight steps (a bounded task is out well within it). */
async function publishedOutcome(hh: Harness, taskId: string): Promise<TaskOutcome | undefined> {
  const by = Date.now() + 1_500 + 8 * STEP;
  while (Date.now() < by && !hh.outcomes.some((o) => o.taskId === taskId)) await sleep(50);
  return hh.outcomes.find((o) => o.taskId === taskId);
}

it("an allow whose synced write never comes back is denied within a bounded time, and the flight ends", async () => {
  const { hh, gw, b, runs } = await stallingWorld();
  const t = await granted(hh);
  await sleep(300);
  b.stalled = true; // the disk stops answering
  t.spawn();
  const said = await publishedOutcome(hh, t.taskId);
  expect(runs()).toBe(0);
  expect({ outcome: said?.status, inFlight: gw.inFlight }).toEqual({ outcome: "denied", inFlight: 0 });
}, 60_000);

// Found by review too: the first wording of the caveat below ("the audit log does not hold its
// outcome") was contradicted by the log once the late write landed.
it("a handler that ran, whose outcome record's write outlasts its wait: the flight ends, the client is told the record is not known to be in the log, and once the write lands the log holds what the handler did", async () => {
  const { hh, gw, b, runs } = await stallingWorld({ stallAfterAllow: true });
  const t = await granted(hh);
  t.spawn();
  const told = await publishedOutcome(hh, t.taskId);
  expect(runs()).toBe(1);
  expect({ answered: told !== undefined, inFlight: gw.inFlight }).toEqual({ answered: true, inFlight: 0 });
  // "failed" here is the record's, not the action's, and the error says so.
  expect(told).toMatchObject({ verdict: "allow", status: "failed", error: expect.stringMatching(/^recordOutcome failed: .*outcome record.*: the handler ran and returned; its outcome record is not known to be in the audit log \(a write that outlasted its wait may still land there\)$/) });

  // The disk answers again: the outcome write that was only slow lands.
  b.release();
  await sleep(500);
  const store = gw.ledger.store;
  const outcomes: AuditRecord[] = [];
  for (let seq = 0; seq < store.size; seq++) {
    const r = await store.getRecord(seq);
    if (r?.type === "outcome" && r.taskId === t.taskId) outcomes.push(r);
  }
  // The client was told "failed" with that caveat; the log holds what the handler did. Neither
  // contradicts the other.
  expect(outcomes.map((r) => (r.type === "outcome" ? r.status : "?"))).toEqual(["succeeded"]);
}, 60_000);

it("stop() with a log whose writes never come back returns within its bounds, saying the log was not closed", async () => {
  const { hh, gw, b } = await stallingWorld();
  b.stalled = true;
  const began = Date.now();
  await gw.stop();
  // Grace 0.5 s, final checkpoint ≤ 1 s, snapshot ≤ 1 s, publishes ≤ 2 s, close ≤ 1 s, and slack.
  expect(Date.now() - began).toBeLessThan(500 + 1_000 + 1_000 + 2_000 + 1_000 + 3_000);
  expect(hh.warnings.some((w) => /audit log not closed: .*audit log close took longer than 1000 ms/.test(w))).toBe(true);
}, 60_000);

it("timeouts a timer cannot honour are refused at the start, naming the option", async () => {
  const hh = (h = await startHarness({ gateways: 0 }));
  for (const [k, v] of [["handlerTimeoutMs", 2 ** 31], ["stepTimeoutMs", 0], ["evidenceDeadlineMs", -1], ["childTimeoutMs", Number.NaN], ["childLateWaitMs", -1], ["childLateWaitMs", 2 ** 31]] as const) {
    await expect(hh.startGateway({ [k]: v }), k).rejects.toThrow(new RegExp(`^${k} must be a number of ms`));
  }
}, 60_000);
