// A duplicate of this submission seen while waiting (its original holds the task) marks every
// "unknown" answer as a duplicate, the bus-lost one included.
import { afterEach, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { awaitOutcome } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { KV_BUCKETS, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("bus lost after a held duplicate: the answer drops the duplicate mark", { timeout: 30_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const nc = await connect({ servers: h.url });
  const t = newTaskId();
  const submissionId = "S".repeat(43);
  const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.nonces);
  await kv.create(taskClaimKey(t), JSON.stringify({ taskId: t, nonce: "n", submissionId, gatewayId: "gw-1" }));
  const w = awaitOutcome(nc, t, 5_000, { submissionId, deadline: { inMs: 300, skewMs: 100 } });
  await w.ready;
  h.runtime.nc.publish(SUBJECTS.outcome(t), JSON.stringify({ taskId: t, gatewayId: "gw-1", verdict: "deny", codes: ["REPLAYED"], status: "denied", submissionId, duplicate: true }));
  await h.runtime.nc.flush();
  await new Promise((r) => setTimeout(r, 100));
  await nc.close();
  const o = await w.outcome;
  // Every other branch with `held` answers duplicateOutcome (codes REPLAYED, duplicate: true),
  // which agents/report.ts judge() needs to accept an expected REPLAYED deny.
  expect(o, JSON.stringify(o)).toMatchObject({ status: "unknown", duplicate: true, codes: ["REPLAYED"] });
});
