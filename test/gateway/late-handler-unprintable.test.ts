// Found by review (bf81718): #watchLateHandler turned a timed-out handler's late rejection into an
// error string with `e instanceof Error ? e.message : String(e)` inside the promise's rejection
// callback. String() throws for a value with no primitive form (Object.create(null), an object whose
// toString throws): `ended` then rejects, so Promise.all([ended, outcomeWritten]) rejects, and the
// `void …then(async …)` chain has no catch: an unhandled rejection. Node 20 (and the gateway CLI,
// which installs no handler) exits the process on one: a handler's code crashes the gateway, every
// other executing handler's outcome unrecorded, and no late outcome is written for this task.
import { expect, it } from "vitest";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { sleep, worldPerTest } from "./one-gateway-world.ts";

const world = worldPerTest();

it("a handler that rejects after its timeout with a value String() cannot convert: no unhandled rejection, and a late failed outcome is recorded", { timeout: 60_000 }, async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const w = await world({ handlerTimeoutMs: 300 });
    let settled = false;
    w.gw.registerAction("transfer", async () => {
      await sleep(800); // I/O that does not listen to ctx.signal
      settled = true;
      // What a library may throw: a plain record with no prototype.
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- the point of the test
      throw Object.assign(Object.create(null) as object, { code: "E_REMOTE" });
    });
    const { taskId, outcome } = await w.run();
    expect(outcome).toMatchObject({ verdict: "allow", status: "failed" });
    for (let i = 0; i < 200 && !settled; i++) await sleep(25);
    expect(settled).toBe(true);
    await sleep(500);
    expect(unhandled.map((e) => (e instanceof Error ? e.message : "non-error"))).toEqual([]);
    // How it ended is recorded as a late outcome after the failed one.
    const records = (await exportJsonl(w.gw.ledger.store.backend)).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as { type: string; taskId?: string; late?: boolean });
    expect(records.filter((r) => r.type === "outcome" && r.taskId === taskId && r.late === true)).toEqual([expect.objectContaining({ status: "failed" })]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
