// A duplicate (a copy of this very submission that lost its claims to the original, which holds
// the task) is not a verdict on the submission: the client never reports it as "denied". The
// original done: "unknown" (its outcome came and went) unless that outcome lands a moment later;
// not done: its outcome is waited for, and "unknown" if it does not come. And a claim whose owner
// cannot be compared (no submissionId) is "unknown", never another submission's.
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { KV_BUCKETS, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, harnessPerTest, testGateway } from "./client-support.ts";

const startHarness = harnessPerTest();
const submissionId = "S".repeat(43);

/** The task id held cluster-wide for this submission, as a gateway that claimed it leaves it. */
async function claimFor(nc: NatsConnection, taskId: string): Promise<void> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.nonces);
  await kv.create(taskClaimKey(taskId), JSON.stringify({ taskId, nonce: "n", submissionId, gatewayId: "gw-1" }));
}

/** A duplicate's deny as a gateway sends it. */
const duplicateDeny = (taskId: string, originalDone: boolean): string =>
  JSON.stringify({ taskId, gatewayId: "gw-1", verdict: "deny", codes: ["REPLAYED"], status: "denied", submissionId, duplicate: true, ...(originalDone ? { originalDone: true } : {}) });

it("re-submitting the identical submission after it ran: 'unknown' (marked duplicate, originalDone), not 'denied'", { timeout: 60_000 }, async () => {
  const h = await startHarness();
  const { ran, grant, keys } = await testGateway(h);
  const t = newTaskId();
  const now = Date.now();
  const artifact = await grant(t);
  const request = signRequest(agent, { taskId: t, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: now, notAfter: now + 10_000 });
  const s = { request, args: { amount: 1 }, chain: [artifact], timeoutMs: 5_000, skewMs: 200, gatewayKeys: keys };
  expect(await submitTask(h.runtime.nc, s)).toMatchObject({ status: "succeeded" });
  // The submitter retries the very same submission (it got "unknown" the first time, or a NATS
  // publish was retried).
  const again = await submitTask(h.runtime.nc, s);
  expect(ran).toEqual([t]);
  expect(again).toMatchObject({ verdict: "deny", status: "unknown", duplicate: true, originalDone: true, codes: ["REPLAYED"] });
});

it("a held duplicate (original still running, its outcome lost) is 'unknown' once the wait runs out", { timeout: 30_000 }, async () => {
  const h = await startHarness();
  const nc = h.runtime.nc;
  const t = newTaskId();
  await claimFor(nc, t);
  const w = awaitOutcome(nc, t, 500, { submissionId, deadline: { inMs: 300, skewMs: 100 } });
  await w.ready;
  nc.publish(SUBJECTS.outcome(t), duplicateDeny(t, false));
  const o = await w.outcome;
  expect(o).toMatchObject({ verdict: "deny", status: "unknown", duplicate: true });
  expect(o.detail).toMatch(/claimed the task for this submission/);
});

it("bus lost after a held duplicate: the answer keeps the duplicate mark", { timeout: 30_000 }, async () => {
  const h = await startHarness();
  const nc = await connect({ servers: h.url });
  const t = newTaskId();
  await claimFor(h.runtime.nc, t);
  const w = awaitOutcome(nc, t, 5_000, { submissionId, deadline: { inMs: 300, skewMs: 100 } });
  await w.ready;
  h.runtime.nc.publish(SUBJECTS.outcome(t), duplicateDeny(t, false));
  await h.runtime.nc.flush();
  await new Promise((r) => setTimeout(r, 100));
  await nc.close();
  expect(await w.outcome).toMatchObject({ status: "unknown", duplicate: true, codes: ["REPLAYED"] });
});

it("a finished original's own outcome that lands just after its duplicate's deny is the answer", { timeout: 30_000 }, async () => {
  const h = await startHarness();
  const nc = h.runtime.nc;
  const t = newTaskId();
  const w = awaitOutcome(nc, t, 5_000, { submissionId });
  await w.ready;
  // The duplicate's flight saw the original's outcome queued and says so before the original's
  // own outcome goes out.
  nc.publish(SUBJECTS.outcome(t), duplicateDeny(t, true));
  await new Promise((r) => setTimeout(r, 200));
  nc.publish(SUBJECTS.outcome(t), JSON.stringify({ taskId: t, gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", submissionId }));
  expect(await w.outcome).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-1" });
});

it("a task that ran is never reported 'denied' by awaitOutcome without a submissionId", { timeout: 60_000 }, async () => {
  const h = await startHarness();
  const { ran, grant, keys } = await testGateway(h);
  const t = newTaskId();
  const now = Date.now();
  const artifact = await grant(t);
  const request = signRequest(agent, { taskId: t, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: now, notAfter: now + 1_000 });
  expect(await submitTask(h.runtime.nc, { request, args: { amount: 1 }, chain: [artifact], timeoutMs: 5_000, skewMs: 100, gatewayKeys: keys })).toMatchObject({ status: "succeeded" });
  expect(ran).toEqual([t]);
  // A second observer (or a waiter whose outcome message was lost) asks about the same task,
  // with its deadline, without naming the submission: whose claim it is cannot be told.
  const w = awaitOutcome(h.runtime.nc, t, 300, { deadline: { inMs: 0, skewMs: 50 }, gatewayKeys: keys });
  await w.ready;
  const o = await w.outcome;
  expect(o, JSON.stringify(o)).toMatchObject({ verdict: "deny", status: "unknown" });
});
