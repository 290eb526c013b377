// The policy KV entry is not signed, so anyone who can write the bucket could put back a policy
// the authority retired, and artifacts bound to it ran again. Authorities' heartbeats now
// announce the policy they last made active; a gateway whose active policy is not the most
// recently announced one denies (GOVERNANCE_UNAVAILABLE) until they agree again.
import { afterEach, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { decide } from "../../src/core/decide.ts";
import { KV_BUCKETS, POLICY_KEY } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { buildTask, DEFAULT_SCOPE, inputFor, makeWorld, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { SignedArtifact } from "../../src/core/types.ts";

const agent = namedKey("agent-0");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function grant(hh: Harness, taskId: string, policy?: { id: string; digest: string }): Promise<SignedArtifact> {
  const now = Date.now();
  return (await hh.authority.grant({ ...(policy !== undefined ? { policy } : {}), taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`rollback-${taskId}`), attribution: { initiator: "t", reason: "rollback" } })).artifact;
}
const transfer = (hh: Harness, taskId: string, artifact: SignedArtifact) => hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !cond(); i++) await sleep(20);
  expect(cond()).toBe(true);
}

describe("decide: the announced policy", () => {
  const w = makeWorld();
  it("an active policy other than the announced one denies GOVERNANCE_UNAVAILABLE; the same one allows", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    const active = i.trust.policy!.digest;
    expect(decide({ ...i, health: { ...i.health, announcedPolicy: active } }).verdict).toBe("allow");
    const d = decide({ ...i, health: { ...i.health, announcedPolicy: "A".repeat(43) } });
    expect(d.reasons).toEqual(["GOVERNANCE_UNAVAILABLE"]);
    expect(d.checks.find((c) => !c.ok)?.detail).toMatch(/not the one authority heartbeats announce/);
    expect(decide({ ...i, health: { ...i.health, announcedPolicy: 7 as unknown as string } }).reasons).toEqual(["GOVERNANCE_UNAVAILABLE"]);
  });
});

describe("gateway: a policy rolled back in the bucket", () => {
  it("putting a retired policy back denies every task until the authority's policy is back", async () => {
    h = await startHarness();
    const gw = h.gateways[0]!;
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
    const p1 = DEFAULT_POLICY;
    const t1 = newTaskId();
    const underP1 = await grant(h, t1);
    // The authority retires P1: P2 permits no transfer.
    const p2 = { ...p1, id: "p2", version: "2", cedar: `@id("read")\npermit (principal, action == Action::"read", resource);` };
    await h.authority.publishPolicy(p2);
    await until(() => gw.ledger.state.policy?.digest === policyDigest(p2));
    expect(await transfer(h, t1, underP1)).toMatchObject({ status: "denied", codes: ["POLICY_MISMATCH"] });

    // Someone with write access to the bucket puts P1 back.
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    await kv.put(POLICY_KEY, JSON.stringify({ digest: policyDigest(p1), document: p1 }));
    await until(() => gw.ledger.state.policy?.digest === policyDigest(p1));
    // An artifact bound to P1, which the put-back policy would permit: denied all the same.
    const t2 = newTaskId();
    expect(await transfer(h, t2, await grant(h, t2, { id: p1.id, digest: policyDigest(p1) }))).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    expect(ran).toEqual([]);
    expect(h.warnings.some((w) => w.includes("not the one authority heartbeats announce"))).toBe(true);

    // The authority makes P1 active again itself: tasks under it run.
    await h.authority.publishPolicy(p1);
    await sleep(300); // its announcement reaches the gateway
    expect(gw.ledger.state.policy?.digest).toBe(policyDigest(p1));
    const t3 = newTaskId();
    expect(await transfer(h, t3, await grant(h, t3))).toMatchObject({ status: "succeeded" });
    expect(h.warnings.at(-1)).toMatch(/the one authority heartbeats announce again/);
  });

  it("a legitimate switch is not denied while the new entry and its announcement cross", async () => {
    h = await startHarness();
    const gw = h.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const p2 = { ...DEFAULT_POLICY, id: "p2", version: "2", cedar: `${DEFAULT_POLICY.cedar}\n// v2` };
    const d2 = await h.authority.publishPolicy(p2);
    await until(() => gw.ledger.state.policy?.digest === d2);
    const t = newTaskId();
    expect(await transfer(h, t, await grant(h, t))).toMatchObject({ status: "succeeded" });
  });
});
