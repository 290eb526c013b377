// A log is one origin's for good (found by an operator's review: a gateway started with another
// id on a copy of gw-2's data dir came up, wrote a checkpoint naming the new origin, and every
// audit of the log failed from there). Opening it under another origin is refused, and writes
// nothing; under its own, with a snapshot or without, it opens as before.
import { afterEach, describe, expect, it } from "vitest";
import { AuditStore, AuditStoreError, type AuditStoreOptions } from "../../src/audit/store.ts";
import { HARNESSES, openStore, outcomeEntry, storeOptions, type BackendHarness } from "./support.ts";

/** The open's error, its backend closed (a store that failed to open leaves a backend it was handed open). */
async function refusal(h: BackendHarness, over: Partial<AuditStoreOptions>): Promise<unknown> {
  const b = await h.open();
  try {
    const s = await AuditStore.open(b, storeOptions(over));
    await s.close();
    return undefined;
  } catch (e) {
    await b.close();
    return e;
  }
}

describe.each(HARNESSES.map((mk) => [mk().name, mk] as const))("%s: a log opened under another origin", (_, mk) => {
  let h: BackendHarness | undefined;
  afterEach(() => h?.cleanup());

  it("is refused with AUDIT_ORIGIN_MISMATCH, naming both, and is left as it was", async () => {
    h = mk();
    const s = await openStore(h, { origin: "gw-2", checkpointEvery: 4 });
    for (let i = 0; i < 10; i++) await s.append(outcomeEntry(i));
    await s.checkpoint();
    const size = s.size;
    await s.close();
    expect(size).toBeGreaterThan(10);
    const e = await refusal(h, { origin: "gw-2k", checkpointEvery: 4 });
    expect(e).toBeInstanceOf(AuditStoreError);
    expect(e).toMatchObject({ code: "AUDIT_ORIGIN_MISMATCH" });
    expect(String((e as Error).message)).toContain('"gw-2"');
    expect(String((e as Error).message)).toContain('"gw-2k"');
    const again = await openStore(h, { origin: "gw-2", checkpointEvery: 4 });
    expect(again.size).toBe(size);
    await again.close();
  });

  it("is refused when it opens from a snapshot too", async () => {
    h = mk();
    const s = await openStore(h, { origin: "gw-2", checkpointEvery: 3 });
    for (let i = 0; i < 10; i++) await s.append(outcomeEntry(i));
    await s.writeSnapshot();
    await s.close();
    expect(await refusal(h, { origin: "gw-3" })).toMatchObject({ code: "AUDIT_ORIGIN_MISMATCH" });
    const own = await openStore(h, { origin: "gw-2" });
    expect(own.openedFrom.snapshotSize).toBeGreaterThan(0);
    await own.close();
  });

  it("with no checkpoint yet, the gateway its decisions were measured on names it (found by review)", async () => {
    h = mk();
    const s = await openStore(h, { origin: "gw-2" });
    await s.append({ type: "decision", taskId: "t-1", input: { environment: { gatewayId: "gw-2" } }, decision: { verdict: "deny", checks: [], reasons: ["MALFORMED"] } });
    await s.close();
    expect(await refusal(h, { origin: "gw-9" })).toMatchObject({ code: "AUDIT_ORIGIN_MISMATCH" });
    const own = await openStore(h, { origin: "gw-2" });
    expect(own.size).toBe(1);
    await own.close();
  });

  it("a log with no checkpoint and no decision yet names no origin: it opens", async () => {
    h = mk();
    const s = await openStore(h, { origin: "gw-2" });
    await s.append(outcomeEntry(0));
    await s.close();
    const other = await openStore(h, { origin: "gw-9" });
    expect(other.size).toBe(1);
    await other.close();
  });
});
