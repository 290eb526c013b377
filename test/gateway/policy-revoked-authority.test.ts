// Found by review (critical): authorities A and B both trusted; B published P1, then P2; A revoked
// B's key (B decommissioned) and B stopped. With B's saved P1 entry put back, a gateway starting
// fresh took P1 and allowed a task under it: it read the policy before the governance feed (B's
// revocation not yet in force), and a revoked authority is neither waited for nor listened to. A
// gateway now reads the governance backlog before the policy, and withdraws a policy whose signer
// is revoked.
import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, POLICY_KEY } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantFrom } from "../gateway/client-support.ts";

const P1 = DEFAULT_POLICY;
const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };

let h: Harness | undefined;
let b: Authority | undefined;
afterEach(async () => {
  await b?.close();
  b = undefined;
  await h?.close();
  h = undefined;
});

describe("retired policy of a revoked authority put back", () => {
  it("a fresh gateway must not take it (running gateways keep the newer one)", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 300 });
    const a = h.authority;
    const bKey = namedKey("authority-b");
    b = await Authority.connect({ natsUrl: h.url, key: bKey });
    await b.startHeartbeats(300);
    const authorities = [a.keyId, bKey.keyId];
    const g1 = await h.startGateway({ id: "gw-1", key: namedKey("gateway-1"), authorities });
    g1.registerAction("transfer", () => ({ ok: true }));
    // B publishes P1, then retires it with P2.
    await b.publishPolicy(P1);
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value;
    await b.publishPolicy(P2);
    await sleep(500);
    expect(g1.ledger.state.policy?.digest).toBe(policyDigest(P2));
    // B is decommissioned: A revokes its key; B stops.
    await a.revoke({ type: "key", keyId: bKey.keyId }, "decommissioned");
    await b.close();
    b = undefined;
    await sleep(800);
    expect(g1.ledger.state.revokedKeys.has(bKey.keyId)).toBe(true);
    // P2's signer is revoked: P2 is withdrawn too, until A activates a policy.
    expect(g1.ledger.state.policy).toBeUndefined();
    expect(h.warnings.some((w) => w.includes(`activated by ${bKey.keyId}, now revoked: withdrawing it`))).toBe(true);

    const grant = async () => {
      const taskId = newTaskId();
      const artifact = await grantFrom(a, taskId, P1);
      return { taskId, artifact };
    };
    // Attacker: B's retired P1 entry put back.
    await kv.put(POLICY_KEY, e1);
    await sleep(500);
    // The up-to-date gateway refuses it (a revoked signer) and denies a task bound to P1.
    expect(g1.ledger.state.policy).toBeUndefined();
    const t1 = await grant();
    expect(await transfer(h, t1.taskId, t1.artifact)).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    await g1.stop();

    // A fresh gateway with the same configuration.
    const g2 = await h.startGateway({ id: "gw-2", key: namedKey("gateway-2"), audit: join(h.dir, "fresh"), authorities });
    g2.registerAction("transfer", () => ({ ok: true }));
    await sleep(1_000);
    const t2 = await grant();
    const o = await transfer(h, t2.taskId, t2.artifact);
    expect(o).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    expect(g2.ledger.state.policy).toBeUndefined();
    // A activates P1 itself: taken, and its artifacts run.
    await a.publishPolicy(P1);
    for (let i = 0; i < 250 && g2.ledger.state.policy?.digest !== policyDigest(P1); i++) await sleep(20);
    const t3 = await grant();
    expect(await transfer(h, t3.taskId, t3.artifact)).toMatchObject({ status: "succeeded" });
  });
});
