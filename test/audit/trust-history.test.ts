// How decide reads the trust state without a snapshot per decision (audit/trust-view.ts).
//
// Replay used to build a full trust snapshot (every revocation, sorted and frozen) for each trust
// version a chunk of decisions referred to, and clone it to a worker; the gateway built one per
// version too. A log where revocations and decisions interleave was then quadratic (found by
// review: 32,000 pairs took 35 s to replay). Now replay keeps a TrustHistory (each change stamped
// with its trust version), workers keep a replica fed with the changes they lack, and the gateway
// reads its live fold. These tests hold the new paths to the old answers:
// - the history at every version answers exactly as trustSnapshotOf(fold at that version);
// - a worker's replica, fed in any split, answers the same; one fed out of order refuses;
// - replay with workers, on a log where a revocation lands in the same chunk right after an honest
//   allow of the revoked artifact, neither flags the honest allow (the replica runs ahead of it)
//   nor misses a forged allow after the revocation.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { syncReplica } from "../../src/audit/decide-pool.ts";
import { applyRecord, emptyState } from "../../src/audit/fold.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import type { AuditRecord, TrustChange } from "../../src/audit/records.ts";
import { replay } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { TRUST_FROM_LOG, TrustHistory, TrustHistoryError, liveTrustView, trustSnapshotOf, type TrustDelta } from "../../src/audit/trust-view.ts";
import { artifactId, revoke } from "../../src/core/artifacts.ts";
import { decide } from "../../src/core/decide.ts";
import type { SnapshotDecisionInput, TrustSnapshot, TrustView } from "../../src/core/types.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { T0, artifact, inputFor, runTask } from "./operator.ts";
import { scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { AUTHORITY_KEY, storeOptions } from "./support.ts";

const IDS = ["k0", "k1", "k2", "k3"];

type Op = { kind: "trust"; change: TrustChange } | { kind: "revoke"; target: "artifact" | "key"; id: string } | { kind: "probe" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("trust" as const), change: fc.record({ op: fc.constantFrom("authority.add" as const, "authority.remove" as const, "gateway.add" as const, "gateway.remove" as const), keyId: fc.constantFrom(...IDS) }) }),
  fc.record({
    kind: fc.constant("trust" as const),
    change: fc.oneof(
      fc.constant<TrustChange>({ op: "policy.activate", policyDigest: policyDigest(DEFAULT_POLICY), document: DEFAULT_POLICY as never }),
      // Not a policy document: decide sees no policy (null), as trustSnapshotOf says.
      fc.constant<TrustChange>({ op: "policy.activate", policyDigest: "junk", document: { not: "a policy" } }),
      fc.constant<TrustChange>({ op: "policy.withdraw" }),
    ),
  }),
  fc.record({ kind: fc.constant("revoke" as const), target: fc.constantFrom("artifact" as const, "key" as const), id: fc.constantFrom(...IDS) }),
  fc.constant<Op>({ kind: "probe" }),
);

function recordOf(op: Exclude<Op, { kind: "probe" }>, seq: number): AuditRecord {
  const head = { v: 1 as const, seq, prev: "p", time: T0 };
  if (op.kind === "trust") return { ...head, type: "trust", change: op.change };
  const target = op.target === "artifact" ? { type: "artifact" as const, id: op.id } : { type: "key" as const, keyId: op.id };
  // The fold takes the target as the log put it; replay checks signatures elsewhere.
  return { ...head, type: "revocation", revocation: { payload: { kind: "failclosed/revocation/v1", issuer: "a", target, reason: "r", issuedAt: T0 }, sig: "s" } };
}

function sameAnswers(view: TrustView, snap: TrustSnapshot): void {
  for (const id of [...IDS, "never-seen"]) {
    expect(view.isAuthority(id)).toBe(snap.authorities.includes(id));
    expect(view.isGateway(id)).toBe(snap.gateways.includes(id));
    expect(view.isRevokedArtifact(id)).toBe(snap.revokedArtifacts.includes(id));
    expect(view.isRevokedKey(id)).toBe(snap.revokedKeys.includes(id));
  }
  expect(view.policy).toEqual(snap.policy);
}

