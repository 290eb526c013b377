// A handler cut off by its timeout is answered `timedOut` so that its caller listens for how it
// ended (Runtime.spawn's `late`). A late outcome is recorded only after the failed one; when the
// failed one could not be recorded (the audit store broke meanwhile), none can follow. The answer
// then does not say `timedOut` (found by review: `late` waited out its ten minutes for nothing),
// while its error still says the handler may still be running.
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { BreakableBackend } from "../../src/testkit/breakable-backend.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a timed-out handler whose failed outcome could not be recorded: no `timedOut`, and `late` settles at once", { timeout: 60_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const backend = await BreakableBackend.open(join(hh.dir, "breakable"));
  const gw = await hh.startGateway({ audit: backend, handlerTimeoutMs: 300 });
  let finished = false;
  gw.registerAction("transfer", async () => {
    // The store breaks while the handler runs: its failed outcome (at the timeout) is not written.
    await backend.breakNow();
    await sleep(1_000);
    finished = true;
    return { ok: true };
  });
  const taskId = newTaskId();
  const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 }, nonce: namedNonce(`g-${taskId}`), attribution: { initiator: "t", reason: "t" } });
  const { outcome, late } = hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId });
  const answer = await outcome;
  expect(answer).toMatchObject({ verdict: "allow", status: "failed", error: expect.stringMatching(/may still be running/) as unknown });
  expect(answer.timedOut).toBeUndefined();
  const settled = await Promise.race([late.then((x) => ({ x })), sleep(2_000).then(() => "still waiting" as const)]);
  expect(settled).toEqual({ x: undefined });
  for (let i = 0; i < 80 && !finished; i++) await sleep(25);
  expect(finished).toBe(true);
});
