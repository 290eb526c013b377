// Found by review (440be37 #copyMark, c5cb6c8 #spendTaskId): a gateway's own log is the durable record
// of what it ran ("a gateway also refuses a task id its own log already allowed, which covers a
// restart and a claim the KV lost"). When the claims bucket no longer holds the task's claims (the
// KV lost its newest writes in a crash, JetStream 2.9 not fsyncing; here: the bucket deleted and
// made again), a byte-identical copy of a submission that RAN on this gateway is refused by the log
// (REPLAYED), and then #copyMark reads "none"/"none" and never asks the log: the copy's deny is
// published unmarked, status "denied", to the very submission that ran; and c5cb6c8 now also
// writes a task-id claim marked `"outcome": "denied"` for it, which every later reader (another
// gateway's #readClaim, a client's taskClaimHolder at its deadline) takes as "it never ran".
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { DENIED_CLAIM_MARK, KV_BUCKETS, taskClaimKey } from "../../src/nats/contract.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { agent, sleep } from "./client-support.ts";

const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a copy of a submission this gateway ran, its claims lost: not told 'denied', and no claim saying it was denied", async () => {
  h = await startHarness();
  const hh = h;
  const gw = hh.gateways[0]!;
  let runs = 0;
  gw.registerAction("transfer", () => (runs++, { ok: true }));
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact, lineage } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`s11-ran-${taskId}`), attribution: { initiator: "t", reason: "review s11" } });
  const args = { amount: 1 };
  const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: now, notAfter: now + 20_000 });
  const first = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 20_000, gatewayKeys });
  expect(first).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(runs).toBe(1);
  // The claims are lost (as in a JetStream crash that lost the newest KV writes).
  const jsm = await jetstreamManager(hh.runtime.nc);
  await jsm.streams.delete(`KV_${KV_BUCKETS.nonces}`);
  await ensureBus(hh.runtime.nc);
  await sleep(500);
  // The very same bytes again (a redelivery, a replay, or the submitter asking again).
  // (Its evidence again too: the gateway forgot the task's evidence once it was allowed.)
  const copy = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], lineage: [lineage], timeoutMs: 20_000, gatewayKeys });
  expect(runs).toBe(1); // the log refused it: nothing ran twice
  const claim = await (await new Kvm(hh.runtime.nc).open(KV_BUCKETS.nonces)).get(taskClaimKey(taskId));
  const claimValue = claim === null ? null : claim.json<Record<string, unknown>>();
  // This submission ran: the gateway must not call it denied, nor spend its task id as a deny.
  expect(claimValue?.["outcome"], JSON.stringify(claimValue)).not.toBe(DENIED_CLAIM_MARK);
  expect(copy.status, JSON.stringify({ codes: copy.codes, detail: copy.detail, duplicate: copy.duplicate })).not.toBe("denied");
}, 90_000);
