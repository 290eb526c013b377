// Replay recomputes decide() on the clock reading and limits a decision records: the gateway's
// word. It holds them to what the log signs (src/audit/clock-audit.ts): the record's own time
// (CLOCK_MISMATCH), the times checkpoints already signed, in the log or held by a witness
// (CLOCK_BACKWARDS: an allow on an artifact that had expired by then, or of a request past its
// deadline or age limit; more in replay-deadline-clock.test.ts), and the limits the
// auditor pins (LIMITS_LOOSER). A clock that ran fast and was set right is not a finding by
// itself; the report notes how far times ran back.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import type { AuditRecord, CheckpointPayload } from "../../src/audit/records.ts";
import { replay, type TrustRoots } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { HOUR, T0, artifact, runTask } from "./operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, captureIo, memoryHarness, openStore, storeOptions, tempDir } from "./support.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";

const LIMITS = { maxSkewMs: 30_000, maxDepth: 4, maxFeedAgeMs: 60_000, maxRequestAgeMs: 60_000 };

describe("replay and the decision's clock", () => {
  let store: AuditStore;
  let published: Signed<CheckpointPayload>[];
  let clockNow: number;
  afterEach(async () => {
    await store.close();
  });
  const setup = async (): Promise<void> => {
    published = [];
    // The store reads this clock for record and checkpoint times (as the gateway's store does).
    store = await openStore(memoryHarness(), { checkpointEvery: 0, origin: "gw-test", clock: () => clockNow, onCheckpoint: (cp) => void published.push(cp) });
    clockNow = T0;
    await writeTrustSetup(store, true);
  };
  const run = (roots: TrustRoots = scenarioTrustRoots()) => replay(backendLogSource(store.backend), roots, { checkpoints: published });

  it("an honest decision at the store's time replays clean", async () => {
    await setup();
    clockNow = T0 + 2 * HOUR;
    const { decision } = await runTask(store, "t-ok", artifact({ nonce: "ok", now: T0 + 2 * HOUR }), { now: T0 + 2 * HOUR });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    const rep = await run();
    expect(rep.divergences).toEqual([]);
    expect(rep.clockRegression).toBeUndefined();
  });

  it("an allow committed as late as the gateway's commit timeout allows replays clean; later is CLOCK_MISMATCH", async () => {
    await setup();
    clockNow = T0 + 10_000; // the record is stamped 10 s after the decision read its clock
    await runTask(store, "t-slow", artifact({ nonce: "slow", now: T0 }), { now: T0 });
    clockNow = T0 + 20_001;
    const late = await runTask(store, "t-late", artifact({ nonce: "late", now: T0 + 10_000 }), { now: T0 + 10_000 });
    await store.checkpoint();
    expect((await run()).divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${late.seq}:CLOCK_MISMATCH`]);
    // A gateway configured with a longer step timeout: the auditor says so.
    expect((await run({ ...scenarioTrustRoots(), commitTimeoutMs: 15_000 })).divergences).toEqual([]);
  });

  it("an allow whose recorded clock is two hours before its own record's time (artifact expired in between) is CLOCK_MISMATCH (and CLOCK_BACKWARDS)", async () => {
    await setup();
    // Real time: T0 + 2h. The artifact was valid [T0 − 1 min, T0 + 1 h): expired an hour ago.
    clockNow = T0 + 2 * HOUR;
    await store.checkpoint(); // signed and published at T0 + 2h: a witness holds it
    const art = artifact({ nonce: "backdated", now: T0 });
    const { decision, seq } = await runTask(store, "t-backdated", art, { now: T0 }); // input.now = T0
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    const rec = (await readRecords(store.backend))[seq]!;
    expect(rec.time - T0).toBe(2 * HOUR);
    const rep = await run();
    // And the checkpoint signed at T0 + 2h, before it, already saw the artifact expired.
    // (CLOCK_MISMATCH is reported once the task's outcome shows it ran: after the other.)
    expect(rep.divergences.filter((d) => d.seq === seq).map((d) => d.kind)).toEqual(["CLOCK_BACKWARDS", "CLOCK_MISMATCH"]);
    expect(rep.divergences.find((d) => d.kind === "CLOCK_MISMATCH")!.detail).toBe(`decided at clock ${T0}, recorded at ${T0 + 2 * HOUR}: ${2 * HOUR} ms apart, beyond the 10000 ms one gateway's readings allow`);
  });

  it("the whole clock turned back after a signed checkpoint, onto an artifact expired by then, is CLOCK_BACKWARDS", async () => {
    await setup();
    clockNow = T0 + 2 * HOUR;
    await store.append({ type: "trust", change: { op: "gateway.add", keyId: GATEWAY_KEY.keyId } });
    const cp = await store.checkpoint(); // time T0 + 2h, on NATS
    expect(published.at(-1)!.payload.time).toBe(T0 + 2 * HOUR);
    // Record time and input.now agree with each other, two hours behind the checkpoint.
    clockNow = T0;
    const { decision, seq } = await runTask(store, "t-rewound", artifact({ nonce: "rewound", now: T0 }), { now: T0 });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint(); // time T0: earlier than the checkpoint before it
    const rep = await run();
    expect(rep.ok).toBe(false);
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${seq}:CLOCK_BACKWARDS`]);
    expect(rep.divergences[0]!.detail).toContain(`expired at ${T0 + HOUR}, before the time the checkpoint at ${cp!.payload.size} signed (${T0 + 2 * HOUR})`);
    expect(rep.clockRegression).toEqual({ seq, ms: 2 * HOUR });
  });

  it("a clock that ran fast and was set right is noted, not reported, while what it allows was valid at the signed time", async () => {
    await setup();
    // A request's age is held to signed times too: here the gateway allows requests 15 minutes
    // old. (With a 1-minute limit, the request below, ten minutes old by the fast checkpoint's
    // time, would be CLOCK_BACKWARDS: a step beyond CLOCK_STEP_TOLERANCE_MS looks like a turn-back.)
    const limits = { ...LIMITS, maxRequestAgeMs: 15 * 60_000 };
    clockNow = T0 + 10 * 60_000; // ten minutes fast
    await runTask(store, "t-fast", artifact({ nonce: "fast", now: T0 }), { now: clockNow, limits });
    await store.checkpoint();
    clockNow = T0 + 1_000; // set right; the request is fresh by this clock, ten minutes old (within its limit) by the checkpoint's
    const { decision, seq } = await runTask(store, "t-fixed", artifact({ nonce: "fixed", now: T0 }), { now: clockNow, limits });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    const rep = await run();
    expect(rep.divergences).toEqual([]);
    expect(rep.clockRegression).toEqual({ seq, ms: 10 * 60_000 - 1_000 });
  });

  it("a checkpoint time lowered and re-signed in the log is still caught by the one the witness holds", async () => {
    await setup();
    clockNow = T0 + 2 * HOUR;
    await store.append({ type: "trust", change: { op: "gateway.add", keyId: GATEWAY_KEY.keyId } });
    const cp = (await store.checkpoint())!;
    clockNow = T0;
    const { seq } = await runTask(store, "t-rewound", artifact({ nonce: "rewound", now: T0 }), { now: T0 });
    // The operator rewrites its log: the checkpoint signs T0 now (same size and root, re-signed).
    const records = await readRecords(store.backend);
    const at = records.findIndex((r) => r.type === "checkpoint" && r.checkpoint.payload.size === cp.payload.size);
    const lowered = { ...records[at]!, checkpoint: signPayload("checkpoint", { ...cp.payload, time: T0 }, GATEWAY_KEY) } as AuditRecord;
    await writeForgedLog(store.backend, records.map((r, i) => (i === at ? lowered : r)), GATEWAY_KEY);
    expect((await replay(backendLogSource(store.backend), scenarioTrustRoots())).divergences).toEqual([]);
    const rep = await run(); // with the witness's copy of the original
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${seq}:CLOCK_BACKWARDS`]);
  });

  describe("limits", () => {
    const stretched = async (): Promise<number> => {
      await setup();
      clockNow = T0 + 3 * HOUR;
      // Honest clock (input.now = record time); the artifact expired at T0 + 1 h. Every other
      // decision of this gateway records maxSkewMs 30 s; this one records 10 h.
      await runTask(store, "t-normal", artifact({ nonce: "normal", now: T0 + 3 * HOUR }), { now: T0 + 3 * HOUR, limits: LIMITS });
      const { decision, seq } = await runTask(store, "t-stretched", artifact({ nonce: "stretched", now: T0 }), { now: T0 + 3 * HOUR, limits: { ...LIMITS, maxSkewMs: 10 * HOUR } });
      expect(decision.verdict).toBe("allow");
      await store.checkpoint();
      return seq;
    };

    it("an allow whose recorded limits are looser than those the trust roots pin is LIMITS_LOOSER", async () => {
      const seq = await stretched();
      const rep = await run({ ...scenarioTrustRoots(), limits: LIMITS });
      expect(rep.divergences).toEqual([{ seq, kind: "LIMITS_LOOSER", detail: `limits.maxSkewMs ${10 * HOUR} is looser than the pinned 30000` }]);
    });

    it("without pinned limits they are the gateway's word: a gateway may be configured so, and the log records no restart", async () => {
      await stretched();
      expect((await run()).divergences).toEqual([]);
    });

    it("`audit replay` takes the limits (and the commit timeout) from the --trust file", async () => {
      await store?.close().catch(() => undefined);
      const t = tempDir("fc-clock-cli-");
      try {
        const db = join(t.dir, "db");
        store = await AuditStore.open(await LevelBackend.open(db), storeOptions({ origin: "gw-test", clock: () => T0 + 3 * HOUR }));
        await writeTrustSetup(store, true);
        const { seq } = await runTask(store, "t-stretched", artifact({ nonce: "stretched", now: T0 }), { now: T0 + 3 * HOUR, limits: { ...LIMITS, maxSkewMs: 10 * HOUR } });
        await store.checkpoint();
        await store.close();
        const trust = join(t.dir, "trust.json");
        writeFileSync(trust, JSON.stringify({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], limits: LIMITS, commitTimeoutMs: 5_000 }));
        const io = captureIo();
        expect(await runAudit(["replay", "--db", db, "--trust", trust, "--workers", "0"], io)).toBe(1);
        expect(io.stdout()).toContain(`seq ${seq}: LIMITS_LOOSER: limits.maxSkewMs ${10 * HOUR} is looser than the pinned 30000`);
        writeFileSync(trust, JSON.stringify({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], limits: { maxSkewMs: "30s" } }));
        expect(await runAudit(["replay", "--db", db, "--trust", trust], captureIo())).toBe(2);
      } finally {
        store = await openStore(memoryHarness()); // for afterEach
        t.cleanup();
      }
    });
  });
});
