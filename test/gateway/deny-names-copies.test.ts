// A deny that cannot spend the task id (a request anyone could make for it: no artifact by the
// evidence deadline, another key than the holder's) used to spend nothing, so a byte-identical
// copy of the submission could still run before its deadline once what was missing arrived,
// while the client had been told "denied". Anyone who may publish submits could cause it: send a
// copy of someone's submission to a gateway whose evidence read lags (here: before the artifact
// is on the stream at all), and the original's client took that copy's NO_ARTIFACT deny (found
// by review). Now such a deny names its submission in a denied-copies claim on the task id: no
// copy of that submission runs, and any other submission for the task id takes the claim over,
// so no one can burn another holder's task id this way.
import { jetstream } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import type { SignedRequest } from "../../src/core/types.ts";
import { DENIED_CLAIM_MARK, DENIED_COPIES_MARK, MAX_DENIED_COPIES, SUBJECTS, submissionIdOf } from "../../src/nats/contract.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { claimOf, grantRoot, sleep, transferRequest } from "./client-support.ts";

const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
const stranger = namedKey("agent-9");
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Publish the submit message alone, as a copier would: no evidence with it. */
async function publishCopy(hh: Harness, request: SignedRequest, args: unknown): Promise<void> {
  await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request, args }));
}

async function outcomesOf(hh: Harness, taskId: string, n: number): Promise<TaskOutcome[]> {
  for (let i = 0; i < 600 && hh.outcomes.filter((o) => o.taskId === taskId).length < n; i++) await sleep(25);
  return hh.outcomes.filter((o) => o.taskId === taskId);
}

it("a submission whose client took a copy's NO_ARTIFACT deny never runs, once its evidence arrives: it is REPLAYED", async () => {
  h = await startHarness({ gateway: { evidenceDeadlineMs: 400 } });
  const hh = h;
  let runs = 0;
  hh.gateways[0]!.registerAction("transfer", () => (runs++, { ok: true }));
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  const args = { amount: 1 };
  const request = transferRequest(taskId, artifact, args);
  const submissionId = submissionIdOf({ request, args });
  // The original's client is listening; a copy of its bytes reaches a gateway that cannot read its artifact.
  const waiter = awaitOutcome(hh.runtime.nc, taskId, 20_000, { submissionId: submissionId!, gatewayKeys });
  await waiter.ready;
  await publishCopy(hh, request, args);
  const told = await waiter.outcome;
  expect(told).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["NO_ARTIFACT"]) as unknown, submissionId });
  expect(told.claimsUnread).toBeUndefined();
  expect(told.duplicate).toBeUndefined();
  expect(await claimOf(hh, taskId)).toMatchObject({ taskId, outcome: DENIED_COPIES_MARK, submissionIds: [submissionId] });
  // The original itself, evidence and all, within its deadline: told "denied", so it never runs.
  const again = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(again).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["REPLAYED"]) as unknown });
  expect(runs).toBe(0);
}, 60_000);

