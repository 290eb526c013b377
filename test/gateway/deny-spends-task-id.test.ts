// "denied" means it did not run and will not (outcome.ts). A deny reached before any claim spent
// nothing, so a byte-identical copy of the same signed submission (a replay by anyone who may
// publish on the submit subject, a redelivery) was allowed once the ground for the deny passed
// (the feed fresh again), inside the request's deadline, while its client had been told
// "denied". Found by the chaos soak (test/soak, seed 11). Now such a deny spends the task id
// first, with a claim marked denied, when the request is its holder's own; a request anyone
// could make for any task id (another key, no evidence) spends nothing: its deny names only that
// submission (a denied-copies claim), which any other submission for the task id takes over.
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { DENIED_CLAIM_MARK, DENIED_COPIES_MARK, SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { claimOf, grantRoot, transfer, transferRequest } from "./client-support.ts";

const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a submission told \"denied\" never runs afterwards: a copy of it, once the feed is fresh again, is REPLAYED", async () => {
  h = await startHarness({ heartbeatMs: 300, gateway: { limits: { maxFeedAgeMs: 1_500 } } });
  const hh = h;
  let runs = 0;
  hh.gateways[0]!.registerAction("transfer", () => (runs++, { ok: true }));
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  const args = { amount: 1 };
  const request = transferRequest(taskId, artifact, args);
  // The feed goes stale: the decision is GOVERNANCE_UNAVAILABLE, before any claim.
  hh.authority.stopHeartbeats();
  await sleep(2_500);
  const told = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(told).toMatchObject({ verdict: "deny", status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
  expect(told.claimsUnread).toBeUndefined();
  // The deny spent the task id, under this submission, marked denied.
  expect(await claimOf(hh, taskId)).toMatchObject({ taskId, submissionId: told.submissionId, outcome: DENIED_CLAIM_MARK });
  // The feed is fresh again; the very same bytes are published once more.
  await hh.authority.startHeartbeats(300);
  await sleep(1_000);
  await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request, args }));
  for (let i = 0; i < 400 && hh.outcomes.filter((o) => o.taskId === taskId).length < 2; i++) await sleep(25);
  const copy = hh.outcomes.filter((o) => o.taskId === taskId)[1];
  expect(copy).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["REPLAYED"]) as unknown });
  // Not marked a duplicate: the claim says a deny made it, so nothing ran.
  expect(copy?.duplicate).toBeUndefined();
  expect(runs).toBe(0);
}, 60_000);

it("a deny of a request signed by another key than the artifact's holder spends nothing: the holder's own task then runs", async () => {
  h = await startHarness();
  const hh = h;
  const ran: string[] = [];
  hh.gateways[0]!.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  const args = { amount: 1 };
  // Someone else's key, the victim's task id and artifact: IDENTITY_MISMATCH.
  const forged = transferRequest(taskId, artifact, args, namedKey("agent-9"));
  const denied = await submitTask(hh.runtime.nc, { request: forged, args, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(denied).toMatchObject({ status: "denied", codes: expect.arrayContaining(["IDENTITY_MISMATCH"]) as unknown });
  // It names only the forged submission (a copy of it stays denied); the holder's takes it over.
  expect(await claimOf(hh, taskId)).toMatchObject({ taskId, outcome: DENIED_COPIES_MARK, submissionIds: [denied.submissionId] });
  expect(await transfer(hh, taskId, artifact)).toMatchObject({ status: "succeeded" });
  expect(ran).toEqual([taskId]);
  const now2 = await claimOf(hh, taskId);
  expect(now2).toMatchObject({ taskId, submissionId: expect.any(String) as unknown });
  expect(now2?.["submissionId"]).not.toBe(denied.submissionId);
  expect(now2?.["outcome"]).toBeUndefined();
}, 60_000);
