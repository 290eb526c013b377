// Hostile evidence cannot make the audit log unreadable: a flood of artifact-shaped messages whose
// schema errors echo 60 KB keys, then an unsigned submission naming that task. The deny is
// recorded small (intake errors are capped and cut), the log replays clean, the gateway restarts
// on it, and the next genuine task runs. (The store itself refuses any record it could not read
// back: test/audit/append-limits.test.ts.)
import { join } from "node:path";
import { expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { agent, harnessPerTest } from "./client-support.ts";

const startHarness = harnessPerTest();
const validity = () => ({ notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 });

it("a hostile submission cannot make the audit log unreadable (oversized decision record)", { timeout: 120_000 }, async () => {
  const hh = await startHarness();
  const dir = join(hh.dir, "gw-big");
  const gw = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
  const js = jetstream(hh.runtime.nc);
  const T = newTaskId();
  const id = "A".repeat(43);
  const key = "k".repeat(60_000);
  const junk = JSON.stringify({
    payload: { kind: "failclosed/artifact/v1", issuer: id, holder: id, scope: { actions: ["a"], resources: ["r"], constraints: { [key]: { min: 1 } } } },
    sig: "x",
  });
  for (let i = 0; i < 150; i++) await js.publish(SUBJECTS.artifact(T), junk);
  // An unsigned request: only payload.taskId and payload.artifactId need to be there.
  await js.publish(SUBJECTS.taskSubmit, JSON.stringify({ request: { payload: { taskId: T, artifactId: "x" }, sig: "x" }, args: {} }));
  for (let i = 0; i < 1000 && !hh.outcomes.some((o) => o.taskId === T); i++) await new Promise((r) => setTimeout(r, 20));
  expect(hh.outcomes.find((o) => o.taskId === T)?.verdict).toBe("deny");
  const rec = await gw.ledger.store.getRecordBytes(gw.ledger.state.tasks.get(T)!.decisionSeq!);
  // Intake errors are capped and cut short: the deny records what was wrong, in a few KB.
  expect(rec!.byteLength).toBeLessThan(64 * 1024);

  const rep = await replayGateway(gw);
  // Restart on the same log (crash: no snapshot), then a valid task must still run.
  await gw.crash();
  expect(rep.ok).toBe(true);
  const gw2 = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
  gw2.registerAction("transfer", () => ({ ok: true }));
  const t = newTaskId();
  const g = await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`g-${t}`), attribution: { initiator: "t", reason: "r" } });
  const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [g.artifact], taskId: t }).outcome;
  expect(o).toMatchObject({ verdict: "allow", status: "succeeded" });
});
