// CLOCK_BACKWARDS holds a request's deadline (`notAfter`) to the times checkpoints signed
// (clock-audit.ts). On a genuine log: a gateway clock 55 s fast (inside CLOCK_STEP_TOLERANCE_MS)
// signs a checkpoint, NTP sets it right, and a request signed with the runtime's 30 s deadline is
// allowed at once. By the fast checkpoint's time that deadline had passed; the gateway is honest
// and replay must say nothing (the slack is the commit timeout and the step tolerance).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { backendLogSource, exportJsonl } from "../../src/audit/log-source.ts";
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

it("a gateway clock 55 s fast signs a checkpoint, NTP sets it right, and a request is allowed well inside its 30 s deadline: no CLOCK_BACKWARDS", { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "fc-deadline-fast-"));
  dirs.push(dir);
  const backend = await LevelBackend.open(dir);
  let offset = 55_000;
  const w = await world({ audit: backend, clock: () => Date.now() + offset });
  w.gw.registerAction("transfer", () => ({ ok: true }));
  const client = await Runtime.connect({ natsUrl: w.h.url, gatewayKeys: [w.gw.keyId], outcomeTimeoutMs: 30_000 });
  const run = async (): Promise<{ taskId: string; outcome: TaskOutcome }> => {
    const taskId = newTaskId();
    const { artifact } = await w.h.authority.grant({
      taskId,
      holder: agent.keyId,
      scope: DEFAULT_SCOPE,
      validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 },
      nonce: namedNonce(`deadline-fast-${taskId}`),
      attribution: { initiator: "t", reason: "clock set right" },
    });
    return { taskId, outcome: await client.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome };
  };
  let last: { taskId: string; outcome: TaskOutcome };
  try {
    // 55 s fast, the gateway sees the request 25 s past its deadline (and the revocation feed
    // 55 s old): it denies it, as it should.
    expect((await run()).outcome).toMatchObject({ verdict: "deny", codes: expect.arrayContaining(["EXPIRED"]) as unknown });
    await w.gw.ledger.store.checkpoint(); // signed at the fast clock's time
    offset = 0; // NTP steps the clock back to the right time
    last = await run();
  } finally {
    await client.close();
  }
  expect(last.outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
  await w.gw.ledger.store.checkpoint();
  // The allow's request carries its deadline, which the fast checkpoint's time is past.
  type Rec = { type: string; taskId?: string; time: number; input?: { request?: { payload?: { notAfter?: number } } }; checkpoint?: { payload: { time: number } } };
  const recs = (await exportJsonl(backend)).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Rec);
  const allow = recs.find((r) => r.type === "decision" && r.taskId === last.taskId)!;
  const notAfter = allow.input!.request!.payload!.notAfter!;
  const fastCheckpoint = recs.find((r) => r.type === "checkpoint")!.checkpoint!.payload.time;
  expect(fastCheckpoint).toBeGreaterThan(notAfter);
  const rep = await replay(backendLogSource(backend), { gatewayKeys: [namedKey("gateway-1").keyId], authorities: [namedKey("authority").keyId], origin: w.gw.id });
  expect(rep.divergences).toEqual([]);
});
