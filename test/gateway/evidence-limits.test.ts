// The evidence index cannot be grown without bound by evidence nobody submits a task for: per
// task, items and intake errors are capped (over them, the task's evidence carries an intake
// error, which denies it MALFORMED, never a pass) and errors are cut short; across tasks, a byte
// budget drops the oldest tasks nobody waits on; and evidence ages from its first message, so a
// trickle of more cannot keep it alive.
import { describe, expect, it } from "vitest";
import { artifactId, issueArtifact } from "../../src/core/artifacts.ts";
import { EVIDENCE_LIMITS, EvidenceIndex } from "../../src/gateway/evidence-index.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const authority = namedKey("authority");
const holder = namedKey("agent-0");
const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
const artifact = (i: number) =>
  issueArtifact(authority, {
    holder: holder.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: 0, expiresAt: 10_000_000 },
    nonce: namedNonce(`ev-${i}`),
    policy: { id: "p", digest: "A".repeat(43) },
    attribution: { initiator: "t", reason: "evidence limits" },
  });

describe("evidence index limits", () => {
  it("caps one task's artifacts and lineage: more is an intake error, not more memory", () => {
    const ix = new EvidenceIndex(() => 0);
    for (let i = 0; i < EVIDENCE_LIMITS.perTaskItems + 10; i++) ix.add(SUBJECTS.artifact("t1"), enc(artifact(i)));
    const a = ix.assemble("t1", "none");
    expect(a.intakeErrors.length).toBeGreaterThan(0);
    expect(a.intakeErrors[0]).toMatch(new RegExp(`over ${EVIDENCE_LIMITS.perTaskItems} artifacts and lineage events for one task`));
    // The same artifact again is not counted twice.
    const ix2 = new EvidenceIndex(() => 0);
    for (let i = 0; i < 200; i++) ix2.add(SUBJECTS.artifact("t2"), enc(artifact(1)));
    expect(ix2.assemble("t2", "none").intakeErrors).toEqual([]);
  });

  it("keeps at most a few intake errors per task, each cut short", () => {
    const ix = new EvidenceIndex(() => 0);
    const hostile = { payload: { kind: "failclosed/artifact/v1", scope: { constraints: { ["k".repeat(60_000)]: { min: 1 } } } }, sig: "x" };
    for (let i = 0; i < 500; i++) ix.add(SUBJECTS.artifact("t3"), enc(hostile));
    for (let i = 0; i < 50; i++) ix.add(SUBJECTS.lineage("t3"), enc("{not json"));
    const errors = ix.assemble("t3", "none").intakeErrors;
    expect(errors.length).toBe(EVIDENCE_LIMITS.perTaskErrors);
    expect(errors.at(-1)).toBe("more evidence errors for this task: not kept");
    for (const e of errors) expect(e.length).toBeLessThanOrEqual(EVIDENCE_LIMITS.errorChars + 1);
    // Only the entry and its few short errors are held, and counted against the budget.
    expect(ix.bytes).toBeGreaterThan(0);
    expect(ix.bytes).toBeLessThanOrEqual(512 + 2 * EVIDENCE_LIMITS.perTaskErrors * (EVIDENCE_LIMITS.errorChars + 1));
  });

  it("drops the oldest tasks nobody waits on to stay within its byte budget", async () => {
    const one = enc(artifact(0)).byteLength;
    const ix = new EvidenceIndex(() => 0, 10 * one);
    // A task being waited on is never dropped for space.
    const stop = new AbortController();
    const waiting = ix.waitFor("waited", "none", stop.signal);
    ix.add(SUBJECTS.artifact("waited"), enc(artifact(100)));
    for (let i = 0; i < 30; i++) ix.add(SUBJECTS.artifact(`task-${i}`), enc(artifact(i)));
    expect(ix.bytes).toBeLessThanOrEqual(10 * one + one);
    expect(ix.evictedForSpace).toBeGreaterThanOrEqual(20);
    expect(ix.assemble("task-0", "none").chain).toEqual([]);
    expect(ix.assemble("task-29", artifactIdOf(29)).chain.length).toBe(1);
    expect(ix.assemble("waited", artifactIdOf(100)).chain.length).toBe(1);
    stop.abort();
    expect((await waiting).chain).toEqual([]);
  });

  it("an unwaited task alone cannot hold the index over budget: what does not fit is refused, with an intake error", async () => {
    const one = enc(artifact(0)).byteLength;
    const ix = new EvidenceIndex(() => 0, 3 * one);
    for (let i = 0; i < 10; i++) ix.add(SUBJECTS.artifact("lonely"), enc(artifact(i)));
    const bookkeeping = 512 + 2 * EVIDENCE_LIMITS.perTaskErrors * (EVIDENCE_LIMITS.errorChars + 1);
    expect(ix.bytes).toBeLessThanOrEqual(3 * one + bookkeeping);
    const a = ix.assemble("lonely", "none");
    expect(a.intakeErrors[0]).toBe("artifact: over the gateway's evidence budget");
    // A task being waited on is exempt: its evidence is never refused or dropped for space.
    const stop = new AbortController();
    const waiting = ix.waitFor("waited", artifactIdOf(20), stop.signal);
    for (let i = 20; i < 25; i++) ix.add(SUBJECTS.artifact("waited"), enc(artifact(i)));
    expect(ix.assemble("waited", artifactIdOf(20)).intakeErrors).toEqual([]);
    stop.abort();
    expect((await waiting).chain.length).toBe(1);
  });

  it("ages evidence from its first message: a trickle does not keep it", () => {
    let now = 0;
    const ix = new EvidenceIndex(() => now);
    ix.add(SUBJECTS.artifact("t4"), enc(artifact(1)));
    for (let i = 0; i < 20; i++) {
      now += 60_000;
      ix.add(SUBJECTS.lineage("t4"), enc("{not json"));
    }
    ix.evict(10 * 60_000);
    expect(ix.size).toBe(0);
    expect(ix.bytes).toBe(0);
  });
});

function artifactIdOf(i: number): string {
  return artifactId(artifact(i));
}
