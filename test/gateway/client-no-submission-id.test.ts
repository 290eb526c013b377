// awaitOutcome without a submissionId cannot tell whose claim holds the task id: with a deadline
// passed and no answer, a claim there is "unknown", never "another submission's" (a denied).
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});
const agent = namedKey("agent-0");

it("a task that ran is never reported 'denied' by awaitOutcome without a submissionId", { timeout: 60_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const gw = await h.startGateway();
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const t = newTaskId();
  const now = Date.now();
  const { artifact } = await h.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`ns-${t}`), attribution: { initiator: "t", reason: "r" } });
  const request = signRequest(agent, { taskId: t, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: now, notAfter: now + 1_000 });
  const first = await submitTask(h.runtime.nc, { request, args: { amount: 1 }, chain: [artifact], timeoutMs: 5_000, skewMs: 100, gatewayKeys: new Set([gw.keyId]) });
  expect(first).toMatchObject({ status: "succeeded" });
  expect(ran).toEqual([t]);
  // A second observer (or a waiter whose outcome message was lost) asks about the same task,
  // with its deadline, without naming the submission.
  const w = awaitOutcome(h.runtime.nc, t, 300, { deadline: { inMs: 0, skewMs: 50 }, gatewayKeys: new Set([gw.keyId]) });
  await w.ready;
  const o = await w.outcome;
  // The task ran: "denied" is a lie. Expected "unknown".
  expect(o, JSON.stringify(o)).toMatchObject({ verdict: "deny", status: "unknown" });
});
