// The store takes only whole, safe, non-negative ms from its clock; anything else fails the batch
// as a broken clock (RangeError, the store unwritable). A fractional reading was signed into
// checkpoints every witness and replay refuses; one beyond 2^53 was blamed on the entries.
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { checkpointShapeProblem } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { GATEWAY_KEY, outcomeEntry, tempDir } from "./support.ts";

const dirs: (() => void)[] = [];
afterEach(() => {
  for (const c of dirs.splice(0)) c();
});
const dir = (): string => {
  const t = tempDir("fc-rev-clock-");
  dirs.push(t.cleanup);
  return join(t.dir, "db");
};

it("a fractional clock reading never becomes a signed checkpoint a witness refuses", async () => {
  const s = await AuditStore.open(dir(), { origin: "gw-clock", gatewayKey: GATEWAY_KEY, clock: () => 1_700_000_000_000.5, checkpointEvery: 0 });
  try {
    let cp: Awaited<ReturnType<AuditStore["checkpoint"]>> | undefined;
    let err: unknown;
    try {
      await s.append(outcomeEntry(1));
      cp = await s.checkpoint();
    } catch (e) {
      err = e;
    }
    if (cp !== undefined) expect(checkpointShapeProblem(cp)).toBeUndefined();
    else expect(err).toBeDefined();
  } finally {
    await s.close();
  }
});

it("a clock reading beyond 2^53 fails the batch as a broken clock, not as the caller's bad entry", async () => {
  const s = await AuditStore.open(dir(), { origin: "gw-clock", gatewayKey: GATEWAY_KEY, clock: () => 2 ** 60, checkpointEvery: 0 });
  try {
    const e = await s.append(outcomeEntry(1)).then(
      () => undefined,
      (x: unknown) => x as { code?: string },
    );
    expect(e?.code).not.toBe("AUDIT_INVALID_ENTRY");
    expect(s.writable).toBe(false);
  } finally {
    await s.close();
  }
});
