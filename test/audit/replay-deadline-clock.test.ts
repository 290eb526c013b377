// CLOCK_BACKWARDS (clock-audit.ts) holds a request's own time limits to signed times, as it does
// an artifact's expiry: an allow of a request whose deadline (`notAfter`) or age limit
// (`createdAt` + the recorded maxRequestAgeMs) had passed, by more than the commit timeout and
// CLOCK_STEP_TOLERANCE_MS, at a time a checkpoint earlier in the log (or held by a witness) had
// signed. Before, an operator who turned its clock back could run a request past its deadline,
// within its artifact's validity, and replay could not tell (README's ⚠, session 12).
import { afterEach, describe, expect, it } from "vitest";
import { CLOCK_STEP_TOLERANCE_MS, DEFAULT_COMMIT_TIMEOUT_MS } from "../../src/audit/clock-audit.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import type { AuditRecord, CheckpointPayload } from "../../src/audit/records.ts";
import { replay, type TrustRoots } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { HOUR, T0, artifact, runTask } from "./operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, HARNESSES, openStore, type BackendHarness } from "./support.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";

/** What an honest gateway's clock may have run ahead of a later allow, and still be honest. */
const SLACK = DEFAULT_COMMIT_TIMEOUT_MS + CLOCK_STEP_TOLERANCE_MS;
/** Request age limit long enough that only the deadline is at stake. */
const LIMITS = { maxSkewMs: 30_000, maxDepth: 4, maxFeedAgeMs: 60_000, maxRequestAgeMs: HOUR };
const MINUTE = 60_000;

