// `late` (how a handler cut off by its timeout ended) and ctx.spawn's child outcome under an
// attacker on the bus with no gateway key: forged, untrusted, edited and misdirected late outcomes
// are never taken; `late` never rejects and settles undefined when no genuine one comes.
import { afterEach, expect, it } from "vitest";
import { outcomeMessage, type TaskOutcome } from "../../src/gateway/outcome.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { eventually, junkOutcomes, recordOutcomes, sendOutcomes, watchSubmits } from "./client-hostile-support.ts";
import { agent, childAgent, childOf, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
const extra: Runtime[] = [];
afterEach(async () => {
  for (const r of extra.splice(0)) await r.close().catch(() => undefined);
  await w?.close();
  w = undefined;
});

const evil = namedKey("gateway-evil");
/** The runtimeWorld gateway's own key: used only to stand for genuine outcomes a gateway would sign. */
const gatewaySeven = namedKey("gateway-7");

function forgedLates(taskId: string, sid: string, genuineOtherLate: string): string[] {
  const withoutSubmission: TaskOutcome = { taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "succeeded", late: true, result: { forged: true } };
  const base: TaskOutcome = { ...withoutSubmission, submissionId: sid };
  const edit = (text: string, f: (o: Record<string, unknown>) => void): string => {
    const o = JSON.parse(text) as Record<string, unknown>;
    f(o);
    return JSON.stringify(o);
  };
  return [
    JSON.stringify(base),
    outcomeMessage(base, evil)!,
    edit(outcomeMessage(base, evil)!, (o) => (o["signer"] = gatewaySeven.keyId)),
    // Genuine, of another task: as it is, and with its task id and submission edited.
    genuineOtherLate,
    edit(genuineOtherLate, (o) => ((o["taskId"] = taskId), (o["submissionId"] = sid))),
    // Signed as a gateway would, but for another submission of this task id.
    outcomeMessage({ ...base, submissionId: "another-submission" }, gatewaySeven)!,
    outcomeMessage(withoutSubmission, gatewaySeven)!,
  ];
}

it("after a timed-out answer, forged and misdirected late outcomes are ignored: `late` is the genuine one; and with none genuine, undefined", { timeout: 40_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 300 });
  const ww = w;
  const releases = new Map<string, () => void>();
  ww.rt.registerAction("transfer", async ({ taskId }) => {
    await new Promise<void>((r) => releases.set(taskId, r));
    return { ok: true, ref: `real-${taskId}` };
  });
  // Another task that timed out and then ended: its genuine late outcome, to replay.
  const other = newTaskId();
  const otherRec = recordOutcomes(ww.rt.nc, other);
  const o1 = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(other)], taskId: other });
  expect(await o1.outcome).toMatchObject({ status: "failed", timedOut: true });
  releases.get(other)!();
  expect(await o1.late).toMatchObject({ late: true, status: "succeeded" });
  expect(await eventually(() => otherRec.parsed().some((o) => o.late === true))).toBe(true);
  const genuineOtherLate = otherRec.texts.find((t) => t.includes('"late":true'))!;

  // A client with a short late wait, and a task whose handler ends only after the forgeries.
  const rt = await Runtime.connect({ natsUrl: ww.h.url, gatewayKeys: [ww.rt.gateway!.keyId], outcomeTimeoutMs: 10_000, maxSkewMs: 500, lateOutcomeWaitMs: 1_500 });
  extra.push(rt);
  const spawnWatched = async (taskId: string): Promise<{ outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined>; sid: string }> => {
    const submits = watchSubmits(ww.rt.nc, taskId);
    const s = rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
    expect(await eventually(() => submits.ids.length > 0)).toBe(true);
    submits.stop();
    return { ...s, sid: submits.ids[0]! };
  };
  const real = newTaskId();
  const never = newTaskId();
  const [a, b] = await Promise.all([spawnWatched(real), spawnWatched(never)]);
  expect(await a.outcome).toMatchObject({ status: "failed", timedOut: true, submissionId: a.sid });
  expect(await b.outcome).toMatchObject({ status: "failed", timedOut: true, submissionId: b.sid });
  for (let i = 0; i < 10; i++) {
    await sendOutcomes(ww.rt.nc, real, [...junkOutcomes(real, a.sid), ...forgedLates(real, a.sid, genuineOtherLate)]);
    await sendOutcomes(ww.rt.nc, never, [...junkOutcomes(never, b.sid), ...forgedLates(never, b.sid, genuineOtherLate)]);
  }
  releases.get(real)!();
  expect(await a.late).toMatchObject({ taskId: real, late: true, status: "succeeded", result: { ok: true, ref: `real-${real}` }, signer: ww.rt.gateway!.keyId, submissionId: a.sid });
  // The handler of `never` is still running: nothing genuine comes within the late wait.
  expect(await b.late).toBeUndefined();
  releases.get(never)!();
  otherRec.stop();
});

