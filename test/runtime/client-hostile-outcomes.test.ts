// An attacker on the bus (no gateway private key) sends a waiting client everything it can on the
// task's outcome and decision subjects before the real answer: junk, unsigned and untrusted-signed
// answers, genuine signed outcomes of another task or of another submission of the same task id
// (edited or not), and byte-identical copies of the submission itself. The client must report the
// real answer, its own submission's, with its real result (README "outcomes"/"spawn").
import { jetstream } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { outcomeMessage, type TaskOutcome } from "../../src/gateway/outcome.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { junkOutcomes, recordOutcomes, sendOutcomes, eventually, watchSubmits } from "./client-hostile-support.ts";
import { agent, childAgent, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

const evil = namedKey("gateway-evil");

/** A world whose "transfer" handler, for task ids in `gated`, waits until released. */
async function gatedWorld(): Promise<{ ww: RuntimeWorld; gated: Map<string, () => void>; started: Set<string>; runs: string[] }> {
  const ww = await runtimeWorld();
  const gated = new Map<string, () => void>();
  const started = new Set<string>();
  const runs: string[] = [];
  ww.rt.registerAction("transfer", async ({ taskId }) => {
    runs.push(taskId);
    started.add(taskId);
    if (gated.has(taskId)) await new Promise<void>((r) => gated.set(taskId, r));
    return { ok: true, ref: `real-${taskId}` };
  });
  return { ww, gated, started, runs };
}

it("forged, untrusted, edited and misdirected outcomes before the real answer are ignored: the answer is the real one", { timeout: 40_000 }, async () => {
  const g = await gatedWorld();
  w = g.ww;
  const { ww } = g;
  const gwKey = ww.rt.gateway!.keyId;

  // Another task that ran: its genuine signed outcome, to replay.
  const other = newTaskId();
  const otherRec = recordOutcomes(ww.rt.nc, other);
  const otherAnswer = await ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(other)], taskId: other }).outcome;
  expect(otherAnswer).toMatchObject({ status: "succeeded", signer: gwKey });
  expect(await eventually(() => otherRec.texts.length > 0)).toBe(true);
  const otherText = otherRec.texts[0]!;

  // An earlier submission of the same task id, signed by a key other than the holder's: denied,
  // a genuine signed deny naming that submission (it cannot spend the task id: README).
  const taskId = newTaskId();
  const artifact = await ww.grant(taskId);
  const rec = recordOutcomes(ww.rt.nc, taskId);
  const first = await ww.rt.spawn({ agent: childAgent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  expect(first).toMatchObject({ verdict: "deny", status: "denied", signer: gwKey });
  const firstText = rec.texts.find((t) => t.includes(first.submissionId!))!;
  expect(firstText).toBeDefined();

  // The holder's own submission: held in its handler while the attacker sends.
  g.gated.set(taskId, () => undefined);
  const submits = watchSubmits(ww.rt.nc, taskId);
  const { outcome, late } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 2 }, chain: [artifact], taskId });
  expect(await eventually(() => g.started.has(taskId) && submits.ids.length > 0)).toBe(true);
  const sid = submits.ids[0]!;
  expect(sid).not.toBe(first.submissionId);

  const edit = (text: string, f: (o: Record<string, unknown>) => void): string => {
    const o = JSON.parse(text) as Record<string, unknown>;
    f(o);
    return JSON.stringify(o);
  };
  const forged: (string | Uint8Array)[] = [
    ...junkOutcomes(taskId, sid),
    // Genuine, of another task: on this subject as it is, and with its taskId (and submission) edited.
    otherText,
    edit(otherText, (o) => (o["taskId"] = taskId)),
    edit(otherText, (o) => ((o["taskId"] = taskId), (o["submissionId"] = sid))),
    // Genuine, of another submission of this task id (the earlier deny): as it is, and edited to name this one.
    firstText,
    edit(firstText, (o) => (o["submissionId"] = sid)),
    edit(firstText, (o) => delete o["submissionId"]),
    // A "succeeded" and a "denied" for this very submission, signed by a key the client does not trust.
    outcomeMessage({ taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "succeeded", result: { forged: true }, submissionId: sid, decisionSeq: 1 }, evil)!,
    outcomeMessage({ taskId, gatewayId: "rt-gw", verdict: "deny", codes: ["REVOKED"], status: "denied", submissionId: sid }, evil)!,
    // The same, claiming the trusted signer (the signature is the evil key's).
    edit(outcomeMessage({ taskId, gatewayId: "rt-gw", verdict: "deny", codes: ["REVOKED"], status: "denied", submissionId: sid }, evil)!, (o) => (o["signer"] = gwKey)),
  ];
  // A flood of them, several times over.
  for (let i = 0; i < 20; i++) await sendOutcomes(ww.rt.nc, taskId, forged);

  const race = await Promise.race([outcome.then((o) => ({ early: o })), new Promise<"pending">((r) => setTimeout(() => r("pending"), 500))]);
  expect(race).toBe("pending");
  g.gated.get(taskId)!();
  const answer: TaskOutcome = await outcome;
  expect(answer).toMatchObject({ taskId, verdict: "allow", status: "succeeded", result: { ok: true, ref: `real-${taskId}` }, signer: gwKey, submissionId: sid });
  expect(await late).toBeUndefined();
  expect(g.runs.filter((t) => t === taskId)).toHaveLength(1);
  rec.stop();
  otherRec.stop();
  submits.stop();
});

it("byte-identical copies of the submission, replayed while it runs and after, are denied as duplicates: the client still reports the original's answer", { timeout: 40_000 }, async () => {
  const g = await gatedWorld();
  w = g.ww;
  const { ww } = g;
  const taskId = newTaskId();
  g.gated.set(taskId, () => undefined);
  const submits = watchSubmits(ww.rt.nc, taskId);
  const rec = recordOutcomes(ww.rt.nc, taskId);
  const { outcome } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 3 }, chain: [await ww.grant(taskId)], taskId });
  expect(await eventually(() => g.started.has(taskId) && submits.texts.length > 0)).toBe(true);
  const js = jetstream(ww.rt.nc);
  for (let i = 0; i < 3; i++) await js.publish(SUBJECTS.taskSubmit, submits.texts[0]);
  // The gateway denies the copies, signed and naming this very submission, marked duplicate.
  expect(await eventually(() => rec.parsed().filter((o) => o.duplicate === true).length >= 3)).toBe(true);
  expect(rec.parsed().filter((o) => o.duplicate === true).every((o) => o.submissionId === submits.ids[0] && o.verdict === "deny")).toBe(true);
  g.gated.get(taskId)!();
  expect(await outcome).toMatchObject({ status: "succeeded", result: { ok: true, ref: `real-${taskId}` }, submissionId: submits.ids[0] });
  expect(g.runs.filter((t) => t === taskId)).toHaveLength(1);
  rec.stop();
  submits.stop();
});
