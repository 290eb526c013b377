// CLOCK_BACKWARDS (clock-audit.ts) on a genuine log: a gateway clock that ran fast signs a
// checkpoint (a witness holds it), NTP sets the clock right, and an artifact valid by the right
// clock, close to its end, is allowed: by the fast checkpoint's time it "had expired", so replay
// reports CLOCK_BACKWARDS. The design notes a fast-then-fixed clock makes request ages look
// stale and so leaves them out; expiry has the same problem, for artifacts near their end.
// (Found by review, session 11. Now CLOCK_BACKWARDS allows CLOCK_STEP_TOLERANCE_MS, a minute.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { agent, worldPerTest } from "../gateway/one-gateway-world.ts";

const world = worldPerTest();
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const roots = (gw: { id: string }) => ({ gatewayKeys: [namedKey("gateway-1").keyId], authorities: [namedKey("authority").keyId], origin: gw.id });
async function levelDir(): Promise<LevelBackend> {
  const d = mkdtempSync(join(tmpdir(), "fc-review-fast-"));
  dirs.push(d);
  return LevelBackend.open(d);
}

it("a gateway clock 20 s fast signs a checkpoint, NTP sets it right, and an artifact with 3 s left is (rightly) allowed: no CLOCK_BACKWARDS", { timeout: 60_000 }, async () => {
  const backend = await levelDir();
  let offset = 20_000;
  const w = await world({ audit: backend, clock: () => Date.now() + offset });
  w.gw.registerAction("transfer", () => ({ ok: true }));
  const client = await Runtime.connect({ natsUrl: w.h.url, gatewayKeys: [w.gw.keyId] });
  const run = async (validMs: number): Promise<{ taskId: string; outcome: TaskOutcome }> => {
    const taskId = newTaskId();
    const { artifact } = await w.h.authority.grant({
      taskId,
      holder: agent.keyId,
      scope: DEFAULT_SCOPE,
      validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + validMs },
      nonce: namedNonce(`review-fast-${taskId}`),
      attribution: { initiator: "t", reason: "clock set right" },
    });
    return { taskId, outcome: await client.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome };
  };
  let last: { taskId: string; outcome: TaskOutcome };
  try {
    expect((await run(3_600_000)).outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
    await w.gw.ledger.store.checkpoint(); // signed at the fast clock's time (and published: a witness holds it)
    offset = 0; // NTP steps the clock back to the right time
    last = await run(3_000);
  } finally {
    await client.close();
  }
  // Valid by the right clock (3 s left): the gateway allows it, as it should.
  expect(last.outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
  await w.gw.ledger.store.checkpoint();
  const rep = await replay(backendLogSource(backend), roots(w.gw));
  expect(rep.divergences).toEqual([]);
});
