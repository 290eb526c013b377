// Found by review: a late outcome whose result a client could not read back (a "__proto__" key,
// nesting beyond the parser's) went out as "succeeded" with no result and nothing saying why, while
// an outcome in time says so in its detail ("the result could not be delivered …"). A caller would
// take the missing result for none at all.
import { afterEach, expect, it } from "vitest";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it("a late result a client could not read: the late outcome says it was not delivered, as one in time does", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 300 });
  const ww = w;
  let late = false;
  ww.rt.registerAction("transfer", async () => {
    if (late) await sleep(800);
    // I-JSON, so it is recorded (its digest), but a client's parser refuses the key.
    return JSON.parse('{"ok":true,"meta":{"__proto__":{"admin":true}}}') as JsonValue;
  });
  const inTime = newTaskId();
  const a = await ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(inTime)], taskId: inTime }).outcome;
  expect(a).toMatchObject({ status: "succeeded", detail: expect.stringMatching(/the result could not be delivered/) as unknown });
  expect(a.result).toBeUndefined();

  late = true;
  const taskId = newTaskId();
  const s = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
  expect(await s.outcome).toMatchObject({ status: "failed", timedOut: true });
  const end = await s.late;
  expect(end).toMatchObject({ status: "succeeded", late: true, resultDigest: expect.any(String) as unknown, detail: expect.stringMatching(/the result could not be delivered/) as unknown });
  expect(end?.result).toBeUndefined();
});
