// A client that hears no answer never reports an allow, and reports "denied" only when that is
// known: a request carries its decision deadline (notAfter, signed), no gateway allows it past
// that, and once the deadline and the allowed skew have passed the client asks whose claim
// holds the task id. No claim: denied, for good (a gateway that reaches it later denies it
// EXPIRED). A claim for this submission, or no deadline at all: "unknown", since it may run.
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import type { SignedArtifact } from "../../src/core/types.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});
const agent = namedKey("agent-0");
const validity = () => ({ notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function busyGateway(): Promise<{ hh: Harness; ran: string[]; grant: (t: string) => Promise<SignedArtifact>; hold: (ms: number) => Promise<TaskOutcome>; keys: Set<string> }> {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const gw = await hh.startGateway({ maxInFlight: 1 });
  const ran: string[] = [];
  gw.registerAction("transfer", async ({ taskId, args }) => {
    const slow = (args as { slowMs?: number }).slowMs;
    if (slow !== undefined) await sleep(slow);
    ran.push(taskId);
    return { ok: true };
  });
  const grant = async (t: string) => (await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`d-${t}`), attribution: { initiator: "t", reason: "deadline" } })).artifact;
  // A task that holds the gateway's only slot for `ms`.
  const hold = async (ms: number) => {
    const a = newTaskId();
    const p = hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1, slowMs: ms }, chain: [await grant(a)], taskId: a }).outcome;
    await sleep(300);
    return p;
  };
  return { hh, ran, grant, hold, keys: new Set([gw.keyId]) };
}

it("no answer before the deadline and no claim: denied, and a gateway that reaches it later denies it EXPIRED", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, hold, keys } = await busyGateway();
  const first = hold(3_000);
  const b = newTaskId();
  const artifact = await grant(b);
  const now = Date.now();
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: now, notAfter: now + 1_000 });
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 1_000, skewMs: 200, gatewayKeys: keys });
  expect(ob).toMatchObject({ verdict: "deny", status: "denied", gatewayId: "client", codes: ["GOVERNANCE_UNAVAILABLE"] });
  expect(ob.detail).toMatch(/no gateway allowed it before its decision deadline/);
  await first;
  for (let i = 0; i < 100 && !hh.outcomes.some((o) => o.taskId === b); i++) await sleep(50);
  expect(hh.outcomes.find((o) => o.taskId === b)).toMatchObject({ verdict: "deny", codes: ["EXPIRED"] });
  expect(ran).not.toContain(b);
});

it("without a deadline, no answer is 'unknown', never 'denied': the task may still run, and here it does", { timeout: 60_000 }, async () => {
  const { hh, ran, grant, hold, keys } = await busyGateway();
  const first = hold(3_000);
  const b = newTaskId();
  const artifact = await grant(b);
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: Date.now() });
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 1_000, gatewayKeys: keys });
  expect(ob).toMatchObject({ verdict: "deny", status: "unknown" });
  expect(ob.detail).toMatch(/no decision deadline/);
  await first;
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
