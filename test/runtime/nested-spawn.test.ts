// Parents that wait on their children do not hold the gateway's slots meanwhile: with every slot
// taken by a parent awaiting ctx.spawn, no child could be taken, and each was denied at its
// deadline (a nested-pool deadlock). A waiting parent now lends its slot out.
import { afterEach, expect, it } from "vitest";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, childAgent, childOf, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

it("as many parents as slots, each awaiting a child: every child runs and every parent completes", async () => {
  w = await runtimeWorld({ maxInFlight: 2 });
  const ww = w;
  const children: TaskOutcome[] = [];
  ww.rt.registerAction("transfer", async (ctx) => {
    if (ctx.agent === childAgent.keyId) return { child: true };
    const c = childOf(ww.rt, ctx);
    const o = await ctx.spawn(c);
    children.push(o);
    return { child: o.status };
  });
  const ids = [newTaskId(), newTaskId()];
  const parents = await Promise.all(ids.map(async (taskId) => ww.rt.spawn({ agent, action: "transfer", resource: "payments/parent", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome));
  expect(children.map((o) => o.status)).toEqual(["succeeded", "succeeded"]);
  expect(parents.map((o) => o.status)).toEqual(["succeeded", "succeeded"]);
  expect(parents.map((o) => o.result)).toEqual([{ child: "succeeded" }, { child: "succeeded" }]);
}, 60_000);