describe("TrustHistory", () => {
  it("answers at every version exactly as a snapshot of the fold at that version, and so does a replica fed in any split (fast-check)", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), fc.array(fc.nat(8), { maxLength: 20 }), (ops, splits) => {
        const state = emptyState();
        const history = new TrustHistory();
        const probes: { version: number; snap: TrustSnapshot }[] = [];
        const live = liveTrustView(() => state);
        for (const op of ops) {
          if (op.kind === "probe") {
            const snap = trustSnapshotOf(state);
            probes.push({ version: state.trustVersion, snap });
            sameAnswers(live, snap);
            continue;
          }
          const rec = recordOf(op, state.size);
          applyRecord(state, rec);
          history.note(rec, state);
        }
        probes.push({ version: state.trustVersion, snap: trustSnapshotOf(state) });
        // The replica is sent the changes in chunks of arbitrary sizes, as chunks reach a worker.
        const replica = new TrustHistory();
        let at = 0;
        for (const n of [...splits, Number.MAX_SAFE_INTEGER]) {
          const deltas = history.since(at).slice(0, n);
          syncReplica(replica, { from: at, deltas });
          at += deltas.length;
          if (at === history.length) break;
        }
        expect(replica.length).toBe(history.length);
        for (const p of probes) {
          sameAnswers(history.at(p.version), p.snap);
          sameAnswers(replica.at(p.version), p.snap);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("records a change only when the fold's membership changed (a second revocation of one target adds nothing)", () => {
    const state = emptyState();
    const history = new TrustHistory();
    for (const op of [{ kind: "revoke", target: "artifact", id: "k0" }, { kind: "revoke", target: "artifact", id: "k0" }, { kind: "trust", change: { op: "authority.remove", keyId: "k1" } }] as const) {
      const rec = recordOf(op, state.size);
      applyRecord(state, rec);
      history.note(rec, state);
    }
    expect(history.length).toBe(1);
    expect(state.trustVersion).toBe(3);
    expect(history.at(0).isRevokedArtifact("k0")).toBe(false);
    expect(history.at(1).isRevokedArtifact("k0")).toBe(true);
  });

  it("a replica refuses changes that do not follow on from what it holds, and starts again from position 0", () => {
    const replica = new TrustHistory();
    const d: TrustDelta[] = [
      { v: 1, member: 2, id: "a" },
      { v: 2, member: 3, id: "k" },
      { v: 3, member: 2, id: "b" },
    ];
    syncReplica(replica, { from: 0, deltas: d.slice(0, 1) });
    // A chunk lost in between: the replica would miss the revocation of key k.
    expect(() => syncReplica(replica, { from: 2, deltas: d.slice(2) })).toThrow(TrustHistoryError);
    syncReplica(replica, { from: 0, deltas: d });
    expect(replica.length).toBe(3);
    expect(replica.at(2).isRevokedKey("k")).toBe(true);
    expect(replica.at(2).isRevokedArtifact("b")).toBe(false);
    // Changes out of version order, or out of shape (a worker's input crossed a thread), are refused.
    expect(() => replica.apply({ v: 1, member: 2, id: "c" })).toThrow(TrustHistoryError);
    expect(() => replica.apply({ v: 4, member: 7 as never, id: "c" })).toThrow(TrustHistoryError);
  });
});

describe("decide and the trust it is given", () => {
  it("a reference to the log's trust without a view, or a snapshot with one, is denied GOVERNANCE_UNAVAILABLE", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions({ origin: "gw-test" }));
    await writeTrustSetup(store);
    const input = inputFor(store, "t-1", artifact({ nonce: "n-1", now: T0 }), { now: T0 });
    const view = liveTrustView(() => store.state);
    expect(decide(input).verdict).toBe("allow");
    expect(decide({ ...input, trust: TRUST_FROM_LOG }, undefined, view).verdict).toBe("allow");
    const noView = decide({ ...input, trust: TRUST_FROM_LOG });
    expect(noView).toMatchObject({ verdict: "deny", reasons: ["GOVERNANCE_UNAVAILABLE"] });
    expect(noView.checks[0]?.detail).toMatch(/refers to the log's trust state, and none was given/);
    const both = decide(input, undefined, view);
    expect(both).toMatchObject({ verdict: "deny", reasons: ["GOVERNANCE_UNAVAILABLE"] });
    // The view is what decide judges on: a revocation there denies.
    const revoked: TrustView = { ...view, policy: view.policy, isRevokedArtifact: () => true };
    expect(decide({ ...input, trust: TRUST_FROM_LOG }, undefined, revoked).reasons).toContain("REVOKED");
    await store.close();
  });
});

// Found in review of the TrustView change: a recorded snapshot's lists were read with `.includes`,
// which a string has too, so a snapshot naming its revocations as "" (no list at all) was judged
// "not revoked" and allowed. Before the change the revocation lists went through a Set cache that
// threw on a string (deny); authority and gateway lists had the same substring reading all along.
describe("a recorded trust snapshot whose lists are not lists", () => {
  it("is denied GOVERNANCE_UNAVAILABLE: a list recorded as a string is never read as a substring search", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions({ origin: "gw-test" }));
    await writeTrustSetup(store);
    const revoked = artifact({ nonce: "n-str", now: T0 });
    await store.append({ type: "revocation", revocation: revoke(AUTHORITY_KEY, { type: "artifact", id: artifactId(revoked) }, "r", T0) });
    const onRevoked = inputFor(store, "t-str", revoked, { now: T0 });
    const onClean = inputFor(store, "t-clean", artifact({ nonce: "n-clean", now: T0 }), { now: T0 });
    expect(decide(onRevoked).reasons).toEqual(["REVOKED"]);
    expect(decide(onClean).verdict).toBe("allow");
    const cases: [SnapshotDecisionInput, (t: Record<string, unknown>) => void][] = [
      [onRevoked, (t) => (t["revokedArtifacts"] = "")],
      [onClean, (t) => (t["revokedKeys"] = "")],
      // An authority list given as one string that contains the key: a substring is not membership.
      [onClean, (t) => (t["authorities"] = (t["authorities"] as string[]).join(","))],
    ];
    for (const [input, edit] of cases) {
      const trust = { ...input.trust } as unknown as Record<string, unknown>;
      edit(trust);
      const d = decide({ ...input, trust: trust as unknown as TrustSnapshot });
      expect(d, JSON.stringify(trust).slice(0, 80)).toMatchObject({ verdict: "deny", reasons: ["GOVERNANCE_UNAVAILABLE"] });
    }
    await store.close();
  });

  it("replay: a forged allow recorded with such a snapshot is a DECISION_MISMATCH, not only a TRUST_STATE", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions({ origin: "gw-test", checkpointEvery: 16 }));
    await writeTrustSetup(store);
    const art = artifact({ nonce: "n-forged", now: T0 });
    await store.append({ type: "revocation", revocation: revoke(AUTHORITY_KEY, { type: "artifact", id: artifactId(art) }, "r", T0) });
    const input = inputFor(store, "t-forged", art, { now: T0 });
    for (const [kind, signed] of [["request", input.request], ["artifact", art], ["lineage", input.lineage[0]]] as const) {
      await store.append({ type: "evidence", taskId: "t-forged", kind, signed: signed as never });
    }
    const truth = decide(input);
    const forged = { verdict: "allow" as const, checks: truth.checks.map((c) => ({ check: c.check, ok: true })), reasons: [] };
    const recorded = { ...input, trust: { ...input.trust, revokedArtifacts: "" } };
    const { seq } = await store.append({ type: "decision", taskId: "t-forged", input: recorded as never, decision: forged });
    await store.checkpoint();
    for (const opts of [{}, { workers: 1, chunkSize: 1 }]) {
      const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots(), opts);
      const at = rep.divergences.filter((d) => d.seq === seq).map((d) => d.kind);
      expect(at, JSON.stringify(opts)).toContain("TRUST_STATE");
      expect(at, JSON.stringify(opts)).toContain("DECISION_MISMATCH");
    }
    await store.close();
  }, 60_000);
});

