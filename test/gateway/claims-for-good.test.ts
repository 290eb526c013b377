// A nonce or task-id claim is for good, whatever anyone with bus rights does to the bucket:
// deleting the claim keys (a KV delete leaves a marker the gateway's create refuses), purging
// the bucket's stream, deleting its messages or lifting those guards. Without this, one captured
// submission ran twice: once on each of two gateways, each log holding a single allow.
import { afterEach, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type Msg } from "@nats-io/transport-node";
import { KV_BUCKETS, STREAMS, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
const NONCE_STREAM = `KV_${KV_BUCKETS.nonces}`;
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function attacker(url: string) {
  const nc = await connect({ servers: url, name: "attacker" });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc), kv: await new Kvm(nc).open(KV_BUCKETS.nonces) };
}

describe("claims are for good", () => {
  it("deleting both claims and republishing a captured submission does not run it again, on either gateway", async () => {
    h = await startHarness({ gateways: 2 });
    const runs: string[] = [];
    for (const gw of h.gateways) gw.registerAction("transfer", ({ taskId, gatewayId }) => (runs.push(`${gatewayId}:${taskId}`), { ok: true }));
    const atk = await attacker(h.url);
    const captured: Uint8Array[] = [];
    atk.nc.subscribe(SUBJECTS.taskSubmit, { callback: (_e: Error | null, m: Msg) => void captured.push(m.data) });
    await atk.nc.flush();

    const taskId = newTaskId();
    const now = Date.now();
    const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`for-good-${taskId}`), attribution: { initiator: "t", reason: "claims" } });
    expect(await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome).toMatchObject({ status: "succeeded" });
    expect(runs).toHaveLength(1);

    // Each copy goes to whichever gateway pulls it first: ten copies reach both.
    for (let i = 0; i < 10; i++) {
      await atk.kv.delete(artifact.payload.nonce);
      await atk.kv.delete(taskClaimKey(taskId));
      const before = h.outcomes.length;
      await atk.js.publish(SUBJECTS.taskSubmit, captured[0]);
      for (let j = 0; j < 250 && h.outcomes.length === before; j++) await new Promise((r) => setTimeout(r, 20));
      expect(h.outcomes.length).toBeGreaterThan(before);
    }
    await atk.nc.close();
    expect(runs).toHaveLength(1);
    const copies = h.outcomes.slice(-10);
    expect(copies.every((o) => o.verdict === "deny")).toBe(true);
  });

  it("the bucket's stream cannot be purged, have messages deleted, or have those guards lifted", async () => {
    h = await startHarness({ gateways: 1 });
    const atk = await attacker(h.url);
    try {
      await atk.kv.create("some-claim", "x");
      await expect(atk.jsm.streams.purge(NONCE_STREAM)).rejects.toThrow();
      await expect(atk.jsm.streams.purge(NONCE_STREAM, { filter: `$KV.${KV_BUCKETS.nonces}.some-claim` })).rejects.toThrow();
      await expect(atk.jsm.streams.deleteMessage(NONCE_STREAM, 1)).rejects.toThrow();
      await expect(atk.kv.purge("some-claim")).rejects.toThrow(); // a rollup
      const { config } = await atk.jsm.streams.info(NONCE_STREAM);
      await expect(atk.jsm.streams.update(NONCE_STREAM, { ...config, deny_purge: false })).rejects.toThrow();
      await expect(atk.jsm.streams.update(NONCE_STREAM, { ...config, deny_delete: false })).rejects.toThrow();
      // And the revocation feed cannot be purged either (single messages can be deleted; the
      // heartbeats' revocation counts catch that: revocation-feed-complete.test.ts).
      await expect(atk.jsm.streams.purge(STREAMS.gov)).rejects.toThrow();
    } finally {
      await atk.nc.close();
    }
  });
});
