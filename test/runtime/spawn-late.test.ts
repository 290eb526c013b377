// ctx.spawn hands out `late` as Runtime.spawn does: a child whose handler was cut off by its
// timeout is answered "failed" (`timedOut`), and `late` brings the signed outcome its gateway
// records once that handler ends. For any other answer, or a refused spawn, `late` is undefined,
// and it never rejects.
import { afterEach, expect, it } from "vitest";
import type { SpawnedChild } from "../../src/gateway/gateway.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, childAgent, childOf, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it("a child cut off by its timeout: the parent's spawn answers failed/timedOut, and `late` brings how it ended", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 400 });
  const ww = w;
  let held: SpawnedChild | undefined;
  ww.rt.registerAction("transfer", async (ctx) => {
    if (ctx.agent === childAgent.keyId) {
      await sleep(1_200); // I/O that does not listen to ctx.signal
      return { ok: true, ref: "child-tx" };
    }
    // The parent does not wait (its own timeout is as short): the test holds the answer.
    held = ctx.spawn(childOf(ww.rt, ctx));
    return { spawned: true };
  });
  const taskId = newTaskId();
  expect(await ww.rt.spawn({ agent, action: "transfer", resource: "payments/parent", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome).toMatchObject({ status: "succeeded" });
  const p = held!;
  expect(await p).toMatchObject({ verdict: "allow", status: "failed", timedOut: true });
  expect(await p.late).toMatchObject({ verdict: "allow", status: "succeeded", late: true, result: { ok: true, ref: "child-tx" }, signer: ww.rt.gateway!.keyId });
});

it("a child that finishes in time: `late` is undefined; a refused spawn rejects and its `late` is undefined", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 5_000 });
  const ww = w;
  const seen: { late: unknown; refused: unknown; refusedLate: unknown }[] = [];
  ww.rt.registerAction("transfer", async (ctx) => {
    if (ctx.agent === childAgent.keyId) return { ok: true };
    const child = childOf(ww.rt, ctx);
    const p = ctx.spawn(child);
    await p;
    const late = await p.late;
    // A child id outside this task's namespace is refused before anything is signed: that spawn
    // rejects, and its `late` is undefined.
    const foreign = { ...child, request: { ...child.request, payload: { ...child.request.payload, taskId: newTaskId() } } };
    const q = ctx.spawn(foreign);
    const refused = await q.then(
      () => "resolved",
      (e: unknown) => (e as { code?: string }).code,
    );
    seen.push({ late, refused, refusedLate: await q.late });
    return { done: true };
  });
  const taskId = newTaskId();
  expect(await ww.rt.spawn({ agent, action: "transfer", resource: "payments/parent", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome).toMatchObject({ status: "succeeded" });
  expect(seen).toEqual([{ late: undefined, refused: "LINEAGE_BROKEN", refusedLate: undefined }]);
});
