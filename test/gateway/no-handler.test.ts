// A gateway decides a task without regard to its handlers (README: every gateway on the shared
// queue must register every action). A task whose action has no handler on the gateway that takes
// it is allowed, its claims spent, and then fails saying so: never run, never run twice, and its
// allow and failed outcome are in the log, which replays clean.
import { jetstream } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { claimOf, grantRoot, transferRequest, until } from "./client-support.ts";

const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a task whose action has no handler here is allowed, spends its claims and fails saying why; a copy is denied as a duplicate; the log replays clean", async () => {
  h = await startHarness();
  const hh = h;
  const gw = hh.gateways[0]!;
  const taskId = newTaskId();
  const artifact = await grantRoot(hh, taskId);
  const args = { amount: 1 };
  const request = transferRequest(taskId, artifact, args);
  const out = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(out).toMatchObject({ verdict: "allow", status: "failed", error: 'no handler registered for action "transfer"' });
  expect(await claimOf(hh, taskId)).toMatchObject({ taskId, submissionId: out.submissionId });
  // Registering it now does not run that task: a copy is denied.
  let runs = 0;
  gw.registerAction("transfer", () => (runs++, { ok: true }));
  await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request, args }));
  await until(() => hh.outcomes.filter((o) => o.taskId === taskId).length === 2, 10_000);
  // Its evidence went with the decision here, so the copy is denied for want of it; either way a
  // duplicate of the submission that holds the claims.
  expect(hh.outcomes.filter((o) => o.taskId === taskId)[1]).toMatchObject({ verdict: "deny", status: "denied", duplicate: true });
  expect(runs).toBe(0);
  const rep = await replayGateway(gw);
  expect(rep.divergences).toEqual([]);
  expect(rep.decisionsRederived).toBe(2);
}, 60_000);
