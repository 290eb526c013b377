// The report keeps the first KEPT_PER_KIND divergences of each kind, and every one at an allow
// or an execution whatever their number, and counts them all. A first-come cap let cheap noise
// anywhere in the log (here: 10,000 unsigned revocations, REVOCATION_UNVERIFIED, which only add
// denials) push out the one finding that matters: an allow decide() does not reproduce, which
// is only known once every decision is recomputed, after the whole log was read.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { KEPT_PER_KIND } from "../../src/audit/divergences.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay, type ReplayReport } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { recordedDecisionInput } from "../../src/audit/trust-view.ts";
import { decide } from "../../src/core/decide.ts";
import { scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { HOUR, T0, artifact, inputFor } from "./operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, captureIo, storeOptions, tempDir } from "./support.ts";

const NOISE = 10_000;

describe("divergences kept in the report", () => {
  const t = tempDir("fc-cap-");
  const db = join(t.dir, "db");
  let forgedSeq: number;
  let rep: ReplayReport;

  beforeAll(async () => {
    const store = await AuditStore.open(await LevelBackend.open(db), storeOptions({ origin: "gw-test", maxBatch: 4096 }));
    await writeTrustSetup(store, true);
    // Noise: revocations no authority signed (each is REVOCATION_UNVERIFIED; they only deny more).
    const junk = [];
    for (let i = 0; i < NOISE; i++) {
      junk.push(store.append({ type: "revocation", revocation: { payload: { kind: "failclosed/revocation/v1", issuer: "feed-bug", target: { type: "artifact", id: `junk-${i}` }, reason: "r", issuedAt: T0 }, sig: "s" } }));
    }
    await Promise.all(junk);
    // The allow that matters: the artifact expired an hour before the clock; the record says allow.
    const art = artifact({ nonce: "expired", now: T0 - 2 * HOUR });
    const input = inputFor(store, "t-forged", art, { now: T0 });
    for (const [kind, signed] of [["request", input.request], ["artifact", art], ["lineage", input.lineage[0]]] as const) {
      await store.append({ type: "evidence", taskId: "t-forged", kind, signed: signed as never });
    }
    const honest = decide(input);
    expect(honest.reasons).toEqual(["EXPIRED"]);
    const forged = { verdict: "allow" as const, checks: honest.checks.map((c) => ({ check: c.check, ok: true })), reasons: [] };
    forgedSeq = (await store.append({ type: "decision", taskId: "t-forged", input: recordedDecisionInput(input), decision: forged })).seq;
    await store.append({ type: "outcome", taskId: "t-forged", status: "succeeded", resultDigest: "r".repeat(43) });
    await store.checkpoint();
    await store.close();
    const b = await LevelBackend.open(db, { createIfMissing: false });
    try {
      rep = await replay(backendLogSource(b), scenarioTrustRoots());
    } finally {
      await b.close();
    }
  }, 120_000);
  afterAll(() => t.cleanup());

  it("a forged allow stays in the report when the log also holds 10,000 minor problems", () => {
    expect(rep.ok).toBe(false);
    expect(rep.divergences.filter((d) => d.kind === "DECISION_MISMATCH").map((d) => d.seq)).toEqual([forgedSeq]);
  });

  it("each kind keeps its first few; the report counts them all and says how many it leaves out", () => {
    expect(rep.divergences.filter((d) => d.kind === "REVOCATION_UNVERIFIED")).toHaveLength(KEPT_PER_KIND);
    expect(rep.divergenceCounts).toEqual({ total: NOISE + 1, omitted: NOISE - KEPT_PER_KIND, byKind: { DECISION_MISMATCH: 1, REVOCATION_UNVERIFIED: NOISE } });
    expect(rep.divergences).toHaveLength(KEPT_PER_KIND + 1);
  });

  it("audit replay says so in its text and --json output", async () => {
    const args = ["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--workers", "0"];
    const text = captureIo();
    expect(await runAudit(args, text)).toBe(1);
    expect(text.stdout()).toContain(`divergences: ${NOISE + 1} (DECISION_MISMATCH×1 REVOCATION_UNVERIFIED×${NOISE}); ${NOISE - KEPT_PER_KIND} not listed`);
    expect(text.stdout()).toMatch(new RegExp(`^seq ${forgedSeq}: DECISION_MISMATCH: `, "m"));
    const json = captureIo();
    expect(await runAudit([...args, "--json"], json)).toBe(1);
    expect(JSON.parse(json.stdout())).toMatchObject({ divergenceCounts: { total: NOISE + 1, omitted: NOISE - KEPT_PER_KIND } });
  }, 60_000);
});
