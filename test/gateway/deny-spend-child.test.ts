// A deny reached before any claim spends the task id (deny-spends-task-id.test.ts) when the
// request is its holder's own, so that a copy of a submission told "denied" never runs. Until now
// only a root request could: a spawn lineage could name any child task id, another holder's root
// task id included, so spending a child's id could burn a victim's. Gateways now sign spawn
// lineage only for ids in the parent's namespace (child-id-namespace.test.ts), so a delegated
// request spends its task id too when every child id in its lineage is in its parent's
// namespace: only that parent's handler could have had such an id signed. One named outside it
// (here signed by a peer standing for a gateway from before the rule) still spends nothing.
import { jetstream } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { childTaskId } from "../../src/core/child-task-id.ts";
import { artifactId, signRequest, spawnLineage } from "../../src/core/artifacts.ts";
import type { SignedArtifact, SignedLineage } from "../../src/core/types.ts";
import { DENIED_CLAIM_MARK, DENIED_COPIES_MARK, SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { claimOf, grantActions } from "./client-support.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";

const parentAgent = namedKey("agent-0");
const childAgent = namedKey("agent-1");
const victim = namedKey("agent-5");
const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
const olderPeer = namedKey("gateway-2");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/**
 * Runs a "plan" parent whose handler delegates to childAgent and keeps the child's chain and
 * lineage for later: through ctx.attest for `label` (an id in its namespace), or with `forge`,
 * a lineage for any id signed by the older peer.
 */
async function keptChild(hh: Harness, forge?: { childTaskId: string }): Promise<{ chain: SignedArtifact[]; lineage: SignedLineage[]; parentTaskId: string; childTaskId: string }> {
  let kept: { chain: SignedArtifact[]; lineage: SignedLineage[]; parentTaskId: string; childTaskId: string } | undefined;
  const parentTask = newTaskId();
  const { artifact, lineage: origin } = await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"]);
  hh.gateways[0]!.registerAction("plan", (ctx) => {
    const leaf = ctx.chain[ctx.chain.length - 1]!;
    const childArtifact = hh.runtime.delegate(leaf, parentAgent, { holder: childAgent.keyId, scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} }, validity: ctx.chain[0]!.payload.validity, nonce: namedNonce(`dsc-child-${ctx.taskId}`), attribution: { initiator: "p", reason: "c" } });
    const id = forge?.childTaskId ?? childTaskId(ctx.taskId, "c1");
    const lineage =
      forge === undefined
        ? ctx.attest(id, childArtifact)
        : [origin, spawnLineage(olderPeer, { gatewayId: "gw-older", childTaskId: id, childArtifact, parentTaskId: ctx.taskId, parentArtifactId: artifactId(leaf), parentDecisionId: "D".repeat(43), emittedAt: Date.now() })];
    kept = { chain: [...ctx.chain, childArtifact], lineage, parentTaskId: ctx.taskId, childTaskId: id };
    return { ok: true };
  });
  expect(await hh.runtime.spawn({ agent: parentAgent, action: "plan", resource: "payments/batch", args: {}, chain: [artifact], taskId: parentTask }).outcome).toMatchObject({ status: "succeeded" });
  return kept!;
}

it('a child told "denied" on a stale feed never runs afterwards: its deny spent its task id, and a copy is REPLAYED', async () => {
  h = await startHarness({ heartbeatMs: 300, gateway: { limits: { maxFeedAgeMs: 1_500 } } });
  const hh = h;
  let runs = 0;
  hh.gateways[0]!.registerAction("transfer", () => (runs++, { ok: true }));
  const k = await keptChild(hh);
  const now = Date.now();
  const args = { amount: 1 };
  const request = signRequest(childAgent, { taskId: k.childTaskId, action: "transfer", resource: "payments/transfer", args, artifact: k.chain[k.chain.length - 1]!, parentTaskId: k.parentTaskId, createdAt: now, notAfter: now + 20_000 });
  hh.authority.stopHeartbeats();
  await sleep(2_500);
  const told = await submitTask(hh.runtime.nc, { request, args, chain: k.chain, lineage: k.lineage, timeoutMs: 20_000, gatewayKeys });
  expect(told).toMatchObject({ verdict: "deny", status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
  expect(told.claimsUnread).toBeUndefined();
  expect(await claimOf(hh, k.childTaskId)).toMatchObject({ taskId: k.childTaskId, submissionId: told.submissionId, outcome: DENIED_CLAIM_MARK });
  await hh.authority.startHeartbeats(300);
  await sleep(1_000);
  await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request, args }));
  for (let i = 0; i < 400 && hh.outcomes.filter((o) => o.taskId === k.childTaskId).length < 2; i++) await sleep(25);
  const copy = hh.outcomes.filter((o) => o.taskId === k.childTaskId)[1];
  expect(copy).toMatchObject({ verdict: "deny", status: "denied", codes: expect.arrayContaining(["REPLAYED"]) as unknown });
  expect(copy?.duplicate).toBeUndefined();
  expect(runs).toBe(0);
}, 60_000);

it("a child whose lineage names an id outside its parent's namespace (another holder's root task id) spends nothing when denied: the victim's task runs", async () => {
  h = await startHarness({ heartbeatMs: 300, gateway: { limits: { maxFeedAgeMs: 1_500 } } });
  const hh = h;
  const ran: string[] = [];
  hh.gateways[0]!.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const victimTask = newTaskId();
  const { artifact: victimArtifact } = await grantActions(hh, victimTask, victim.keyId, ["transfer"]);
  const k = await keptChild(hh, { childTaskId: victimTask });
  const now = Date.now();
  const args = { amount: 1 };
  const request = signRequest(childAgent, { taskId: victimTask, action: "transfer", resource: "payments/transfer", args, artifact: k.chain[k.chain.length - 1]!, parentTaskId: k.parentTaskId, createdAt: now, notAfter: now + 20_000 });
  hh.authority.stopHeartbeats();
  await sleep(2_500);
  const denied = await submitTask(hh.runtime.nc, { request, args, chain: k.chain, lineage: k.lineage, timeoutMs: 20_000, gatewayKeys });
  expect(denied).toMatchObject({ verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"] });
  expect(await claimOf(hh, victimTask)).toMatchObject({ outcome: DENIED_COPIES_MARK, submissionIds: [denied.submissionId] });
  await hh.authority.startHeartbeats(300);
  await sleep(1_000);
  expect(await hh.runtime.spawn({ agent: victim, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [victimArtifact], taskId: victimTask }).outcome).toMatchObject({ status: "succeeded" });
  expect(ran).toEqual([victimTask]);
}, 60_000);
