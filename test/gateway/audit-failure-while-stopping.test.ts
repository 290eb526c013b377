// A real audit write failure during stop()'s grace (an executing handler's outcome record refused
// by a failing disk) is a failure, not one of the close's own refusals: the gateway records it as
// its auditFailure and says so, so a service exits 2 instead of reporting the log flushed. The
// refusals of a log that is only closing (nothing failed) stay silent.
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { BreakableBackend } from "../../src/testkit/breakable-backend.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function executingThenStop(breakDisk: boolean): Promise<{ failure: unknown; auditFailure: unknown; warnings: string[] }> {
  const hh = (h = await startHarness({ gateways: 0 }));
  const backend = await BreakableBackend.open(join(hh.dir, "breakable"));
  const gw = await hh.startGateway({ audit: backend, stopGraceMs: 10_000 });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started = false;
  gw.registerAction("transfer", async () => {
    started = true;
    await gate;
    return { ok: true };
  });
  const t = newTaskId();
  const now = Date.now();
  const { artifact } = await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`g-${t}`), attribution: { initiator: "t", reason: "t" } });
  const outcome = hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId: t }).outcome;
  for (let i = 0; i < 500 && !started; i++) await new Promise((r) => setTimeout(r, 20));
  expect(started).toBe(true);
  const stopping = gw.stop();
  await new Promise((r) => setTimeout(r, 100));
  if (breakDisk) await backend.breakNow(); // the disk fails while the handler still runs, before the log closes
  release();
  await stopping;
  expect(await outcome).toMatchObject({ verdict: "allow" });
  return { failure: gw.ledger.failure, auditFailure: gw.auditFailure, warnings: hh.warnings.filter((w) => w.includes("audit log not writable")) };
}

it("a disk that fails while the gateway stops: auditFailure is set and said (the service exits 2)", { timeout: 60_000 }, async () => {
  const r = await executingThenStop(true);
  expect(r.failure).toBeDefined();
  expect(r.auditFailure).toBe(r.failure);
  expect(r.warnings).toEqual([expect.stringMatching(/^\[gw-1\] audit log not writable while stopping \(/)]);
});

it("a clean stop while a handler runs: no auditFailure, nothing said", { timeout: 60_000 }, async () => {
  const r = await executingThenStop(false);
  expect(r.auditFailure).toBeUndefined();
  expect(r.warnings).toEqual([]);
});
