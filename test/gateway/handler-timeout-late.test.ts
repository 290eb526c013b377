// A handler cut off by handlerTimeoutMs is recorded (and reported) as "failed", but nothing can
// stop it: most I/O ignores ctx.signal, and its effects may still land. The outcome says so, and
// when the handler settles after its timeout the gateway records how it ended, as a late outcome
// after the failed one (status and result digest), and warns, so "failed" is not taken for "had
// no effect". Replay takes one late outcome after a failed one, and no other.
import { expect, it } from "vitest";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { replayGateway } from "../../src/testkit/harness.ts";
import { sleep, worldPerTest } from "./one-gateway-world.ts";

const world = worldPerTest();

it("a handler that finishes after its timeout: the outcome says it may still be running, and its completion is warned about", { timeout: 60_000 }, async () => {
  const w = await world({ handlerTimeoutMs: 300 });
  let transferred = false;
  w.gw.registerAction("transfer", async () => {
    await sleep(1_000); // I/O that does not listen to ctx.signal
    transferred = true;
    return { ok: true };
  });
  const { taskId, outcome } = await w.run();
  expect(outcome).toMatchObject({ verdict: "allow", status: "failed", error: expect.stringMatching(/took longer than 300 ms: told to stop \(ctx.signal\), but it may still be running/) });
  for (let i = 0; i < 200 && !transferred; i++) await sleep(25);
  expect(transferred).toBe(true);
  for (let i = 0; i < 40 && !w.h.warnings.some((x) => x.includes(`task ${taskId}: handler "transfer" completed after its timeout`)); i++) await sleep(25);
  expect(w.h.warnings.filter((x) => x.includes(taskId))).toEqual([expect.stringMatching(/completed after its timeout \(its outcome is recorded as failed\): it succeeded, result digest [A-Za-z0-9_-]{43}$/)]);
  // The log tells the whole story: allowed, failed (timed out), then late: succeeded.
  for (let i = 0; i < 40 && w.gw.ledger.state.tasks.get(taskId)?.status !== "succeeded"; i++) await sleep(25);
  expect(w.gw.ledger.state.tasks.get(taskId)?.status).toBe("succeeded");
  await sleep(100); // the late record's batch synced
  const records = (await exportJsonl(w.gw.ledger.store.backend)).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { type: string; taskId?: string });
  const outcomes = records.filter((r) => r.type === "outcome" && r.taskId === taskId);
  expect(outcomes).toEqual([
    expect.objectContaining({ status: "failed", error: expect.stringMatching(/took longer than 300 ms/) as unknown }),
    expect.objectContaining({ status: "succeeded", late: true, resultDigest: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) as unknown }),
  ]);
  const report = await replayGateway(w.gw);
  expect(report.divergences).toEqual([]);
  expect(report.ok).toBe(true);
});
