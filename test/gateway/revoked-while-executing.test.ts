// Found by review (a user's journey through the API): a revocation that arrived while a task
// executed reached nothing. The handler's ctx.signal stayed quiet, and the gateway went on
// signing spawn lineage for the revoked parent (its children were then denied REVOKED, but only
// after each one's evidence wait). Now the handler is told (ctx.signal aborted with a
// TaskRevokedError, code REVOKED), ctx.spawn and ctx.attest refuse (SpawnRefusedError, code
// REVOKED, reason parent-revoked) and sign nothing. What the handler has done stands, and its
// outcome is recorded as it ends.
import { afterEach, expect, it } from "vitest";
import { artifactId, signRequest } from "../../src/core/artifacts.ts";
import { childTaskId } from "../../src/core/child-task-id.ts";
import type { SignedArtifact } from "../../src/core/types.ts";
import { SpawnRefusedError, TaskRevokedError } from "../../src/gateway/spawn-error.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { grantActions, sleep, until } from "./client-support.ts";

const parentAgent = namedKey("agent-0");
const childAgent = namedKey("agent-6");

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a revocation of an executing task's artifact aborts ctx.signal with REVOKED; spawn and attest then refuse and sign nothing; the outcome is what the handler did", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  let reason: unknown;
  let abortedAt = 0;
  const refusals: unknown[] = [];
  let spawnedBefore: string | undefined;
  gw.registerAction("plan", async (ctx) => {
    const child = (label: string): SignedArtifact =>
      hh.runtime.delegate(ctx.chain[ctx.chain.length - 1]!, parentAgent, {
        holder: childAgent.keyId,
        scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} },
        validity: ctx.chain[0]!.payload.validity,
        nonce: namedNonce(`revoked-exec-${ctx.taskId}-${label}`),
        attribution: { initiator: "p", reason: "c" },
      });
    // Before the revocation a lineage is signed as usual.
    spawnedBefore = ctx.attest(childTaskId(ctx.taskId, "before"), child("before")).at(-1)?.payload.childTaskId;
    started();
    const aborted = new Promise<void>((r) => ctx.signal.addEventListener("abort", () => r(), { once: true }));
    await Promise.race([aborted, sleep(10_000)]);
    reason = ctx.signal.reason;
    abortedAt = Date.now();
    try {
      ctx.attest(childTaskId(ctx.taskId, "after"), child("after"));
    } catch (e) {
      refusals.push(e);
    }
    const now = Date.now();
    const artifact = child("spawn");
    const request = signRequest(childAgent, { taskId: childTaskId(ctx.taskId, "spawn"), action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, parentTaskId: ctx.taskId, createdAt: now, notAfter: now + 20_000 });
    refusals.push(await ctx.spawn({ request, args: { amount: 1 }, artifact }).then(() => undefined, (e: unknown) => e));
    return { stopped: ctx.signal.aborted };
  });
  const parentTask = newTaskId();
  const { artifact } = await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"]);
  const lineageSeen: string[] = [];
  const sub = hh.runtime.nc.subscribe(SUBJECTS.lineage(childTaskId(parentTask, "spawn")), { callback: (_e, m) => void lineageSeen.push(m.string()) });
  const outcome = hh.runtime.spawn({ agent: parentAgent, action: "plan", resource: "payments/batch", args: {}, chain: [artifact], taskId: parentTask }).outcome;
  await running;
  const revokedAt = Date.now();
  await hh.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "compromised mid-run");
  const out = await outcome;
  await hh.runtime.nc.flush();
  sub.unsubscribe();

  expect(spawnedBefore).toBe(childTaskId(parentTask, "before"));
  expect(reason).toBeInstanceOf(TaskRevokedError);
  expect(reason).toMatchObject({ code: "REVOKED", target: `artifact ${artifactId(artifact)}` });
  expect(abortedAt - revokedAt).toBeLessThan(5_000); // told when the revocation arrived, not at the 10 s fallback
  expect(refusals).toHaveLength(2);
  for (const e of refusals) {
    expect(e).toBeInstanceOf(SpawnRefusedError);
    expect(e).toMatchObject({ code: "REVOKED", reason: "parent-revoked" });
    expect((e as Error).message).toMatch(/^REVOKED: parent task rests on artifact /);
  }
  expect(lineageSeen).toEqual([]);
  // The handler ran to its end: its outcome is recorded and told as it was.
  expect(out).toMatchObject({ verdict: "allow", status: "succeeded", result: { stopped: true } });
}, 60_000);

it("a revocation of something else leaves an executing task alone", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  gw.registerAction("plan", async (ctx) => {
    started();
    await released;
    return { aborted: ctx.signal.aborted };
  });
  const parentTask = newTaskId();
  const { artifact } = await grantActions(hh, parentTask, parentAgent.keyId, ["plan"]);
  const otherTask = newTaskId();
  const other = await grantActions(hh, otherTask, parentAgent.keyId, ["plan"]);
  const outcome = hh.runtime.spawn({ agent: parentAgent, action: "plan", resource: "payments/batch", args: {}, chain: [artifact], taskId: parentTask }).outcome;
  await running;
  await hh.authority.revoke({ type: "artifact", id: artifactId(other.artifact) }, "another task's");
  await until(() => gw.ledger.state.revokedArtifacts.has(artifactId(other.artifact)));
  release();
  expect(await outcome).toMatchObject({ verdict: "allow", status: "succeeded", result: { aborted: false } });
}, 60_000);
