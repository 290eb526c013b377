// A gateway whose signature-verify worker dies keeps deciding: the pool replaces the worker,
// decide verifies on the main thread meanwhile, and the loss is reported as a warning. (The
// worker only ever warms decide's memo; losing it must cost neither correctness nor service.)
import { afterEach, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { withWorkersKilled } from "../helpers/worker-killer.ts";

const agent = namedKey("agent-0");
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function transfer(hh: Harness, holder = agent) {
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await hh.authority.grant({
    taskId,
    holder: holder.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`verify-loss-${taskId}`),
    attribution: { initiator: "t", reason: "verify worker loss" },
  });
  return hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 10 }, chain: [artifact], taskId }).outcome;
}

describe("gateway: verify worker lost", () => {
  for (const limit of [1, Infinity]) {
    it(`tasks are still decided correctly and the loss is reported (${limit === 1 ? "first worker dies" : "every worker dies"})`, async () => {
      const { result: hh, killed } = await withWorkersKilled(async () => {
        const started = await startHarness({ gateway: { verifyWorkers: 1, stepTimeoutMs: 3_000 } });
        // Let the kills (and, for limit 1, the replacement) happen while the patch is on.
        for (let i = 0; i < 100 && !started.warnings.some((w) => w.includes("verify-worker")); i++) await new Promise((r) => setTimeout(r, 20));
        return started;
      }, limit);
      h = hh;
      expect(killed).toBeGreaterThan(0);
      hh.gateways[0]!.registerAction("transfer", () => ({ ok: true }));
      for (let i = 0; i < 3; i++) expect(await transfer(hh)).toMatchObject({ verdict: "allow", status: "succeeded" });
      // A forged request (signed by a key that is not the holder's) is still refused.
      const forger = namedKey("agent-1");
      expect(await transfer(hh, forger)).toMatchObject({ verdict: "deny" });
      expect(hh.warnings.some((w) => /worker verify-worker (exited|failed)/.test(w))).toBe(true);
    });
  }
});
