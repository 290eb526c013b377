// A runtime that runs its own gateway takes only signed outcomes, even without gatewayKeys: its
// gateway's key (and its peers') are trusted, and an unsigned "succeeded" published by whoever
// can reach failclosed.outcome.> is ignored.
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { SUBJECTS, submissionIdOf } from "../../src/nats/contract.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

let h: Harness | undefined;
let rt: Runtime | undefined;
afterEach(async () => {
  await rt?.close();
  await h?.close();
  h = rt = undefined;
});
const agent = namedKey("agent-0");

it("spawn() on a runtime with its own gateway does not report success for a task its gateway denied", { timeout: 60_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  rt = await Runtime.connect({
    natsUrl: hh.url,
    dataDir: join(hh.dir, "rt-gw"),
    gateway: { gatewayId: "rt-gw", gatewayKey: namedKey("gateway-7"), authorities: [hh.authority.keyId], attributes: { name: "staging" }, evidenceDeadlineMs: 1_500 },
    outcomeTimeoutMs: 10_000,
  });
  let ran = 0;
  rt.registerAction("transfer", () => (ran++, { ok: true }));
  // The attacker: reads the submit subject, answers first with an unsigned success.
  const spy = hh.runtime.nc.subscribe(SUBJECTS.taskSubmit);
  void (async () => {
    for await (const m of spy) {
      const body = JSON.parse(new TextDecoder().decode(m.data));
      const taskId = body.request.payload.taskId;
      hh.runtime.nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "succeeded", submissionId: submissionIdOf(body), result: { ok: true } }));
    }
  })();
  await hh.runtime.nc.flush();
  // A grant whose origin lineage names another task: the gateway denies it (LINEAGE_BROKEN / NO_ARTIFACT).
  const t = newTaskId();
  const { artifact } = await hh.authority.grant({ taskId: `${t}-other`, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 }, nonce: namedNonce(`g-${t}`), attribution: { initiator: "t", reason: "r" } });
  const o = await rt.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId: t }).outcome;
  spy.unsubscribe();
  expect(ran).toBe(0);
  // The forged success is ignored: the answer is the gateway's own signed deny.
  expect(o).toMatchObject({ verdict: "deny", status: "denied", gatewayId: "rt-gw" });
  expect(o.sig).toBeDefined();
});
