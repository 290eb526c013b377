// A parent's slot lent while it waits on ctx.spawn is never released twice: a flight that ends
// with a child still out (its handler did not await ctx.spawn, or threw) releases nothing at its
// end, and the child's answer takes nothing back. (At first it did both, and the gateway ran more
// than maxInFlight tasks at once, one more per such parent.)
import { afterEach, expect, it } from "vitest";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, childAgent, childOf, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function scenario(parentMode: "fire-and-forget" | "throws") {
  w = await runtimeWorld({ maxInFlight: 1, childTimeoutMs: 20_000 });
  const ww = w;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const gateRef = { current: gate };
  let running = 0;
  let maxRunning = 0;
  const blocking = async (): Promise<void> => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    try {
      await gateRef.current;
    } finally {
      running--;
    }
  };
  ww.rt.registerAction("transfer", async (ctx) => {
    if (ctx.agent === childAgent.keyId || ctx.resource === "payments/plain") {
      await blocking();
      return { ok: true };
    }
    // the parent
    const c = childOf(ww.rt, ctx);
    const p = ctx.spawn(c);
    p.catch(() => undefined);
    if (parentMode === "throws") {
      await sleep(300);
      throw new Error("parent gives up while its child is out");
    }
    return { spawned: true };
  });
  const parentId = newTaskId();
  const parent = await ww.rt.spawn({ agent, action: "transfer", resource: "payments/parent", args: { amount: 1 }, chain: [await ww.grant(parentId)], taskId: parentId }).outcome;
  // the child is now running (holding what should be the only slot)
  for (let i = 0; i < 200 && running < 1; i++) await sleep(25);
  expect(running).toBe(1);
  let maxInFlight = 0;
  const sampler = setInterval(() => (maxInFlight = Math.max(maxInFlight, ww.rt.gateway!.inFlight)), 10);
  const plain = [newTaskId(), newTaskId()];
  const outs = plain.map(async (taskId) => ww.rt.spawn({ agent, action: "transfer", resource: "payments/plain", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome);
  await sleep(2_500);
  const seen = { maxRunning, maxInFlight };
  maxInFlight = 0;
  release();
  await Promise.all(outs);
  await sleep(1_000);
  // settled: is the count back where it was?
  maxRunning = 0;
  let release2!: () => void;
  const gate2 = new Promise<void>((r) => (release2 = r));
  const later = [newTaskId(), newTaskId()];
  gateRef.current = gate2;
  const outs2 = later.map(async (taskId) => ww.rt.spawn({ agent, action: "transfer", resource: "payments/plain", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome);
  await sleep(2_500);
  const settled = { maxRunning, maxInFlight };
  clearInterval(sampler);
  release2();
  await Promise.all(outs2);
  return { parent, seen: { ...seen, settled } };
}

it("a parent that does not await ctx.spawn: with maxInFlight 1, one task at a time, also once all settled", async () => {
  const { parent, seen } = await scenario("fire-and-forget");
  expect(parent.status).toBe("succeeded");
  // the child holds the single slot; the plain tasks wait; and after all settled, still one at a time
  expect({ maxRunning: seen.maxRunning, maxInFlight: seen.maxInFlight }).toEqual({ maxRunning: 1, maxInFlight: 1 });
  expect(seen.settled).toEqual({ maxRunning: 1, maxInFlight: 1 });
}, 60_000);

it("a parent whose handler throws while a child is out: with maxInFlight 1, one task at a time, also once all settled", async () => {
  const { parent, seen } = await scenario("throws");
  expect(parent.status).toBe("failed");
  // the child holds the single slot; the plain tasks wait; and after all settled, still one at a time
  expect({ maxRunning: seen.maxRunning, maxInFlight: seen.maxInFlight }).toEqual({ maxRunning: 1, maxInFlight: 1 });
  expect(seen.settled).toEqual({ maxRunning: 1, maxInFlight: 1 });
}, 60_000);
