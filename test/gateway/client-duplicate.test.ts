// A duplicate (a copy of this very submission that lost its claims to the original, which holds
// the task) is not a verdict on the submission: the client never reports it as "denied". The
// original done: "unknown" at once (its outcome came and went); not done: its outcome is waited
// for, and "unknown" if it does not come.
import { afterEach, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { signRequest } from "../../src/core/artifacts.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { KV_BUCKETS, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});
const agent = namedKey("agent-0");

it("re-submitting the identical submission after it ran: 'unknown' (marked duplicate, originalDone), not 'denied'", { timeout: 60_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const gw = await h.startGateway();
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const t = newTaskId();
  const now = Date.now();
  const { artifact } = await h.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`dup-${t}`), attribution: { initiator: "t", reason: "dup" } });
  const request = signRequest(agent, { taskId: t, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: now, notAfter: now + 10_000 });
  const s = { request, args: { amount: 1 }, chain: [artifact], timeoutMs: 5_000, skewMs: 200, gatewayKeys: new Set([gw.keyId]) };
  const first = await submitTask(h.runtime.nc, s);
  expect(first).toMatchObject({ status: "succeeded" });
  // The submitter retries the very same submission (e.g. it got "unknown" the first time, or a
  // NATS publish was retried): the answer says the task was denied.
  const again = await submitTask(h.runtime.nc, s);
  expect(ran).toEqual([t]);
  expect(again).toMatchObject({ verdict: "deny", status: "unknown", duplicate: true, originalDone: true, codes: ["REPLAYED"] });
});

it("a held duplicate (original still running, its outcome lost) is 'unknown' once the wait runs out", { timeout: 30_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const nc = h.runtime.nc;
  const t = newTaskId();
  const submissionId = "S".repeat(43);
  // The original copy of this submission holds the task id cluster-wide (a gateway claimed it).
  const kv = await new Kvm(nc).open(KV_BUCKETS.nonces);
  await kv.create(taskClaimKey(t), JSON.stringify({ taskId: t, nonce: "n", submissionId, gatewayId: "gw-1" }));
  const w = awaitOutcome(nc, t, 500, { submissionId, deadline: { inMs: 300, skewMs: 100 } });
  await w.ready;
  // The duplicate's deny, as a gateway sends it: the original holds the claim and has not finished.
  nc.publish(SUBJECTS.outcome(t), JSON.stringify({ taskId: t, gatewayId: "gw-1", verdict: "deny", codes: ["REPLAYED"], status: "denied", submissionId, duplicate: true }));
  const o = await w.outcome;
  expect(o).toMatchObject({ verdict: "deny", status: "unknown", duplicate: true });
  expect(o.detail).toMatch(/claimed the task for this submission/);
});

it("a finished original's own outcome that lands just after its duplicate's deny is the answer", { timeout: 30_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const nc = h.runtime.nc;
  const t = newTaskId();
  const submissionId = "S".repeat(43);
  const w = awaitOutcome(nc, t, 5_000, { submissionId });
  await w.ready;
  // The duplicate's flight saw the original's outcome queued and says so before the original's
  // own outcome goes out.
  nc.publish(SUBJECTS.outcome(t), JSON.stringify({ taskId: t, gatewayId: "gw-1", verdict: "deny", codes: ["REPLAYED"], status: "denied", submissionId, duplicate: true, originalDone: true }));
  await new Promise((r) => setTimeout(r, 200));
  nc.publish(SUBJECTS.outcome(t), JSON.stringify({ taskId: t, gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", submissionId }));
  expect(await w.outcome).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-1" });
});
