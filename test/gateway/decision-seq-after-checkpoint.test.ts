// Found by review (a fail-closed pass): the ledger's projection numbers records without the checkpoints the
// store inserts between them (Ledger.appendPrepared folds `recordOf(entry, projected.size, …)`,
// and the store's checkpoint records are never folded into it). Once one checkpoint is in the log
// (the `failclosed gateway` service writes one every 10 s: service.ts checkpointIntervalMs), every
// later `decisionSeq` in `ledger.state.tasks` names a position that is not the decision's.
// #allowedSubmission (gateway.ts) reads the record at that position to learn which submission
// this gateway ran: it finds another record, so a byte-identical copy of a submission that RAN,
// its claims lost, is answered `claimsUnread` instead of `duplicate` — and the client, reading
// "no claim" at the deadline, settles it as "denied". (With the default checkpointEvery of 1000
// and no timer, as test/gateway/deny-copy-of-ran-task.test.ts runs, no checkpoint precedes the
// decision and the same sequence passes.)
import { jetstreamManager } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { KV_BUCKETS } from "../../src/nats/contract.ts";
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

it("with a checkpoint in the log, the ledger's decisionSeq is the log's, and a copy of a task that ran (claims lost) is not told 'denied'", async () => {
  // As the service runs it: a timed checkpoint (there every 10 s; here every 100 ms).
  h = await startHarness({ gateway: { checkpointIntervalMs: 100 } });
  const hh = h;
  const gw = hh.gateways[0]!;
  let runs = 0;
  gw.registerAction("transfer", () => (runs++, { ok: true }));
  // Let a timed checkpoint land after the start's trust records.
  await sleep(400);
  expect(gw.ledger.store.lastCheckpoint).toBeDefined();

  const taskId = newTaskId();
  const now = Date.now();
  const { artifact, lineage } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`rf-seq-${taskId}`), attribution: { initiator: "t", reason: "review failclosed" } });
  const args = { amount: 1 };
  const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: now, notAfter: now + 8_000 });
  const first = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], timeoutMs: 8_000, gatewayKeys });
  expect(first).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(runs).toBe(1);

  // Root cause: the allow's position as the ledger remembers it is not where the log holds it.
  const remembered = gw.ledger.state.tasks.get(taskId)?.decisionSeq;
  const rec = remembered === undefined ? undefined : await gw.ledger.store.getRecord(remembered);
  expect.soft({ remembered, type: rec?.type, taskId: rec?.type === "decision" ? rec.taskId : undefined }).toEqual({ remembered: first.decisionSeq, type: "decision", taskId });

  // The claims are lost (bucket deleted and made again), then the very same bytes come again.
  const jsm = await jetstreamManager(hh.runtime.nc);
  await jsm.streams.delete(`KV_${KV_BUCKETS.nonces}`);
  await ensureBus(hh.runtime.nc);
  await sleep(500);
  const seen = hh.outcomes.length;
  const copy = await submitTask(hh.runtime.nc, { request, args, chain: [artifact], lineage: [lineage], timeoutMs: 8_000, gatewayKeys });
  expect(runs).toBe(1);
  const gatewaySaid = hh.outcomes.slice(seen).find((o) => o.taskId === taskId);
  // The gateway knows from its own log that this very submission ran: a duplicate, as without a checkpoint.
  expect.soft(gatewaySaid, JSON.stringify(gatewaySaid)).toMatchObject({ verdict: "deny", duplicate: true });
  expect(copy.status, JSON.stringify({ codes: copy.codes, detail: copy.detail })).not.toBe("denied");
}, 90_000);
