// One authority's heartbeats never remove another's: a gateway trusting A starts fresh although
// B heartbeated after A (each authority deletes only its own previous heartbeat).
import { afterAll, beforeAll, expect, it } from "vitest";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
let h: Harness;
let b: Authority;
beforeAll(async () => {
  // A heartbeats every 20 s (below the CLI's 30 s warning); gateways allow a 30 s old feed.
  h = await startHarness({ gateways: 0, heartbeatMs: 20_000 });
  b = await Authority.connect({ natsUrl: h.url, key: namedKey("authority-b") });
});
afterAll(async () => {
  await b.close();
  await h.close();
});

it("a gateway trusting A starts fresh although B heartbeated after A", async () => {
  await h.authority.heartbeat(); // A: fresh now
  await b.heartbeat(); // B, some other authority on the same bus
  const gw = await h.startGateway();
  gw.registerAction("transfer", () => ({ ok: true }));
  const taskId = newTaskId();
  const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 1000, expiresAt: Date.now() + 60_000 }, nonce: namedNonce(`r6c-${taskId}`), attribution: { initiator: "t", reason: "t" } });
  const out = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  expect(out.codes).toEqual([]);
}, 60_000);
