// Evidence outlives a denied flight: a junk submission naming someone's task id, denied at once,
// used to make the gateway forget that task's evidence (the origin lineage its authority
// published at grant time), and the real submission was then denied LINEAGE_BROKEN. Anyone who
// could publish a submit could deny any task they knew the id of.
import { afterEach, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a junk submission naming a task id, denied first, does not cost the real one its evidence", async () => {
  h = await startHarness();
  const hh = h;
  const ran: string[] = [];
  hh.gateways[0]!.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`twin-${taskId}`), attribution: { initiator: "t", reason: "twin" } });
  await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request: { payload: { taskId } }, args: {} }));
  for (let i = 0; i < 250 && !hh.outcomes.some((o) => o.taskId === taskId); i++) await new Promise((r) => setTimeout(r, 20));
  expect(hh.outcomes.find((o) => o.taskId === taskId)).toMatchObject({ verdict: "deny", codes: ["MALFORMED"] });
  const real = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  expect(real).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([taskId]);
});
