// Found by review (critical): publishPolicy once counted past any key's activation up to a day
// past the authority's clock. Someone with bucket rights and no authority key put an entry signed
// by a key of their own a day ahead; the next honest publish was then signed a day ahead, and every
// gateway took that as its floor. With the bucket's history flooded, a restarted authority signed
// at its clock again, a day below the floor: gateways refused the operator's next policy as a
// rollback and kept the retired one. Another key's versions now count only up to the clock skew
// gateways allow (5 s) past the authority's clock.
import { afterEach, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, POLICY_KEY } from "../../src/nats/contract.ts";
import { policyEntryText, signActivation } from "../../src/policy/activation.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantFrom } from "../gateway/client-support.ts";

const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };
const P3: PolicyDocument = { ...DEFAULT_POLICY, id: "default-3", version: "3" };
const M: PolicyDocument = { ...DEFAULT_POLICY, id: "mallory", version: "9" };
const DAY = 86_400_000;

let h: Harness | undefined;
let a2: Authority | undefined;
afterEach(async () => {
  await a2?.close();
  a2 = undefined;
  await h?.close();
  h = undefined;
});

async function until(what: () => boolean, ms = 5_000): Promise<boolean> {
  for (let i = 0; i < ms / 20 && !what(); i++) await sleep(20);
  return what();
}

describe("regression3: day-ahead counting lets an attacker push honest versions a day ahead", () => {
  it("a restarted authority that lost the bucket history can still retire a policy", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200, gateway: { policyRecheckMs: 150 } });
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const mallory = namedKey("mallory");
    // Attacker: an entry of their own, just under a day past the authority's clock.
    await kv.put(POLICY_KEY, policyEntryText(M, signActivation(mallory, M, Date.now() + DAY - 60_000, Date.now())));
    // Honest: the operator activates P2 (any publish after the attacker's put).
    await h.authority.publishPolicy(P2);
    const v2 = h.authority.policyVersion;
    const gw = await h.startGateway();
    gw.registerAction("transfer", () => ({ ok: true }));
    expect(await until(() => gw.ledger.state.policy?.digest === policyDigest(P2))).toBe(true);
    const taskId = newTaskId();
    const artifact = await grantFrom(h.authority, taskId); // bound to P2

    // Attacker: the 5-entry history flooded with entries of their own at version 1 (gateways ignore them).
    for (let i = 0; i < 5; i++) await kv.put(POLICY_KEY, policyEntryText(M, signActivation(mallory, M, 1, Date.now())));

    // Operator retires P2: the authority daemon restarted with P3 (`failclosed authority` publishes at start).
    await h.authority.close();
    a2 = await Authority.connect({ natsUrl: h.url, key: namedKey("authority") });
    await a2.publishPolicy(P3);
    await a2.startHeartbeats(200);
    // P2 was signed within the 5 s lead of the authority's clock, not a day ahead of it: P3 counts past it.
    expect(v2).toBeLessThan(Date.now() + 10_000);
    expect(a2.policyVersion).toBeGreaterThan(v2);
    expect(await until(() => gw.ledger.state.policy?.digest === policyDigest(P3), 2_000)).toBe(true);
    const o = await transfer(h, taskId, artifact);
    expect(o).toMatchObject({ status: "denied", codes: ["POLICY_MISMATCH"] });
  });
});
