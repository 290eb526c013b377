// Found by review: two authorities publishing to the same bucket, no --peer configured, the second
// one's clock 3 s behind (maxSkewMs is 5 s). Counting past only its own and its peers' versions, the
// second signed P2 below the first one's P1, and every gateway refused P2 as a rollback while
// publishPolicy reported success. Another key's version now counts when it is no more than a day
// past the authority's own clock.
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantFrom } from "../gateway/client-support.ts";

const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };

let h: Harness | undefined;
let b: Authority | undefined;
afterEach(async () => {
  await b?.close();
  b = undefined;
  await h?.close();
  h = undefined;
});

describe("two authorities without peers, clocks 3 s apart", () => {
  it("the later publish (P2, by the authority whose clock is behind) governs", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 }); // A publishes P1 at start
    const bKey = namedKey("authority-2");
    b = await Authority.connect({ natsUrl: h.url, key: bKey, clock: () => Date.now() - 3_000 });
    await b.startHeartbeats(200);
    const gw = await h.startGateway({ authorities: [h.authority.keyId, bKey.keyId] });
    gw.registerAction("transfer", () => ({ ok: true }));
    await sleep(300);
    await b.publishPolicy(P2); // resolves: the bucket now holds P2
    for (let i = 0; i < 100 && gw.ledger.state.policy?.digest !== policyDigest(P2); i++) await sleep(20);
    const taskId = newTaskId();
    const artifact = await grantFrom(b, taskId);
    const o = await transfer(h, taskId, artifact);
    expect(gw.ledger.state.policy?.digest).toBe(policyDigest(P2));
    expect(o.status).toBe("succeeded");
  });
});
