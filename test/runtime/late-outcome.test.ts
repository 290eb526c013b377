// A handler cut off by its timeout is answered "failed" (`timedOut`): it was told to stop, but may
// still be running, and what it does may still land. Its gateway records how it ended as a late
// outcome; until now only the audit log and a warning said so, and a caller told "failed" could
// not learn that the transfer went through after all. Now the gateway publishes the late outcome
// (signed, after its record) and spawn() hands it out as `late`, never as the answer.
import { afterEach, expect, it } from "vitest";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { outcomeMessage } from "../../src/gateway/outcome.ts";
import { SUBJECTS, submissionIdOf } from "../../src/nats/contract.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
const extra: Runtime[] = [];
afterEach(async () => {
  for (const r of extra.splice(0)) await r.close().catch(() => undefined);
  await w?.close();
  w = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function lateRecords(ww: RuntimeWorld, taskId: string): Promise<{ status: string; late?: boolean; resultDigest?: string }[]> {
  const lines = (await exportJsonl(ww.rt.gateway!.ledger.store.backend)).split("\n").filter((l) => l !== "");
  return lines.map((l) => JSON.parse(l) as { type: string; taskId?: string; status: string; late?: boolean; resultDigest?: string }).filter((r) => r.type === "outcome" && r.taskId === taskId);
}

it("a handler that finishes after its timeout: the answer is failed with timedOut, and `late` brings its signed result (a forged one is ignored)", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 300 });
  const ww = w;
  ww.rt.registerAction("transfer", async () => {
    await sleep(1_200); // I/O that does not listen to ctx.signal
    return { ok: true, ref: "tx-1" };
  });
  const taskId = newTaskId();
  const { outcome, late } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
  const answer = await outcome;
  expect(answer).toMatchObject({ verdict: "allow", status: "failed", timedOut: true, error: expect.stringMatching(/may still be running/) as unknown });
  // Someone who may publish outcomes forges how it ended: unsigned, so it is not taken.
  ww.rt.nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "succeeded", late: true, result: { ok: false, forged: true }, submissionId: answer.submissionId }));
  const end = await late;
  expect(end).toMatchObject({ taskId, verdict: "allow", status: "succeeded", late: true, result: { ok: true, ref: "tx-1" }, signer: ww.rt.gateway!.keyId, submissionId: answer.submissionId, decisionSeq: answer.decisionSeq });
  expect(end?.sig).toEqual(expect.any(String));
  // Told only once recorded: the log already holds the late outcome with the same digest.
  const recs = await lateRecords(ww, taskId);
  expect(recs).toEqual([expect.objectContaining({ status: "failed" }), expect.objectContaining({ status: "succeeded", late: true, resultDigest: end?.resultDigest })]);
  await sleep(100);
  const gw = ww.rt.gateway!;
  await gw.ledger.store.checkpoint();
  const report = await replay(backendLogSource(gw.ledger.store.backend), { gatewayKeys: [gw.keyId], authorities: [ww.h.authority.keyId], origin: gw.id });
  expect(report.divergences).toEqual([]);
});

it("a handler that throws after its timeout: `late` says failed, with why", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 300 });
  const ww = w;
  ww.rt.registerAction("transfer", async () => {
    await sleep(800);
    throw new Error("bank said no");
  });
  const taskId = newTaskId();
  const { outcome, late } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
  expect(await outcome).toMatchObject({ status: "failed", timedOut: true });
  expect(await late).toMatchObject({ status: "failed", late: true, error: expect.stringMatching(/after its timeout: bank said no/) as unknown });
});

it("an answer that is not a timed-out handler's: `late` is undefined at once; and a caller's own shorter wait gives up", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 300 });
  const ww = w;
  let slowMs = 0;
  ww.rt.registerAction("transfer", async () => {
    await sleep(slowMs);
    return { ok: true };
  });
  const quick = newTaskId();
  const q = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(quick)], taskId: quick });
  const qa = await q.outcome;
  expect(qa).toMatchObject({ status: "succeeded" });
  expect(qa.timedOut).toBeUndefined();
  const settled = await Promise.race([q.late.then((x) => ({ x })), sleep(1_000).then(() => "pending" as const)]);
  expect(settled).toEqual({ x: undefined });

  // A runtime of its own (no gateway) that listens for late outcomes only 200 ms.
  const other = await Runtime.connect({ natsUrl: ww.h.url, gatewayKeys: [ww.rt.gateway!.keyId], outcomeTimeoutMs: 10_000, maxSkewMs: 500, lateOutcomeWaitMs: 200 });
  extra.push(other);
  slowMs = 2_000;
  const slow = newTaskId();
  const s = other.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(slow)], taskId: slow });
  expect(await s.outcome).toMatchObject({ status: "failed", timedOut: true });
  const t0 = Date.now();
  expect(await s.late).toBeUndefined();
  expect(Date.now() - t0).toBeLessThan(1_500);
  // The gateway still records how it ended: the log is the whole story.
  for (let i = 0; i < 120 && (await lateRecords(ww, slow)).length < 2; i++) await sleep(50);
  expect((await lateRecords(ww, slow)).map((r) => [r.status, r.late ?? false])).toEqual([
    ["failed", false],
    ["succeeded", true],
  ]);
});

it("a late outcome, even one its gateway signed, is never taken as the answer", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 5_000 });
  const ww = w;
  let release: () => void = () => undefined;
  let started = false;
  ww.rt.registerAction("transfer", () => {
    started = true;
    return new Promise((r) => (release = () => r({ ok: true })));
  });
  // Read the submission as it goes on the wire, to name it in the late outcome.
  let submissionId: string | undefined;
  const sub = ww.rt.nc.subscribe(SUBJECTS.taskSubmit, {
    callback: (_e, m) => {
      submissionId ??= submissionIdOf(JSON.parse(m.string()));
    },
  });
  const taskId = newTaskId();
  const { outcome, late } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
  for (let i = 0; i < 400 && !started; i++) await sleep(25);
  expect(started && submissionId !== undefined).toBe(true);
  sub.unsubscribe();
  // A genuine signature on a late "failed" while the handler still runs: not an answer.
  const text = outcomeMessage({ taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "failed", late: true, error: "stray", ...(submissionId !== undefined ? { submissionId } : {}) }, namedKey("gateway-7"));
  expect(text).toBeDefined();
  ww.rt.nc.publish(SUBJECTS.outcome(taskId), text ?? "");
  await sleep(300);
  release();
  const answer = await outcome;
  expect(answer).toMatchObject({ status: "succeeded", result: { ok: true } });
  expect(answer.late).toBeUndefined();
  // The answer says nothing timed out, so there is nothing late to tell.
  expect(await late).toBeUndefined();
});
