// A gateway that denies a submission but cannot read whether a copy of it holds the task's
// claims (the claims bucket does not answer) marks the deny `claimsUnread`: it may be a copy's.
// The client never takes such a deny as final before the decision deadline: it then reads the
// task id's claim itself, and the deny stands only when no claim for this submission exists.
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { KV_BUCKETS, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, harnessPerTest, sleep, testGateway } from "./client-support.ts";

const startHarness = harnessPerTest();
const submissionId = "S".repeat(43);

const unreadDeny = (taskId: string): string =>
  JSON.stringify({ taskId, gatewayId: "gw-1", verdict: "deny", codes: ["EXPIRED"], status: "denied", submissionId, claimsUnread: true });

it("no claim at the deadline: the held deny stands, 'denied' with the gateway's codes, and not before the deadline", { timeout: 30_000 }, async () => {
  const h = await startHarness();
  const nc = h.runtime.nc;
  const t = newTaskId();
  const started = Date.now();
  const w = awaitOutcome(nc, t, 3_000, { submissionId, deadline: { inMs: 600, skewMs: 100 } });
  await w.ready;
  nc.publish(SUBJECTS.outcome(t), unreadDeny(t));
  const o = await w.outcome;
  expect(o).toMatchObject({ gatewayId: "gw-1", verdict: "deny", status: "denied", codes: ["EXPIRED"] });
  expect(Date.now() - started).toBeGreaterThanOrEqual(700); // deadline + 2 × skew
});

it("the task id claimed for this submission: 'unknown', never 'denied'", { timeout: 30_000 }, async () => {
  const h = await startHarness();
  const nc = h.runtime.nc;
  const t = newTaskId();
  const kv = await new Kvm(nc).open(KV_BUCKETS.nonces);
  await kv.create(taskClaimKey(t), JSON.stringify({ taskId: t, nonce: "n", submissionId, gatewayId: "gw-9" }));
  const w = awaitOutcome(nc, t, 500, { submissionId, deadline: { inMs: 200, skewMs: 50 } });
  await w.ready;
  nc.publish(SUBJECTS.outcome(t), unreadDeny(t));
  expect(await w.outcome).toMatchObject({ verdict: "deny", status: "unknown" });
});

it("the original's own outcome after a held deny is the answer", { timeout: 30_000 }, async () => {
  const h = await startHarness();
  const nc = h.runtime.nc;
  const t = newTaskId();
  const w = awaitOutcome(nc, t, 5_000, { submissionId, deadline: { inMs: 3_000, skewMs: 100 } });
  await w.ready;
  nc.publish(SUBJECTS.outcome(t), unreadDeny(t));
  await sleep(200);
  nc.publish(SUBJECTS.outcome(t), JSON.stringify({ taskId: t, gatewayId: "gw-2", verdict: "allow", codes: [], status: "succeeded", submissionId }));
  expect(await w.outcome).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-2" });
});

it("a gateway whose claims bucket is gone marks its denies claimsUnread, and the client does not call them 'denied'", { timeout: 60_000 }, async () => {
  const h = await startHarness();
  const { grant, keys, gw } = await testGateway(h);
  // Every claim read now fails (so does every claim: nothing is allowed meanwhile).
  await (await jetstreamManager(h.runtime.nc)).streams.delete(`KV_${KV_BUCKETS.nonces}`);
  const t = newTaskId();
  const now = Date.now();
  const artifact = await grant(t);
  // Denied before any claim: signed by another agent than the artifact's holder.
  const request = signRequest(agent, { taskId: t, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: now, notAfter: now + 4_000 });
  request.sig = (request.sig.startsWith("A") ? "B" : "A") + request.sig.slice(1);
  const outcome = submitTask(h.runtime.nc, { request, args: { amount: 1 }, chain: [artifact], timeoutMs: 5_000, skewMs: 100, gatewayKeys: keys });
  const atGateway = () => h.outcomes.find((x) => x.taskId === t && x.gatewayId === gw.id);
  for (let i = 0; i < 200 && atGateway() === undefined; i++) await sleep(25);
  expect(atGateway()).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["BAD_SIGNATURE"]), claimsUnread: true });
  // Held until the deadline; the client cannot read the claim either: not known, so not "denied".
  const o = await outcome;
  expect(o, JSON.stringify(o)).toMatchObject({ verdict: "deny", status: "unknown" });
  expect(Date.now() - now).toBeGreaterThanOrEqual(4_000);
});
