// A deny that spent nothing spends the task id (deny-spends-task-id.test.ts) only when every
// child id in its lineage is in its parent's namespace (deny-spend-child.test.ts): a spawn lineage
// may name a child task id outside it, another holder's root task id included, so a delegated
// request "of its holder" can name a victim's id.
// Found by review: a child denied after its holder's key was revoked burned the victim's task id,
// and the victim's own valid submission was REPLAYED. (A revoked request is denied for good
// anyway: it needs no claim.) This gateway no longer signs such a lineage (ctx.spawn and
// ctx.attest refuse it: child-id-namespace.test.ts), but `decide` does not check the namespace
// (recorded logs must replay), and a peer whose lineage it trusts may run a version from before
// that rule: here gateway-2's key signs the lineage, as such a peer's would.
import { afterEach, expect, it } from "vitest";
import type { SignedArtifact, SignedLineage } from "../../src/core/types.ts";
import { artifactId, signRequest, spawnLineage } from "../../src/core/artifacts.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { grantActions } from "./client-support.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";

const parentAgent = namedKey("agent-0");
const victim = namedKey("agent-5");
const mallory = namedKey("agent-6");
const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
// A peer gateway (harness peerGateways) standing for one that signs any child task id.
const olderPeer = namedKey("gateway-2");

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


function victimTransfer(hh: Harness, taskId: string, artifact: SignedArtifact): Promise<TaskOutcome> {
  return hh.runtime.spawn({ agent: victim, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
}

it("a delegated request naming another holder's root task id, denied once its holder's key is revoked, spends nothing: the victim's task runs", async () => {
  h = await startHarness({ gateways: 1 });
  const hh = h;
  const gw = hh.gateways[0]!;
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const victimTask = newTaskId();
  const { artifact: victimArtifact } = await grantActions(hh, victimTask, victim.keyId, ["transfer"]);
  let kept: { chain: SignedArtifact[]; lineage: SignedLineage[]; parentTaskId: string } | undefined;
  const parentTask = newTaskId();
  const { artifact: parentArtifact, lineage: parentOrigin } = await grantActions(hh, parentTask, parentAgent.keyId, ["plan", "transfer"]);
  gw.registerAction("plan", (ctx) => {
    const childArtifact = hh.runtime.delegate(ctx.chain[ctx.chain.length - 1]!, parentAgent, {
      holder: mallory.keyId,
      scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} },
      validity: ctx.chain[0]!.payload.validity,
      nonce: namedNonce(`s11-attest-${ctx.taskId}`),
      attribution: { initiator: "p", reason: "c" },
    });
    // Nothing is submitted now: the peer-signed lineage is only kept for later.
    const spawn = spawnLineage(olderPeer, {
      gatewayId: "gw-older",
      childTaskId: victimTask,
      childArtifact,
      parentTaskId: ctx.taskId,
      parentArtifactId: artifactId(ctx.chain[ctx.chain.length - 1]!),
      parentDecisionId: "D".repeat(43),
      emittedAt: Date.now(),
    });
    kept = { chain: [...ctx.chain, childArtifact], lineage: [parentOrigin, spawn], parentTaskId: ctx.taskId };
    return { ok: true };
  });
  expect(await hh.runtime.spawn({ agent: parentAgent, action: "plan", resource: "payments/batch", args: {}, chain: [parentArtifact], taskId: parentTask }).outcome).toMatchObject({ status: "succeeded" });
  // Mallory's key is revoked: whatever she asks for is denied from now on.
  await hh.authority.revoke({ type: "key", keyId: mallory.keyId }, "compromised");
  await sleep(1_500);
  const k = kept!;
  const now = Date.now();
  const args = { amount: 1 };
  const request = signRequest(mallory, { taskId: victimTask, action: "transfer", resource: "payments/transfer", args, artifact: k.chain[k.chain.length - 1]!, parentTaskId: k.parentTaskId, createdAt: now, notAfter: now + 20_000 });
  const denied = await submitTask(hh.runtime.nc, { request, args, chain: k.chain, lineage: k.lineage, timeoutMs: 20_000, gatewayKeys });
  // REVOKED alone: the peer's lineage checks out, so only the spend rule keeps the victim's id.
  expect(denied).toMatchObject({ verdict: "deny", status: "denied", codes: ["REVOKED"] });
  // The victim's own, valid submission for the task id its grant names must run.
  const out = await victimTransfer(hh, victimTask, victimArtifact);
  expect(out, JSON.stringify({ codes: out.codes, detail: out.detail })).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([victimTask]);
}, 90_000);
