// Runtime.close() (and Gateway.stop()) called a second time (a signal handler and a finally
// block, say) returns the first call's promise: it resolves only once the gateway has stopped,
// its executing handlers finished and their outcomes recorded, and the log closed.
import { afterEach, expect, it } from "vitest";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

it("a second close() resolves only once the gateway has stopped (the handler's outcome recorded)", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ stopGraceMs: 10_000 });
  const ww = w;
  let release: () => void = () => undefined;
  let started = false;
  ww.rt.registerAction("transfer", () => {
    started = true;
    return new Promise((r) => (release = () => r({ ok: true })));
  });
  const taskId = newTaskId();
  const outcome = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome;
  for (let i = 0; i < 400 && !started; i++) await new Promise((r) => setTimeout(r, 25));
  expect(started).toBe(true);
  const first = ww.rt.close();
  const second = ww.rt.close();
  const third = ww.rt.gateway!.stop();
  expect(second).toBe(first);
  let handlerDone = false;
  // The handler finishes 1.5 s into the stop grace.
  setTimeout(() => {
    handlerDone = true;
    release();
  }, 1_500);
  await second;
  // When close() says it is done, the handler has finished and its outcome is in the log.
  expect({ handlerDone, status: ww.rt.gateway?.ledger.state.tasks.get(taskId)?.status }).toEqual({ handlerDone: true, status: "succeeded" });
  await third;
  await first;
  await outcome;
});
