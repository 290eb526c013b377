// A gateway allows a task and runs its handler, then crashes; JetStream redelivers the very same
// submit message to another gateway, which denies it on a ground found before any claim
// (ENVIRONMENT_MISMATCH when the artifact is bound to the gateway that crashed; EXPIRED when the
// redelivery lands after the request's notAfter). That deny is a copy's, not a verdict on the
// submission: the task id's claim is held under this very submission id, so the deny is marked
// `duplicate` and spawn() reports "unknown" (it ran), never "denied" (README: "spawn says
// 'denied' only when it knows").
import { jetstreamManager } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { STREAMS, TASK_CONSUMER } from "../../src/nats/contract.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { SignedArtifact } from "../../src/core/types.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const agent = namedKey("agent-0");

let h: Harness | undefined;
let client: Runtime | undefined;
afterEach(async () => {
  await client?.close().catch(() => undefined);
  await h?.close();
  h = undefined;
  client = undefined;
});

/**
 * Gateway gw-a runs the task's handler (which never returns) and crashes; gw-b then takes the
 * redelivered submit message. Returns the spawn() answer and gw-b's own outcome for the task.
 */
async function crashAndRedeliver(o: { taskId: string; ackWaitMs: number; bindToA: boolean }): Promise<{ answer: Awaited<ReturnType<Runtime["spawn"]>["outcome"]>; atB: unknown }> {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const jsm = await jetstreamManager(hh.runtime.nc);
  await jsm.consumers.update(STREAMS.tasks, TASK_CONSUMER, { ack_wait: o.ackWaitMs * 1_000_000 });
  const a = await hh.startGateway({ id: "gw-a" }); // key gateway-1
  const ran: string[] = [];
  a.registerAction("transfer", ({ taskId }) => {
    ran.push(taskId);
    return new Promise(() => undefined); // still running when the gateway crashes
  });
  client = await Runtime.connect({ natsUrl: hh.url, gatewayKeys: [namedKey("gateway-1").keyId, namedKey("gateway-2").keyId], outcomeTimeoutMs: 4_000, maxSkewMs: 300 });
  const artifact: SignedArtifact = (
    await hh.authority.grant({
      taskId: o.taskId,
      holder: agent.keyId,
      scope: DEFAULT_SCOPE,
      ...(o.bindToA ? { bindings: { gateways: ["gw-a"] } } : {}),
      validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 },
      nonce: namedNonce(o.taskId),
      attribution: { initiator: "t", reason: "redelivered copy" },
    })
  ).artifact;
  const outcome = client.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId: o.taskId }).outcome;
  for (let i = 0; i < 400 && ran.length === 0; i++) await sleep(25);
  expect(ran).toEqual([o.taskId]); // the handler ran: its side effect may be done
  await a.crash();
  await hh.startGateway({ id: "gw-b" }); // key gateway-2
  const answer = await outcome;
  return { answer, atB: hh.outcomes.find((x) => x.taskId === o.taskId && x.gatewayId === "gw-b") };
}

it("bound to the gateway that crashed: the copy's ENVIRONMENT_MISMATCH is a duplicate, and spawn() says 'unknown'", { timeout: 90_000 }, async () => {
  const { answer, atB } = await crashAndRedeliver({ taskId: "t-redelivered-bound", ackWaitMs: 1_500, bindToA: true });
  expect(atB).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["ENVIRONMENT_MISMATCH"]), duplicate: true });
  expect(answer, JSON.stringify(answer)).toMatchObject({ verdict: "deny", status: "unknown", duplicate: true });
});

it("redelivered after the request's notAfter: the copy's EXPIRED is a duplicate, and spawn() says 'unknown'", { timeout: 90_000 }, async () => {
  // notAfter = +4 s (outcomeTimeoutMs); redelivery 5 s after the crashed gateway's last "working".
  const { answer, atB } = await crashAndRedeliver({ taskId: "t-redelivered-expired", ackWaitMs: 5_000, bindToA: false });
  expect(atB).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["EXPIRED"]), duplicate: true });
  expect(answer, JSON.stringify(answer)).toMatchObject({ verdict: "deny", status: "unknown" });
});
