// A decision deadline further off than the client waits (here 30 days, past what a Node timer
// can hold) is not waited out: no answer is then "unknown", never "denied", and indeed the task
// runs once the gateway gets to it.
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

it("a 30-day decision deadline: no answer in time is 'unknown', and the task then runs", { timeout: 60_000 }, async () => {
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
  const grant = async (t: string) => (await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 40 * 86_400_000 }, nonce: namedNonce(`ovf-${t}`), attribution: { initiator: "t", reason: "overflow" } })).artifact;
  // Keep the gateway's only slot busy for 2 s.
  const a = newTaskId();
  const busy = hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1, slowMs: 2_000 }, chain: [await grant(a)], taskId: a }).outcome;
  await sleep(300);
  const b = newTaskId();
  const artifact = await grant(b);
  const now = Date.now();
  const request = signRequest(agent, { taskId: b, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact, createdAt: now, notAfter: now + 30 * 86_400_000 });
  const t0 = Date.now();
  const ob = await submitTask(hh.runtime.nc, { request, args: { amount: 2 }, chain: [artifact], timeoutMs: 1_000, gatewayKeys: new Set([gw.keyId]) });
  const tookMs = Date.now() - t0;
  await busy;
  for (let i = 0; i < 100 && !ran.includes(b); i++) await sleep(50);
  expect(ran).toContain(b);
  expect(ob.status, `after ${tookMs} ms: ${ob.status} (${ob.detail})`).toBe("unknown");
  expect(ob.detail).toMatch(/decision deadline is still \d+ ms off/);
  expect(tookMs).toBeGreaterThanOrEqual(900);
});
