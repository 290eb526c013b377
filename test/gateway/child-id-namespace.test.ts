// Guards: a parent's handler cannot take another holder's task id. Before the fix, ctx.spawn and
// ctx.attest signed a spawn lineage naming whatever child task id the handler chose; a parent that
// named a victim's root task id (known in advance: its origin lineage is on the evidence stream)
// got a child allowed under it, the child took the task-id claim, and the victim's own task was
// then denied REPLAYED (README, found by review). Child task ids now live in their parent's
// namespace (core/child-task-id.ts), enforced where the gateway signs the spawn lineage: a child
// id outside it is refused with LINEAGE_BROKEN, nothing is signed or published, and the victim's
// task runs.
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { childTaskId } from "../../src/core/child-task-id.ts";
import type { SignedArtifact, SignedLineage } from "../../src/core/types.ts";
import type { ActionContext } from "../../src/gateway/gateway.ts";
import { SpawnRefusedError } from "../../src/gateway/spawn-error.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { grantActions } from "./client-support.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";

const parentAgent = namedKey("agent-0");
const victim = namedKey("agent-5");
const mallory = namedKey("agent-6");
const gatewayKeys = new Set([namedKey("gateway-1").keyId]);

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});


/** A child artifact for mallory, delegated from the executing parent's leaf (a valid delegation). */
function malloryArtifact(hh: Harness, ctx: ActionContext): SignedArtifact {
  return hh.runtime.delegate(ctx.chain[ctx.chain.length - 1]!, parentAgent, {
    holder: mallory.keyId,
    scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} },
    validity: ctx.chain[0]!.payload.validity,
    nonce: namedNonce(`child-ns-child-${ctx.taskId}`),
    attribution: { initiator: "p", reason: "c" },
  });
}

/** Every message on the task's lineage subject from now on (the origin lineage went out at grant time). */
function watchLineage(hh: Harness, taskId: string): { seen: string[]; stop(): Promise<void> } {
  const seen: string[] = [];
  const sub = hh.runtime.nc.subscribe(SUBJECTS.lineage(taskId), { callback: (_e, m) => void seen.push(m.string()) });
  return {
    seen,
    async stop() {
      // A round trip first: anything published before it has arrived by now.
      await hh.runtime.nc.flush();
      sub.unsubscribe();
    },
  };
}

