// Found by review (a user's journey through the API): a client whose gatewayKeys lacked the
// deciding gateway's key dropped that gateway's signed outcome silently, and its answer then read
// "no outcome arrived", exactly as if the gateway were dead. The answer is still "unknown" (an
// outcome no trusted key signed is never taken), but its detail now says how many outcomes of
// the task were ignored, and which keys signed them.
import { afterEach, expect, it } from "vitest";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { agent, grantRoot, transferRequest } from "./client-support.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("an outcome signed by a gateway not in gatewayKeys is not taken, and the unknown answer names its signer", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  let runs = 0;
  hh.gateways[0]!.registerAction("transfer", () => (runs++, { ok: true }));
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  const args = { amount: 1 };
  const request = transferRequest(taskId, artifact, args, agent, 1_500);
  const out = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 1_500, skewMs: 200, gatewayKeys: new Set([namedKey("gateway-9").keyId]) });
  expect(runs).toBe(1);
  expect(out.status).toBe("unknown");
  expect(out.detail).toContain(`outcome(s) of this task were ignored, signed by no key in gatewayKeys: "${hh.gateways[0]!.keyId}"`);
}, 60_000);
