// `--trust FILE` (cli.ts readTrustFile): `limits` names are checked strictly (an unknown one is
// exit 2), but the file itself is not: a mistyped or wrongly typed field that would PIN something
// (origin, limits) is dropped without a word, and the audit runs unpinned, reporting a log as
// clean that the auditor meant to hold to that pin.
// (Found by review, session 11. Now an unknown or wrongly typed field is a usage error, exit 2.)
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { writeTrustSetup } from "../audit/scenario.ts";
import { HOUR, T0, artifact, runTask } from "../audit/operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, captureIo, storeOptions, tempDir } from "../audit/support.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A log whose allows were measured as gateway "gw-other" and decided with a 10 h skew. */
async function log(): Promise<{ db: string; dir: string }> {
  const t = tempDir("fc-review-trust-");
  cleanups.push(t.cleanup);
  const db = join(t.dir, "db");
  const store = await AuditStore.open(await LevelBackend.open(db), storeOptions({ origin: "gw-other", checkpointEvery: 4, clock: () => T0 + 3 * HOUR }));
  try {
    await writeTrustSetup(store, true);
    const LIMITS = { maxSkewMs: 10 * HOUR, maxDepth: 4, maxFeedAgeMs: 60_000, maxRequestAgeMs: 60_000 };
    const r = await runTask(store, "t-1", artifact({ nonce: "one", now: T0 }), { now: T0 + 3 * HOUR, gatewayId: "gw-other", limits: LIMITS });
    expect(r.decision.verdict).toBe("allow");
    await store.checkpoint();
  } finally {
    await store.close();
  }
  return { db, dir: t.dir };
}

const run = async (db: string, trust: string, body: unknown): Promise<number> => {
  writeFileSync(trust, JSON.stringify(body));
  return runAudit(["replay", "--db", db, "--trust", trust, "--workers", "0"], captureIo());
};

it("the pinned fields, spelt right, find the log wrong (exit 1)", async () => {
  const { db, dir } = await log();
  const trust = join(dir, "trust.json");
  const base = { gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId] };
  expect(await run(db, trust, { ...base, origin: "gw-test" })).toBe(1);
  expect(await run(db, trust, { ...base, limits: { maxSkewMs: 30_000 } })).toBe(1);
});

it("a pinning field mistyped or of the wrong type is a usage error (exit 2), not a clean audit (exit 0)", async () => {
  const { db, dir } = await log();
  const trust = join(dir, "trust.json");
  const base = { gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId] };
  expect(await run(db, trust, { ...base, origin: ["gw-test"] })).toBe(2);
  expect(await run(db, trust, { ...base, orign: "gw-test" })).toBe(2);
  expect(await run(db, trust, { ...base, limit: { maxSkewMs: 30_000 } })).toBe(2);
});
