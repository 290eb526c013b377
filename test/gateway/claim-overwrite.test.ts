// A plain KV put over a held task-id claim (claims are unsigned; the right to publish on
// $KV.failclosed_nonces.> is the only thing that keeps it out): a denied-copies list put there
// used to let the holder's second submission of that task id, under a fresh artifact, take the
// claim over and run on another gateway, so the task id ran twice (found by a probe). A gateway
// now takes a denied-copies claim over only when the key's history holds nothing but such lists.
import { expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { KV_BUCKETS, taskClaimKey } from "../../src/nats/contract.ts";
import { CLAIM_HISTORY } from "../../src/nats/setup.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot, transfer } from "./client-support.ts";

it("a denied-copies list put over a held claim does not let the task id run again on another gateway", async () => {
  const hh = await startHarness({ gateways: 0 });
  try {
    const ran: string[] = [];
    const g1 = await hh.startGateway({ id: "gw-1", key: namedKey("gateway-1") });
    g1.registerAction("transfer", ({ taskId, gatewayId }) => (ran.push(`${taskId}@${gatewayId}`), { ok: true }));
    const t = newTaskId();
    expect(await transfer(hh, t, await grantRoot(hh, t))).toMatchObject({ status: "succeeded" });
    await g1.stop();
    const nc = await connect({ servers: hh.url });
    try {
      // The bucket keeps every revision of a key that honest gateways write (and more).
      const info = await (await jetstreamManager(nc)).streams.info(`KV_${KV_BUCKETS.nonces}`);
      expect(info.config.max_msgs_per_subject).toBe(CLAIM_HISTORY);
      await jetstream(nc).publish(`$KV.${KV_BUCKETS.nonces}.${taskClaimKey(t)}`, JSON.stringify({ outcome: "denied-copies", submissionIds: ["x".repeat(43)] }));
    } finally {
      await nc.close();
    }
    const g2 = await hh.startGateway({ id: "gw-2", key: namedKey("gateway-2") });
    g2.registerAction("transfer", ({ taskId, gatewayId }) => (ran.push(`${taskId}@${gatewayId}`), { ok: true }));
    const second = await transfer(hh, t, await grantRoot(hh, t));
    expect(second.status).not.toBe("succeeded");
    expect(ran).toEqual([`${t}@gw-1`]);
  } finally {
    await hh.close();
  }
}, 90_000);
