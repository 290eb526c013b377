// A skew that is not a number >= 0 settles nothing: it cannot shorten the wait below the
// deadline, so the client never reports "denied" for a task a gateway may still allow.
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("skewMs < 0: never 'denied' for a task that then runs", { timeout: 60_000 }, async () => {
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
  const grant = async (t: string) => (await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 }, nonce: namedNonce(`sk-${t}`), attribution: { initiator: "t", reason: "r" } })).artifact;
  // Hold the only slot for 1.5 s.
  const a = newTaskId();
  const holding = hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1, slowMs: 1_500 }, chain: [await grant(a)], taskId: a }).outcome;
  await sleep(300);
  const b = newTaskId();
  const artifact = await grant(b);
  const now = Date.now();
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: now, notAfter: now + 4_000 });
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 10_000, skewMs: -2_000, gatewayKeys: new Set([gw.keyId]) });
  await holding;
  for (let i = 0; i < 100 && !hh.outcomes.some((o) => o.taskId === b); i++) await sleep(50);
  const gwOut = hh.outcomes.find((o) => o.taskId === b);
  // Contract: "denied" means the task did not run.
  expect({ client: ob.status, gateway: gwOut?.status, ran: ran.includes(b) }).not.toMatchObject({ client: "denied", ran: true });
  expect(["succeeded", "unknown"]).toContain(ob.status);
});
