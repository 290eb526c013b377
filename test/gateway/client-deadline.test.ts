// A client that hears no answer never reports an allow, and reports "denied" only when that is
// known: a request carries its decision deadline (notAfter, signed), no gateway allows it past
// that, and once the deadline and the allowed skew have passed the client asks whose claim
// holds the task id. No claim: denied, for good (a gateway that reaches it later denies it
// EXPIRED). A claim for this submission, or no deadline at all: "unknown", since it may run.
import { expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import type { Harness } from "../../src/testkit/harness.ts";
import { agent, harnessPerTest, sleep, testGateway, type TestGateway } from "./client-support.ts";

const startHarness = harnessPerTest();

/** A gateway with one slot, so a held task keeps the next one waiting. */
async function busyGateway(): Promise<TestGateway & { hh: Harness }> {
  const hh = await startHarness();
  return { hh, ...(await testGateway(hh, { maxInFlight: 1 })) };
}

it("no answer before the deadline and no claim: denied, and a gateway that reaches it later denies it EXPIRED", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, hold, keys } = await busyGateway();
  const first = await hold(3_000);
  const b = newTaskId();
  const artifact = await grant(b);
  const now = Date.now();
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: now, notAfter: now + 1_000 });
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 1_000, skewMs: 200, gatewayKeys: keys });
  expect(ob).toMatchObject({ verdict: "deny", status: "denied", gatewayId: "client", codes: ["GOVERNANCE_UNAVAILABLE"] });
  expect(ob.detail).toMatch(/no gateway allowed it before its decision deadline/);
  await first.done;
  for (let i = 0; i < 100 && !hh.outcomes.some((o) => o.taskId === b); i++) await sleep(50);
  expect(hh.outcomes.find((o) => o.taskId === b)).toMatchObject({ verdict: "deny", codes: ["EXPIRED"] });
  expect(ran).not.toContain(b);
});

it("without a deadline, no answer is 'unknown', never 'denied': the task may still run, and here it does", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, hold, keys } = await busyGateway();
  const first = await hold(3_000);
  const b = newTaskId();
  const artifact = await grant(b);
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: Date.now() });
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 1_000, gatewayKeys: keys });
  expect(ob).toMatchObject({ verdict: "deny", status: "unknown" });
  expect(ob.detail).toMatch(/no decision deadline/);
  await first.done;
  for (let i = 0; i < 100 && !ran.includes(b); i++) await sleep(50);
  expect(ran).toContain(b);
});

it("claimed for this submission but its outcome is late: 'unknown' (it is running), never 'denied'", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, keys } = await busyGateway();
  const b = newTaskId();
  const artifact = await grant(b);
  const now = Date.now();
  const args = { amount: 3, slowMs: 3_000 };
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: now, notAfter: now + 500 });
  const ob = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 500, skewMs: 100, gatewayKeys: keys });
  expect(ob).toMatchObject({ verdict: "deny", status: "unknown" });
  expect(ob.detail).toMatch(/claimed the task for this submission/);
  for (let i = 0; i < 100 && !ran.includes(b); i++) await sleep(50);
  expect(ran).toContain(b);
});

it("spawn() signs the deadline into every request, and an answer in time is taken as before", { timeout: 60_000 }, async () => {
  const { hh, grant } = await busyGateway();
  const t = newTaskId();
  const before = Date.now();
  const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 4 }, chain: [await grant(t)], taskId: t }).outcome;
  expect(o).toMatchObject({ verdict: "allow", status: "succeeded" });
  const rec = [...(hh.gateways[0]!.ledger.state.tasks.keys())].includes(t);
  expect(rec).toBe(true);
  const seq = hh.gateways[0]!.ledger.state.tasks.get(t)!.decisionSeq!;
  const decision = await hh.gateways[0]!.ledger.store.getRecord(seq);
  const notAfter = (decision as unknown as { input: { request: { payload: { notAfter: number; createdAt: number } } } }).input.request.payload;
  expect(notAfter.notAfter - notAfter.createdAt).toBe(20_000); // the harness's outcomeTimeoutMs
  expect(notAfter.createdAt).toBeGreaterThanOrEqual(before);
});

// A decision deadline further off than the client waits (here 30 days, past what a Node timer can
// hold) is not waited out: no answer is then "unknown", never "denied", and the task runs once the
// gateway gets to it.
it("a 30-day decision deadline: no answer in time is 'unknown', and the task then runs", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, hold, keys } = await busyGateway();
  const busy = await hold(2_000);
  const b = newTaskId();
  const artifact = await grant(b, 40 * 86_400_000);
  const now = Date.now();
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: now, notAfter: now + 30 * 86_400_000 });
  const t0 = Date.now();
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 1_000, gatewayKeys: keys });
  const tookMs = Date.now() - t0;
  await busy.done;
  for (let i = 0; i < 100 && !ran.includes(b); i++) await sleep(50);
  expect(ran).toContain(b);
  expect(ob.status, `after ${tookMs} ms: ${ob.status} (${ob.detail})`).toBe("unknown");
  expect(ob.detail).toMatch(/decision deadline is still \d+ ms off/);
  expect(tookMs).toBeGreaterThanOrEqual(900);
});

// A skew that is not a number >= 0 settles nothing: it cannot shorten the wait below the deadline,
// so the client never reports "denied" for a task a gateway may still allow.
it("skewMs < 0: never 'denied' for a task that then runs", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, hold, keys } = await busyGateway();
  const holding = await hold(1_500);
  const b = newTaskId();
  const artifact = await grant(b);
  const now = Date.now();
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: now, notAfter: now + 4_000 });
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 10_000, skewMs: -2_000, gatewayKeys: keys });
  await holding.done;
  for (let i = 0; i < 100 && !hh.outcomes.some((o) => o.taskId === b); i++) await sleep(50);
  // Contract: "denied" means the task did not run.
  expect({ client: ob.status, ran: ran.includes(b) }).not.toMatchObject({ client: "denied", ran: true });
  expect(["succeeded", "unknown"]).toContain(ob.status);
});
