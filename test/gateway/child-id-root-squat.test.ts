// Found by review: the other half of the child-id namespace. A gateway now signs a spawn lineage only
// for a child id in its parent's namespace, so a parent cannot take another holder's task id. But
// Authority.grant signed an origin lineage for any subject-safe id, one of child form included
// (`<22 base64url>_<label>`), and child ids are predictable once labelled (the orchestrator labels
// children by role, the simulator by scenario id): anyone who can get a root grant, for any scope,
// could ask for the id a victim's parent is about to give its child (the parent's task id is on the
// evidence stream before it runs), run it first, take the task-id claim, and the victim's child was
// then REPLAYED. The rule now holds for root ids too: an authority grants no id of child form, so
// the only lineage naming one is the spawn lineage of its parent's gateway.
import { afterEach, expect, it } from "vitest";
import { childTaskId } from "../../src/core/child-task-id.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { grantActions } from "./client-support.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";

const parentAgent = namedKey("agent-0");
const childAgent = namedKey("agent-1");
const mallory = namedKey("agent-6");

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});


it("a root grant for a victim's predictable child id is refused: the victim's labelled child runs", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  let childOutcome: TaskOutcome | undefined;
  gw.registerAction("plan", async (ctx) => {
    const leaf = ctx.chain[ctx.chain.length - 1]!;
    const child = hh.runtime.child({
      parent: leaf,
      parentTaskId: ctx.taskId,
      holderKey: parentAgent,
      childAgent,
      delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} }, validity: leaf.payload.validity, nonce: namedNonce(`root-squat-child-${ctx.taskId}`), attribution: { initiator: "p", reason: "c" } },
      action: "transfer",
      resource: "payments/research",
      args: { amount: 1 },
      label: "research", // as agents/orchestrator.ts labels its children: by role
    });
    childOutcome = await ctx.spawn(child);
    return { child: childOutcome.status };
  });
  const parentTask = newTaskId();
  const parentArtifact = (await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"])).artifact;

  // Mallory, who holds nothing of the victim's, asks for a root grant naming the id the victim's
  // child will have, and runs it first.
  const squatted = childTaskId(parentTask, "research");
  let refused: unknown;
  try {
    const artifact = (await grantActions(hh, squatted, mallory.keyId, ["transfer"])).artifact;
    const squat = await hh.runtime.spawn({ agent: mallory, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId: squatted }).outcome;
    expect(squat.verdict).toBe("allow");
  } catch (e) {
    refused = e;
  }
  expect(refused).toBeInstanceOf(TypeError);
  expect((refused as Error).message).toMatch(/^grant: task id .* has the form of a child task id/);

  const parent = await hh.runtime.spawn({ agent: parentAgent, action: "plan", resource: "payments/batch", args: {}, chain: [parentArtifact], taskId: parentTask }).outcome;
  expect(parent).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(childOutcome, JSON.stringify({ codes: childOutcome?.codes, detail: childOutcome?.detail })).toMatchObject({ taskId: squatted, verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([squatted]);
}, 90_000);