it("an answer that did not time out: a late outcome, even one signed as a gateway would, leaves `late` undefined", { timeout: 40_000 }, async () => {
  w = await runtimeWorld();
  const ww = w;
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  let started = false;
  ww.rt.registerAction("transfer", async () => {
    started = true;
    await released;
    return { ok: true };
  });
  const taskId = newTaskId();
  const submits = watchSubmits(ww.rt.nc, taskId);
  const { outcome, late } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
  expect(await eventually(() => started && submits.ids.length > 0)).toBe(true);
  const sid = submits.ids[0]!;
  const fakeLate: TaskOutcome = { taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "failed", late: true, error: "forged", submissionId: sid };
  await sendOutcomes(ww.rt.nc, taskId, [JSON.stringify(fakeLate), outcomeMessage(fakeLate, gatewaySeven)!, outcomeMessage({ taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "failed", timedOut: true, error: "forged", submissionId: sid }, evil)!]);
  release();
  const answer = await outcome;
  expect(answer).toMatchObject({ status: "succeeded", result: { ok: true }, submissionId: sid });
  expect(answer.late).toBeUndefined();
  expect(await late).toBeUndefined();
  submits.stop();
});

it("ctx.spawn: forged child outcomes before the child's real answer are ignored by the parent's gateway", { timeout: 40_000 }, async () => {
  w = await runtimeWorld();
  const ww = w;
  let releaseChild: () => void = () => undefined;
  const childReleased = new Promise<void>((r) => (releaseChild = r));
  let childTaskId: string | undefined;
  let childSid: string | undefined;
  let childStarted = false;
  ww.rt.registerAction("transfer", async (ctx) => {
    if (ctx.agent === childAgent.keyId) {
      childStarted = true;
      await childReleased;
      return { child: "real" };
    }
    const c = childOf(ww.rt, ctx);
    childTaskId = c.request.payload.taskId;
    const submits = watchSubmits(ww.rt.nc, childTaskId);
    const p = ctx.spawn(c);
    await eventually(() => childStarted && submits.ids.length > 0);
    childSid = submits.ids[0];
    submits.stop();
    const forged: TaskOutcome = { taskId: childTaskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "succeeded", result: { child: "forged" }, ...(childSid !== undefined ? { submissionId: childSid } : {}) };
    await sendOutcomes(ww.rt.nc, childTaskId, [...junkOutcomes(childTaskId, childSid ?? "?"), JSON.stringify(forged), outcomeMessage(forged, evil)!, outcomeMessage({ taskId: childTaskId, gatewayId: "rt-gw", verdict: "deny", codes: ["REVOKED"], status: "denied", ...(childSid !== undefined ? { submissionId: childSid } : {}) }, evil)!]);
    releaseChild();
    const o = await p;
    const l = await p.late;
    return { child: o.status, result: o.result ?? null, signer: o.signer ?? null, late: l === undefined };
  });
  const taskId = newTaskId();
  const parent = await ww.rt.spawn({ agent, action: "transfer", resource: "payments/parent", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome;
  expect(childSid).toBeDefined();
  expect(parent).toMatchObject({ status: "succeeded", result: { child: "succeeded", result: { child: "real" }, signer: ww.rt.gateway!.keyId, late: true } });
});
