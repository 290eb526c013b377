// What a submitter learns on failclosed.outcome.<taskId>, with other traffic on that subject:
// forged or unreadable messages, a different submission naming the same task id, and copies of
// the very same submission. Real nats-server, real gateway.
import { afterEach, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { signRequest } from "../../src/core/artifacts.ts";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, SUBJECTS, submissionIdOf, taskClaimKey } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { SignedArtifact, SignedRequest } from "../../src/core/types.ts";

const agent = namedKey("agent-0");
const validity = () => ({ notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function submission(hh: Harness, taskId: string, which = "a"): Promise<{ request: SignedRequest; args: { amount: number }; artifact: SignedArtifact }> {
  const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`${which}-${taskId}`), attribution: { initiator: "t", reason: "outcomes" } });
  const args = { amount: 1 };
  const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: Date.now() });
  return { request, args, artifact };
}

/** A gateway whose "transfer" handler takes `ms` and counts its runs. */
async function slowGateway(ms: number): Promise<{ hh: Harness; runs: () => number }> {
  h = await startHarness({ gateways: 1 });
  let runs = 0;
  h.gateways[0]!.registerAction("transfer", async () => {
    runs++;
    await sleep(ms);
    return { ok: true };
  });
  return { hh: h, runs: () => runs };
}

describe("outcomes on the bus", () => {
  it("forged, unreadable and foreign messages on a task's outcome subject do not end the submitter's wait", async () => {
    const { hh, runs } = await slowGateway(600);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const pending = submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    await sleep(250);
    const nc = hh.runtime.nc;
    nc.publish(SUBJECTS.outcome(taskId), "not json at all");
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ taskId, gatewayId: "gw-1", verdict: "deny", codes: ["REVOKED"], status: "denied" }));
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ taskId, gatewayId: "gw-1", verdict: "deny", codes: ["REVOKED"], status: "denied", submissionId: "x".repeat(43) }));
    await nc.flush();
    const outcome = await pending;
    expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-1", submissionId: submissionIdOf({ request: s.request, args: s.args }) });
    expect(runs()).toBe(1);
  });

  it("a copy of a submission racing it: the copy is denied as a duplicate and the submitter gets the original's outcome", async () => {
    // A handler longer than any fixed grace: the submitter must wait for the original however long it runs.
    const { hh, runs } = await slowGateway(3_000);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const pending = submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    const gw = hh.gateways[0]!;
    for (let i = 0; i < 250 && gw.ledger.state.tasks.get(taskId)?.status !== "allowed"; i++) await sleep(20);
    // Byte for byte the same submit message, published again while the original executes.
    await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request: s.request, args: s.args }));
    const outcome = await pending;
    expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
    expect(outcome.duplicate).toBeUndefined();
    for (let i = 0; i < 100 && hh.outcomes.length < 2; i++) await sleep(20);
    const copy = hh.outcomes.find((o) => o.verdict === "deny");
    expect(copy).toMatchObject({ taskId, codes: ["REPLAYED"], duplicate: true, submissionId: outcome.submissionId });
    // The copy was published before the original finished: without the mark it would have won.
    expect(hh.outcomes.indexOf(copy!)).toBe(0);
    expect(runs()).toBe(1);
  });

  it("a copy sent after the original finished gets its REPLAYED deny at once, marked a duplicate of a finished original", async () => {
    const { hh, runs } = await slowGateway(0);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const first = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    expect(first).toMatchObject({ verdict: "allow", status: "succeeded" });
    const again = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    // (Its lineage was not sent again, so LINEAGE_BROKEN may join REPLAYED.)
    expect(again).toMatchObject({ verdict: "deny", codes: expect.arrayContaining(["REPLAYED"]), duplicate: true, originalDone: true, gatewayId: "gw-1" });
    expect(runs()).toBe(1);
  });

  it("a submission that wins its nonce but finds the task id held by another submission is answered at once, not as its own duplicate", async () => {
    const { hh, runs } = await slowGateway(0);
    const taskId = newTaskId();
    // Another submission already holds the task id cluster-wide (on some other gateway).
    const kv = await new Kvm(hh.runtime.nc).open(KV_BUCKETS.nonces);
    await kv.create(taskClaimKey(taskId), JSON.stringify({ taskId, nonce: "someone-else", submissionId: "another-submission", gatewayId: "gw-x" }));
    const s = await submission(hh, taskId);
    const started = performance.now();
    const out = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    expect(out).toMatchObject({ verdict: "deny", codes: ["REPLAYED"], gatewayId: "gw-1" });
    expect(out.duplicate).toBeUndefined();
    expect(out.checks?.find((c) => c.check === "task")).toMatchObject({ code: "REPLAYED", detail: "task id already claimed in the cluster" });
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(runs()).toBe(0);
  });

  it("another submission for a task id that already ran is denied REPLAYED at once, not as a duplicate", async () => {
    const { hh, runs } = await slowGateway(0);
    const taskId = newTaskId();
    const a = await submission(hh, taskId, "a");
    expect(await submitTask(hh.runtime.nc, { request: a.request, args: a.args, chain: [a.artifact], timeoutMs: 15_000 })).toMatchObject({ verdict: "allow" });
    const b = await submission(hh, taskId, "b");
    const started = performance.now();
    const other = await submitTask(hh.runtime.nc, { request: b.request, args: b.args, chain: [b.artifact], timeoutMs: 15_000 });
    expect(other).toMatchObject({ verdict: "deny", codes: ["REPLAYED"], submissionId: submissionIdOf({ request: b.request, args: b.args }) });
    expect(other.duplicate).toBeUndefined();
    // Answered on its own outcome, not held for a grace period (that would take 2 s or more).
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(runs()).toBe(1);
  });
});