describe.each(HARNESSES)("replay holds a request's deadline and age to signed times (%o)", (harness) => {
  let h: BackendHarness;
  let store: AuditStore;
  let published: Signed<CheckpointPayload>[];
  let clockNow: number;
  afterEach(async () => {
    await store.close();
    h.cleanup();
  });
  const setup = async (): Promise<void> => {
    h = harness();
    published = [];
    clockNow = T0;
    store = await openStore(h, { checkpointEvery: 0, origin: "gw-test", clock: () => clockNow, onCheckpoint: (cp) => void published.push(cp) });
    await writeTrustSetup(store, true);
  };
  const found = async (roots: TrustRoots = scenarioTrustRoots(), checkpoints = published): Promise<string[]> =>
    (await replay(backendLogSource(store.backend), roots, { checkpoints })).divergences.map((d) => `${d.seq}:${d.kind}`);
  const details = async (roots: TrustRoots = scenarioTrustRoots()): Promise<string[]> =>
    (await replay(backendLogSource(store.backend), roots, { checkpoints: published })).divergences.map((d) => d.detail);

  it("the clock turned back ten minutes after a checkpoint, to allow a request 9½ minutes past its deadline (its artifact still valid), is CLOCK_BACKWARDS at the allow", async () => {
    await setup();
    const R = T0 + HOUR; // the agent signs its request at R, with a 30 s deadline
    const art = artifact({ nonce: "late", now: T0, validMs: 3 * HOUR }); // valid until T0 + 3 h throughout
    clockNow = R + 10 * MINUTE;
    const cp = (await store.checkpoint())!; // signed at R + 10 min, published: a witness holds it
    clockNow = R + 5_000; // the operator turns its clock back: the request is 5 s old, inside its deadline
    const { decision, seq } = await runTask(store, "t-late", art, { now: clockNow, createdAt: R, notAfter: R + 30_000, limits: LIMITS });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots(), { checkpoints: published });
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${seq}:CLOCK_BACKWARDS`]);
    expect(rep.divergences[0]!.detail).toBe(
      `allowed a request past its deadline ${R + 30_000}, before the time the checkpoint at ${cp.payload.size} signed (${R + 10 * MINUTE}); decided at clock ${R + 5_000}`,
    );
    expect(rep.clockRegression).toEqual({ seq, ms: 10 * MINUTE - 5_000 });
  });

  it("the clock turned back past a request's age limit (no deadline) is CLOCK_BACKWARDS, judged by the limit the decision recorded", async () => {
    await setup();
    const R = T0 + HOUR;
    const art = artifact({ nonce: "old", now: T0, validMs: 3 * HOUR });
    clockNow = R + 10 * MINUTE;
    const cp = (await store.checkpoint())!;
    clockNow = R + 5_000;
    const { decision, seq } = await runTask(store, "t-old", art, { now: clockNow, createdAt: R, limits: { ...LIMITS, maxRequestAgeMs: MINUTE } });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    expect(await found()).toEqual([`${seq}:CLOCK_BACKWARDS`]);
    expect(await details()).toEqual([
      `allowed a request past its age limit (created at ${R}, ${MINUTE} ms), before the time the checkpoint at ${cp.payload.size} signed (${R + 10 * MINUTE}); decided at clock ${R + 5_000}`,
    ]);
  });

  it("a deadline and an expired artifact passed by one turn-back make one finding that names both", async () => {
    await setup();
    const R = T0 + HOUR;
    const art = artifact({ nonce: "both", now: T0 }); // expires at T0 + 1 h = R
    clockNow = R + 10 * MINUTE;
    const cp = (await store.checkpoint())!;
    clockNow = T0 + 30 * MINUTE;
    const { decision, seq } = await runTask(store, "t-both", art, { now: clockNow, createdAt: clockNow - 1_000, notAfter: R, limits: LIMITS });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    expect(await found()).toEqual([`${seq}:CLOCK_BACKWARDS`]);
    expect(await details()).toEqual([
      `allowed a request past its deadline ${R}, on an artifact that expired at ${R}, before the time the checkpoint at ${cp.payload.size} signed (${R + 10 * MINUTE}); decided at clock ${T0 + 30 * MINUTE}`,
    ]);
  });

  it("right at the slack (commit timeout + step tolerance) past the deadline or the age limit is honest; a millisecond more is CLOCK_BACKWARDS", async () => {
    await setup();
    const X = T0 + HOUR;
    // An allow decided right at its deadline; a checkpoint signed by a clock as far ahead of it
    // as the commit timeout and a fast clock set right allow.
    clockNow = X + SLACK;
    await store.checkpoint();
    clockNow = X;
    const atDeadline = await runTask(store, "t-at-deadline", artifact({ nonce: "at-deadline", now: T0 }), { now: X, createdAt: X - 1_000, notAfter: X, limits: LIMITS });
    const atAge = await runTask(store, "t-at-age", artifact({ nonce: "at-age", now: T0 }), { now: X, createdAt: X - MINUTE, limits: { ...LIMITS, maxRequestAgeMs: MINUTE } });
    clockNow = X + SLACK + 1;
    await store.checkpoint();
    clockNow = X;
    const pastDeadline = await runTask(store, "t-past-deadline", artifact({ nonce: "past-deadline", now: T0 }), { now: X, createdAt: X - 1_000, notAfter: X, limits: LIMITS });
    const pastAge = await runTask(store, "t-past-age", artifact({ nonce: "past-age", now: T0 }), { now: X, createdAt: X - MINUTE, limits: { ...LIMITS, maxRequestAgeMs: MINUTE } });
    for (const t of [atDeadline, atAge, pastDeadline, pastAge]) expect(t.decision.verdict).toBe("allow");
    await store.checkpoint();
    expect(await found()).toEqual([`${pastDeadline.seq}:CLOCK_BACKWARDS`, `${pastAge.seq}:CLOCK_BACKWARDS`]);
  });

  it("the deadline's slack is not widened by the recorded skew (decide gives a deadline none), and widened by the pinned one as the bound is", async () => {
    await setup();
    const X = T0 + HOUR;
    clockNow = X + SLACK + 1;
    await store.checkpoint();
    clockNow = X;
    // The gateway's word: a 10-hour skew (decide's slack for validity windows, not for deadlines).
    const { seq } = await runTask(store, "t-skewed", artifact({ nonce: "skewed", now: T0 }), { now: X, createdAt: X - 1_000, notAfter: X, limits: { ...LIMITS, maxSkewMs: 10 * HOUR } });
    await store.checkpoint();
    expect(await found()).toEqual([`${seq}:CLOCK_BACKWARDS`]);
    // An auditor who pins a skew larger than the commit timeout accepts that much clock noise.
    expect(await found({ ...scenarioTrustRoots(), limits: { maxSkewMs: 10 * HOUR } })).toEqual([]);
  });

  it("a request age stretched in the recorded limits is LIMITS_LOOSER against pinned limits, not a clock finding", async () => {
    await setup();
    const R = T0 + HOUR;
    clockNow = R + 10 * MINUTE;
    await store.checkpoint();
    clockNow = R + 10 * MINUTE + 1_000; // the clock is right; the limit is what was stretched
    const { decision, seq } = await runTask(store, "t-stretched", artifact({ nonce: "stretched", now: T0, validMs: 3 * HOUR }), { now: clockNow, createdAt: R, limits: LIMITS });
    expect(decision.verdict).toBe("allow");
    await store.checkpoint();
    expect(await found()).toEqual([]);
    expect(await found({ ...scenarioTrustRoots(), limits: { maxRequestAgeMs: MINUTE } })).toEqual([`${seq}:LIMITS_LOOSER`]);
  });

  it("a checkpoint time lowered and re-signed in the log is still caught by the witness's copy, with or without the origin pinned", async () => {
    await setup();
    const R = T0 + HOUR;
    clockNow = R + 10 * MINUTE;
    const cp = (await store.checkpoint())!;
    clockNow = R + 5_000;
    const { seq } = await runTask(store, "t-late", artifact({ nonce: "late", now: T0, validMs: 3 * HOUR }), { now: clockNow, createdAt: R, notAfter: R + 30_000, limits: LIMITS });
    // The operator rewrites its log: the checkpoint signs R now (same size and root, re-signed).
    const records = await readRecords(store.backend);
    const at = records.findIndex((r) => r.type === "checkpoint" && r.checkpoint.payload.size === cp.payload.size);
    const lowered = { ...records[at]!, checkpoint: signPayload("checkpoint", { ...cp.payload, time: R }, GATEWAY_KEY) } as AuditRecord;
    await writeForgedLog(store.backend, records.map((r, i) => (i === at ? lowered : r)), GATEWAY_KEY);
    expect(await found(scenarioTrustRoots(), [])).toEqual([]);
    expect(await found()).toEqual([`${seq}:CLOCK_BACKWARDS`]);
    expect(await found({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], peerGateways: [] })).toEqual([`${seq}:CLOCK_BACKWARDS`]);
  });

  it("a clock that ran fast by the step tolerance and was set right flags no request allowed right after, up to its deadline", async () => {
    await setup();
    const R = T0 + HOUR; // true time
    clockNow = R + CLOCK_STEP_TOLERANCE_MS; // a minute fast
    await runTask(store, "t-fast", artifact({ nonce: "fast", now: T0 }), { now: clockNow, createdAt: R, notAfter: R + CLOCK_STEP_TOLERANCE_MS + 30_000, limits: LIMITS });
    await store.checkpoint();
    // NTP sets it right. Allowed at once: a request on the last ms before its 30 s deadline, and
    // one at its 1 min age limit (both had passed by the fast checkpoint's time).
    clockNow = R + 1_000;
    await runTask(store, "t-deadline", artifact({ nonce: "deadline", now: T0 }), { now: R + 1_000, createdAt: R + 1_000 - 30_000, notAfter: R + 1_000, limits: LIMITS });
    await runTask(store, "t-age", artifact({ nonce: "age", now: T0 }), { now: R + 1_000, createdAt: R + 1_000 - MINUTE, limits: { ...LIMITS, maxRequestAgeMs: MINUTE } });
    await store.checkpoint();
    expect(await found()).toEqual([]);
  });

  it("malformed request times in an allow (attacker bytes) are skipped, never thrown on", async () => {
    await setup();
    clockNow = T0 + HOUR;
    await store.checkpoint();
    const junk = [null, "x", [1], { payload: null }, { payload: { notAfter: "0", createdAt: "0" } }, { payload: { notAfter: null, createdAt: [] } }];
    const seqs: number[] = [];
    for (const [i, request] of junk.entries()) {
      const taskId = `t-junk-${i}`;
      const r = await store.append({
        type: "decision",
        taskId,
        input: { request, now: T0, limits: { ...LIMITS, maxRequestAgeMs: "1" } } as never,
        decision: { verdict: "allow", checks: [], reasons: [] },
      });
      seqs.push(r.seq);
    }
    await store.checkpoint();
    const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots(), { checkpoints: published });
    // Every other check has its say on these (decide does not reproduce them, no evidence...): none is a clock finding about the request.
    expect(rep.divergences.filter((d) => d.kind === "CLOCK_BACKWARDS")).toEqual([]);
    expect(seqs.every((s) => rep.divergences.some((d) => d.seq === s))).toBe(true);
  });
});
