// A deleted claim never turns into a "denied" for a task that ran. Claims are for good, so a
// delete marker in the bucket means someone removed one, and whose it was is not known: the
// gateway marks a deny that lost to such a key a possible duplicate, and a client that reads
// one after its deadline reports "unknown". Before, both said a plain "denied" while the
// original submission was still running its handler.
import { afterEach, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type Msg } from "@nats-io/transport-node";
import { KV_BUCKETS, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot } from "./client-support.ts";

const agent = namedKey("agent-0");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function attacker(url: string) {
  const nc = await connect({ servers: url, name: "attacker" });
  return { nc, js: jetstream(nc), kv: await new Kvm(nc).open(KV_BUCKETS.nonces) };
}

describe("deleted claims", () => {
  it("a copy of a running submission, its claims deleted: the copy's deny is a duplicate, and spawn() waits for the original", async () => {
    h = await startHarness({ gateways: 1 });
    const ran: string[] = [];
    let executing = false;
    h.gateways[0]!.registerAction("transfer", async ({ taskId }) => {
      executing = true;
      await sleep(1_500);
      ran.push(taskId);
      return { ok: true };
    });
    const atk = await attacker(h.url);
    const taskId = newTaskId();
    const artifact = await grantRoot(h, taskId);
    atk.nc.subscribe(SUBJECTS.taskSubmit, {
      callback: (_e: Error | null, m: Msg) => {
        void (async () => {
          // Once the original has its claims and is executing (a fixed wait was not always enough
          // on a loaded machine: the claims deleted before it claimed made both submissions lose).
          for (let i = 0; i < 500 && !executing; i++) await sleep(10);
          await sleep(100);
          await atk.kv.delete(taskClaimKey(taskId));
          await atk.kv.delete(artifact.payload.nonce);
          await atk.js.publish(SUBJECTS.taskSubmit, m.data);
        })().catch(() => undefined);
      },
    });
    await atk.nc.flush();
    const o = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
    await atk.nc.close();
    expect(ran).toEqual([taskId]);
    expect(o).toMatchObject({ status: "succeeded", verdict: "allow" });
    expect(h.warnings.some((w) => w.includes("was deleted from"))).toBe(true);
  });

  it("no outcome by the deadline and the task claim deleted: spawn() says unknown, not denied", async () => {
    h = await startHarness({ gateways: 0 });
    const gw = await h.startGateway({ limits: { maxSkewMs: 200 } });
    const ran: string[] = [];
    gw.registerAction("transfer", async ({ taskId }) => {
      await sleep(5_000);
      ran.push(taskId);
      return { ok: true };
    });
    const rt = await Runtime.connect({ natsUrl: h.url, outcomeTimeoutMs: 1_500, maxSkewMs: 200, gatewayKeys: [namedKey("gateway-1").keyId] });
    const atk = await attacker(h.url);
    try {
      const taskId = newTaskId();
      const artifact = await grantRoot(h, taskId);
      const p = rt.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
      await sleep(1_000); // allowed and executing: the claim is this submission's
      await atk.kv.delete(taskClaimKey(taskId));
      const o = await p;
      expect(o).toMatchObject({ status: "unknown", verdict: "deny" });
      for (let i = 0; i < 400 && ran.length === 0; i++) await sleep(20);
      expect(ran).toEqual([taskId]);
    } finally {
      await rt.close();
      await atk.nc.close();
    }
  });
});
