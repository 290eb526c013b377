// Found by review: key rotation done the way the CLI allows (`failclosed gateway --authority NEW`
// after a restart; the CLI cannot call removeAuthority). The audit log kept the old key trusted, and
// with every trusted authority required to heartbeat, the gateway denied every task for good once
// the old authority stopped. With retireUnconfiguredAuthorities (what `failclosed gateway` sets), the
// configured authorities are the trusted set at start; without it, keys added at runtime stay.
import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantFrom } from "../gateway/client-support.ts";

let h: Harness | undefined;
let a2: Authority | undefined;
afterEach(async () => {
  await a2?.close();
  a2 = undefined;
  await h?.close();
  h = undefined;
});

describe("rotation by restarting the gateway with the new key only", () => {
  it("tasks granted by the new authority run after the old one is stopped", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const dir = join(h.dir, "gw-rot");
    const limits = { maxFeedAgeMs: 2_000 };
    const a1 = h.authority;
    const gw = await h.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1"), authorities: [a1.keyId], limits });
    await sleep(300);
    // Rotation: the new authority comes up (naming the old one as a peer, per the README), publishes.
    const a2key = namedKey("authority-2");
    a2 = await Authority.connect({ natsUrl: h.url, key: a2key, peers: [a1.keyId] });
    await a2.publishPolicy(DEFAULT_POLICY);
    await a2.startHeartbeats(200);
    // The gateway is restarted with the new key only; the old authority is stopped.
    await gw.stop();
    const gw2 = await h.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1"), authorities: [a2key.keyId], limits, retireUnconfiguredAuthorities: true });
    gw2.registerAction("transfer", () => ({ ok: true }));
    await a1.close();
    await sleep(2_500);
    const taskId = newTaskId();
    const artifact = await grantFrom(a2, taskId);
    const o = await transfer(h, taskId, artifact);
    expect(o.status).toBe("succeeded");
    expect([...gw2.ledger.state.authorities]).toEqual([a2key.keyId]);
    expect(h.warnings.filter((w) => w.includes(`authority ${a1.keyId} is trusted in the audit log but not configured`))).toHaveLength(1);
  });

  it("without retireUnconfiguredAuthorities, an authority added at runtime stays trusted across a restart", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const dir = join(h.dir, "gw-keep");
    const gw = await h.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
    const a2key = namedKey("authority-2");
    a2 = await Authority.connect({ natsUrl: h.url, key: a2key, peers: [h.authority.keyId] });
    await a2.startHeartbeats(200);
    await gw.addAuthority(a2key.keyId);
    await gw.stop();
    const gw2 = await h.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
    gw2.registerAction("transfer", () => ({ ok: true }));
    expect([...gw2.ledger.state.authorities].sort()).toEqual([h.authority.keyId, a2key.keyId].sort());
    const taskId = newTaskId();
    const artifact = await grantFrom(a2, taskId, DEFAULT_POLICY);
    expect(await transfer(h, taskId, artifact)).toMatchObject({ status: "succeeded" });
  });
});