describe("replay on a log whose revocations and decisions interleave", () => {
  it("inline and on workers: an honest allow just before its artifact's revocation stands, a forged allow just after is found", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions({ origin: "gw-test", checkpointEvery: 16 }));
    await writeTrustSetup(store, true);
    const expectedForged: number[] = [];
    for (let i = 0; i < 24; i++) {
      const art = artifact({ nonce: `n-${i}`, now: T0 });
      // An unrelated revocation before every task: each decision sits at its own trust version.
      await store.append({ type: "revocation", revocation: revoke(AUTHORITY_KEY, { type: "artifact", id: `other-${i}` }, "r", T0) });
      const honest = await runTask(store, `t-${i}`, art, { now: T0 + i });
      expect(honest.decision.verdict).toBe("allow");
      // The artifact just allowed is revoked right after: in replay's chunk, the worker's replica
      // already holds this revocation when it recomputes the allow before it.
      await store.append({ type: "revocation", revocation: revoke(AUTHORITY_KEY, { type: "artifact", id: artifactId(art) }, "r", T0) });
      if (i % 6 === 5) {
        // A forged allow of a new task on a revoked artifact, recorded by reference.
        const bad = artifact({ nonce: `bad-${i}`, now: T0 });
        await store.append({ type: "revocation", revocation: revoke(AUTHORITY_KEY, { type: "artifact", id: artifactId(bad) }, "r", T0) });
        const input = inputFor(store, `f-${i}`, bad, { now: T0 + i });
        for (const [kind, signed] of [["request", input.request], ["artifact", bad], ["lineage", input.lineage[0]]] as const) {
          await store.append({ type: "evidence", taskId: `f-${i}`, kind, signed: signed as never });
        }
        const truth = decide({ ...input, trust: TRUST_FROM_LOG }, undefined, liveTrustView(() => store.state));
        expect(truth.reasons).toEqual(["REVOKED"]);
        const forged = { verdict: "allow" as const, checks: truth.checks.map((c) => ({ check: c.check, ok: true })), reasons: [] };
        expectedForged.push((await store.append({ type: "decision", taskId: `f-${i}`, input: { ...input, trust: TRUST_FROM_LOG } as never, decision: forged })).seq);
      }
    }
    await store.checkpoint();
    for (const opts of [{}, { workers: 2, chunkSize: 3 }, { workers: 1, chunkSize: 1 }, { workers: 2, chunkSize: 64, helpInline: false }]) {
      const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots(), opts);
      expect(rep.decisionsRederived, JSON.stringify(opts)).toBe(24 + expectedForged.length);
      const mismatches = rep.divergences.filter((d) => d.kind === "DECISION_MISMATCH");
      expect(mismatches.map((d) => d.seq), JSON.stringify(opts)).toEqual(expectedForged);
    }
    await store.close();
  }, 120_000);
});
