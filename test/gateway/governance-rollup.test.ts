// The governance stream refuses rollup headers: with them, any publisher on a governance subject
// could purge every revocation with one unsigned message, and a gateway started afterwards would
// allow a revoked artifact. (Heartbeats are trimmed by their own authority, by sequence.)
import { headers } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { artifactId } from "../../src/core/artifacts.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";

const agent = namedKey("agent-0");
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ gateways: 0, heartbeatMs: 300, gateway: { limits: { maxFeedAgeMs: 5_000 } } });
});
afterAll(async () => {
  await h.close();
});

it("an unsigned junk message with Nats-Rollup: all is refused by the stream; the revocation stays", async () => {
  const taskId = newTaskId();
  const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 1000, expiresAt: Date.now() + 60_000 }, nonce: namedNonce(`r6-${taskId}`), attribution: { initiator: "t", reason: "t" } });
  await h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "compromised");
  await h.authority.heartbeat();

  // Anyone who may publish on failclosed.gov.heartbeat (no key needed: the body is junk).
  const hdr = headers();
  hdr.set("Nats-Rollup", "all");
  await expect(jetstream(h.runtime.nc).publish(SUBJECTS.heartbeat, "junk", { headers: hdr })).rejects.toThrow(/rollup not permitted/);
  const info = await (await jetstreamManager(h.runtime.nc)).streams.info(STREAMS.gov, { subjects_filter: ">" });
  // The revocation is still in the stream.
  expect(info.state.subjects?.[SUBJECTS.revocation] ?? 0).toBe(1);
}, 30_000);

it("end to end: a gateway started afterwards still learns the revocation and denies the task REVOKED", async () => {
  const taskId = newTaskId();
  const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 1000, expiresAt: Date.now() + 60_000 }, nonce: namedNonce(`r6b-${taskId}`), attribution: { initiator: "t", reason: "t" } });
  await h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "compromised");
  await h.authority.heartbeat();
  const hdr = headers();
  hdr.set("Nats-Rollup", "all");
  await jetstream(h.runtime.nc).publish(SUBJECTS.heartbeat, "junk", { headers: hdr }).catch(() => undefined);
  const gw = await h.startGateway();
  const executed: string[] = [];
  gw.registerAction("transfer", ({ taskId: t }) => {
    executed.push(t);
    return { ok: true };
  });
  await h.authority.heartbeat();
  await new Promise((r) => setTimeout(r, 500));
  const out = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  expect(executed).not.toContain(taskId);
  expect(out.codes).toContain("REVOKED");
}, 60_000);