function victimTransfer(hh: Harness, taskId: string, artifact: SignedArtifact): Promise<TaskOutcome> {
  return hh.runtime.spawn({ agent: victim, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
}

function runParent(hh: Harness, taskId: string, artifact: SignedArtifact): Promise<TaskOutcome> {
  return hh.runtime.spawn({ agent: parentAgent, action: "plan", resource: "payments/batch", args: {}, chain: [artifact], taskId }).outcome;
}

it("ctx.spawn of a child named with another holder's root task id is refused, nothing is published for it, and the victim's task runs", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const victimTask = newTaskId();
  const victimArtifact = (await grantActions(hh, victimTask, victim.keyId, ["transfer"])).artifact;
  let refused: unknown;
  gw.registerAction("plan", async (ctx) => {
    const artifact = malloryArtifact(hh, ctx);
    const now = Date.now();
    const args = { amount: 1 };
    // Built by hand: Runtime.child refuses such an id itself, before any gateway sees it.
    const request = signRequest(mallory, { taskId: victimTask, action: "transfer", resource: "payments/transfer", args, artifact, parentTaskId: ctx.taskId, createdAt: now, notAfter: now + 20_000 });
    try {
      await ctx.spawn({ request, args, artifact });
    } catch (e) {
      refused = e;
    }
    return { ok: true };
  });
  const watch = watchLineage(hh, victimTask);
  const parentTask = newTaskId();
  expect(await runParent(hh, parentTask, (await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"])).artifact)).toMatchObject({ status: "succeeded" });
  await watch.stop();
  const out = await victimTransfer(hh, victimTask, victimArtifact);
  expect(out, JSON.stringify({ codes: out.codes, detail: out.detail })).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([victimTask]);
  expect(refused).toBeInstanceOf(SpawnRefusedError);
  expect(refused).toMatchObject({ code: "LINEAGE_BROKEN", reason: "child-id-not-in-namespace" });
  expect((refused as Error).message).toMatch(/^LINEAGE_BROKEN: child task id .* is not in the namespace of parent task /);
  expect(watch.seen).toEqual([]);
}, 90_000);

it("ctx.attest for another holder's root task id, or for another parent's child id, is refused: no lineage to submit, and the victim's task runs", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const victimTask = newTaskId();
  const victimArtifact = (await grantActions(hh, victimTask, victim.keyId, ["transfer"])).artifact;
  // A child id in the namespace of a task that is not the one executing (the victim's).
  const victimChild = childTaskId(victimTask, "payroll");
  const refused: unknown[] = [];
  let kept: { chain: SignedArtifact[]; lineage: SignedLineage[]; parentTaskId: string } | undefined;
  gw.registerAction("plan", (ctx) => {
    const artifact = malloryArtifact(hh, ctx);
    for (const named of [victimTask, victimChild]) {
      try {
        const lineage = ctx.attest(named, artifact);
        if (named === victimTask) kept = { chain: [...ctx.chain, artifact], lineage, parentTaskId: ctx.taskId };
      } catch (e) {
        refused.push(e);
      }
    }
    return { ok: true };
  });
  const watch = watchLineage(hh, victimTask);
  const parentTask = newTaskId();
  expect(await runParent(hh, parentTask, (await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"])).artifact)).toMatchObject({ status: "succeeded" });
  // What a malicious parent would do with a lineage it was given: submit mallory's child under the
  // victim's task id, ahead of the victim.
  if (kept !== undefined) {
    const now = Date.now();
    const args = { amount: 1 };
    const request = signRequest(mallory, { taskId: victimTask, action: "transfer", resource: "payments/transfer", args, artifact: kept.chain[kept.chain.length - 1]!, parentTaskId: kept.parentTaskId, createdAt: now, notAfter: now + 20_000 });
    await submitTask(hh.runtime.nc, { request, args, chain: kept.chain, lineage: kept.lineage, timeoutMs: 20_000, gatewayKeys });
  }
  await watch.stop();
  const out = await victimTransfer(hh, victimTask, victimArtifact);
  expect(out, JSON.stringify({ codes: out.codes, detail: out.detail })).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([victimTask]);
  expect(kept).toBeUndefined();
  expect(refused).toHaveLength(2);
  for (const e of refused) {
    expect(e).toBeInstanceOf(SpawnRefusedError);
    expect(e).toMatchObject({ code: "LINEAGE_BROKEN", reason: "child-id-not-in-namespace" });
    expect((e as Error).message).toMatch(/^LINEAGE_BROKEN: child task id .* is not in the namespace of parent task /);
  }
  expect(watch.seen).toEqual([]);
}, 90_000);

it("a handler that kept its ctx and spawns or attests after it returned is refused with SpawnRefusedError (parent-not-executing): nothing is signed or published", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  let kept: ActionContext | undefined;
  gw.registerAction("plan", (ctx) => {
    kept = ctx;
    return { ok: true };
  });
  const parentTask = newTaskId();
  expect(await runParent(hh, parentTask, (await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"])).artifact)).toMatchObject({ status: "succeeded" });
  const ctx = kept!;
  const child = childTaskId(ctx.taskId, "late");
  const watch = watchLineage(hh, child);
  const artifact = malloryArtifact(hh, ctx);
  let attested: unknown;
  try {
    ctx.attest(child, artifact);
  } catch (e) {
    attested = e;
  }
  const now = Date.now();
  const request = signRequest(mallory, { taskId: child, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, parentTaskId: ctx.taskId, createdAt: now, notAfter: now + 20_000 });
  const spawned = await ctx.spawn({ request, args: { amount: 1 }, artifact }).then(
    () => undefined,
    (e: unknown) => e,
  );
  await watch.stop();
  for (const e of [attested, spawned]) {
    expect(e).toBeInstanceOf(SpawnRefusedError);
    expect(e).toMatchObject({ name: "SpawnRefusedError", code: "LINEAGE_BROKEN", reason: "parent-not-executing" });
    expect((e as Error).message).toMatch(/^LINEAGE_BROKEN: parent task is no longer executing/);
  }
  expect(watch.seen).toEqual([]);
}, 90_000);
