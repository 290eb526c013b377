// A running gateway survives the bus objects it reads being deleted and made again (by anyone
// with stream API rights, or an operator): the shared task consumer (nats.js stopped delivering,
// silently, for good) and the policy bucket (its KV watch went quiet, so a policy the authority
// retired stayed in force and its artifacts ran).
import { afterEach, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, STREAMS, TASK_CONSUMER } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { grantRoot, transfer } from "./client-support.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("the task consumer deleted under a running gateway: it says so, makes it again and takes work", async () => {
  h = await startHarness();
  h.gateways[0]!.registerAction("transfer", () => ({ ok: true }));
  const t0 = newTaskId();
  expect(await transfer(h, t0, await grantRoot(h, t0))).toMatchObject({ status: "succeeded" });
  await (await jetstreamManager(h.runtime.nc)).consumers.delete(STREAMS.tasks, TASK_CONSUMER);
  for (let i = 0; i < 250 && !h.warnings.some((w) => w.includes("task consumer lost")); i++) await sleep(20);
  expect(h.warnings.some((w) => w.includes("task consumer lost"))).toBe(true);
  const t1 = newTaskId();
  expect(await transfer(h, t1, await grantRoot(h, t1))).toMatchObject({ status: "succeeded" });
});

it("the policy bucket deleted and made again: the gateway still follows the authority's next policy", async () => {
  h = await startHarness({ gateway: { policyRecheckMs: 200 } });
  const gw = h.gateways[0]!;
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const t1 = newTaskId();
  const underP1 = await grantRoot(h, t1);
  const jsm = await jetstreamManager(h.runtime.nc);
  await jsm.streams.delete(`KV_${KV_BUCKETS.policy}`);
  await new Kvm(h.runtime.nc).create(KV_BUCKETS.policy, { history: 5 });
  await sleep(500);
  // The authority retires P1; its put lands in the new bucket, where the old watch cannot see it.
  const p2 = { ...DEFAULT_POLICY, id: "p2", version: "2", cedar: `@id("read")\npermit (principal, action == Action::"read", resource);` };
  await h.authority.publishPolicy(p2);
  for (let i = 0; i < 250 && gw.ledger.state.policy?.digest !== policyDigest(p2); i++) await sleep(20);
  expect(gw.ledger.state.policy?.digest).toBe(policyDigest(p2));
  expect(await transfer(h, t1, underP1)).toMatchObject({ status: "denied", codes: ["POLICY_MISMATCH"] });
  expect(ran).toEqual([]);
});