it("denies naming other submissions do not burn the holder's task id: past a full list a deny is left for its client, which settles it denied; the holder's own then runs", async () => {
  h = await startHarness({ gateway: { evidenceDeadlineMs: 400 } });
  const hh = h;
  const ran: string[] = [];
  hh.gateways[0]!.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  // Strangers' requests for the holder's task id, each with other args (another submission id), no evidence: NO_ARTIFACT.
  const junk = Array.from({ length: MAX_DENIED_COPIES }, (_, i) => {
    const args = { amount: 1, junk: i };
    return { request: transferRequest(taskId, artifact, args, stranger), args };
  });
  await Promise.all(junk.map((j) => publishCopy(hh, j.request, j.args)));
  const denied = await outcomesOf(hh, taskId, MAX_DENIED_COPIES);
  expect(denied).toHaveLength(MAX_DENIED_COPIES);
  for (const o of denied) expect(o).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["NO_ARTIFACT"]) as unknown });
  // Side by side, they contended for one key: each is named, none was lost or left unsettled.
  expect(denied.filter((o) => o.claimsUnread === true)).toEqual([]);
  const named = (await claimOf(hh, taskId))?.["submissionIds"] as string[];
  expect(new Set(named)).toEqual(new Set(junk.map((j) => submissionIdOf(j))));
  // One more, when the list is full: its gateway cannot name it, so the deny is marked claimsUnread,
  // and its client settles it at the deadline by reading the claim, which does not name it: denied.
  const args = { amount: 1, junk: "last" };
  const last = transferRequest(taskId, artifact, args, stranger, 1_000);
  const waiter = awaitOutcome(hh.runtime.nc, taskId, 20_000, { submissionId: submissionIdOf({ request: last, args })!, gatewayKeys, deadline: { inMs: 1_000, skewMs: 500 } });
  await waiter.ready;
  await publishCopy(hh, last, args);
  const [held] = (await outcomesOf(hh, taskId, MAX_DENIED_COPIES + 1)).slice(MAX_DENIED_COPIES);
  expect(held).toMatchObject({ verdict: "deny", claimsUnread: true });
  expect(await waiter.outcome).toMatchObject({ verdict: "deny", status: "denied", claimsUnread: true, codes: expect.arrayContaining(["NO_ARTIFACT"]) as unknown });
  // The holder's own submission takes the claim over and runs.
  const own = await submitTask(hh.runtime.nc, { request: transferRequest(taskId, artifact, { amount: 1 }), args: { amount: 1 }, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(own).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([taskId]);
  const claim = await claimOf(hh, taskId);
  expect(claim).toMatchObject({ taskId, submissionId: own.submissionId });
  expect(claim?.["outcome"]).toBeUndefined();
  // A junk copy sent again now finds the holder's claim: REPLAYED, and nothing more ran.
  await publishCopy(hh, junk[0]!.request, junk[0]!.args);
  const after = await outcomesOf(hh, taskId, MAX_DENIED_COPIES + 3);
  expect(after[MAX_DENIED_COPIES + 2]).toMatchObject({ verdict: "deny", status: "denied" });
  expect(ran).toEqual([taskId]);
}, 90_000);

it("the holder's own deny spends a task id that denies of copies named: the claim becomes a spend, and a copy of it is REPLAYED", async () => {
  h = await startHarness({ heartbeatMs: 300, gateway: { evidenceDeadlineMs: 400, limits: { maxFeedAgeMs: 1_500 } } });
  const hh = h;
  let runs = 0;
  hh.gateways[0]!.registerAction("transfer", () => (runs++, { ok: true }));
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  const junkArgs = { amount: 2 };
  await publishCopy(hh, transferRequest(taskId, artifact, junkArgs, stranger), junkArgs);
  await outcomesOf(hh, taskId, 1);
  expect(await claimOf(hh, taskId)).toMatchObject({ outcome: DENIED_COPIES_MARK });
  // The feed goes stale: the holder's own request is denied GOVERNANCE_UNAVAILABLE, before any claim.
  const args = { amount: 1 };
  const request = transferRequest(taskId, artifact, args);
  hh.authority.stopHeartbeats();
  await sleep(2_500);
  const told = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(told).toMatchObject({ verdict: "deny", status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
  expect(told.claimsUnread).toBeUndefined();
  expect(await claimOf(hh, taskId)).toMatchObject({ taskId, submissionId: told.submissionId, outcome: DENIED_CLAIM_MARK });
  await hh.authority.startHeartbeats(300);
  await sleep(1_000);
  await publishCopy(hh, request, args);
  const copy = (await outcomesOf(hh, taskId, 3))[2];
  expect(copy).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["REPLAYED"]) as unknown });
  expect(runs).toBe(0);
}, 60_000);

it("a submission naming no well-formed task id reads and writes no claim: the task id its gateway names for it is left alone (found by review)", async () => {
  h = await startHarness({ gateway: { evidenceDeadlineMs: 300 } });
  const hh = h;
  const ack = await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request: { payload: { taskId: "not.a.task.id" } }, args: null }));
  const taskId = `malformed-${ack.seq}`;
  const [out] = await outcomesOf(hh, taskId, 1);
  expect(out).toMatchObject({ verdict: "deny", status: "denied" });
  expect(await claimOf(hh, taskId)).toBeNull();
}, 30_000);
