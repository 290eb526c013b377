// `audit checkpoints --gateway-key` with a key that does not decode is a usage error (exit 2),
// never a listing with the signature check quietly off.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAudit } from "../../src/audit/cli.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { captureIo, outcomeEntry, storeOptions, tempDir } from "./support.ts";
import { writeForgedLog, readRecords, type Forgeable } from "./tamper.ts";
import { LevelBackend } from "../../src/audit/backend.ts";
import { ROGUE_KEY, GATEWAY_KEY } from "./support.ts";


describe("audit checkpoints with a malformed --gateway-key", () => {
  const t = tempDir("fc-cps-");
  const db = join(t.dir, "db");
  beforeAll(async () => {
    const store = await AuditStore.open(db, storeOptions({ checkpointEvery: 4 }));
    for (let i = 0; i < 10; i++) await store.append(outcomeEntry(i));
    await store.close();
    // Re-sign every checkpoint with a rogue key (forged tail).
    const b = await LevelBackend.open(db);
    const recs = await readRecords(b);
    const forged = recs.map((r) => {
      const { seq: _s, prev: _p, ...rest } = r;
      if (rest.type === "checkpoint") return { ...rest, checkpoint: { ...rest.checkpoint, payload: { ...rest.checkpoint.payload, size: -1 } } } as Forgeable;
      return rest;
    });
    await writeForgedLog(b, forged, ROGUE_KEY);
    await b.close();
  });
  afterAll(() => t.cleanup());

  it("a real key flags the rogue signatures (exit 1)", async () => {
    expect(await runAudit(["checkpoints", "--db", db, "--gateway-key", GATEWAY_KEY.keyId], captureIo())).toBe(1);
  });

  it("a mistyped key does not turn the check off (exit 1 or 2, never 0)", async () => {
    const io = captureIo();
    const code = await runAudit(["checkpoints", "--db", db, "--gateway-key", `${GATEWAY_KEY.keyId}x`], io);
    expect(code, io.stdout()).not.toBe(0);
  });
});
