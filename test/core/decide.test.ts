import { describe, expect, it } from "vitest";
import { clearSignatureMemo, decide, signatureMemoStats } from "../../src/core/decide.ts";
import { SignatureMemo } from "../../src/core/signature-memo.ts";
import { artifactId, delegateArtifact, issueArtifact, originLineage, revoke, signRequest, spawnLineage } from "../../src/core/artifacts.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import type { DecisionInput, DenialCode, SignedArtifact, SignedRequest } from "../../src/core/types.ts";
import { buildTask, DEFAULT_SCOPE, HOUR, inputFor, makeWorld, namedKey, namedNonce, T0 } from "../../src/testkit/world.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";

const w = makeWorld();
const clone = <T>(v: T): T => structuredClone(v);

function expectDeny(input: DecisionInput, code: DenialCode): void {
  const d = decide(input);
  expect(d.verdict).toBe("deny");
  expect(d.reasons).toContain(code);
  expect(d.checks.some((c) => !c.ok && c.code === code)).toBe(true);
}

describe("decide: positive controls", () => {
  for (const depth of [0, 1, 3]) {
    it(`allows a valid task at delegation depth ${depth}, every check run and passed`, () => {
      const d = decide(inputFor(w, buildTask(w, { depth })));
      expect(d).toMatchObject({ verdict: "allow", reasons: [] });
      expect(d.checks.map((c) => c.check)).toEqual([
        "governance", "schema", "evidence", "request-signature", "chain-signatures", "lineage-signatures",
        "issuer", "identity", "validity", "delegation", "lineage", "revocation", "environment", "policy", "task", "nonce",
      ]);
      expect(d.checks.every((c) => c.ok)).toBe(true);
    });
  }
});

describe("decide: every denial code of DESIGN §3, each beside its control", () => {
  const base = () => inputFor(w, buildTask(w, { depth: 1 }));

  it("MALFORMED: schema-invalid request, unknown field, non-JSON args, intake errors", () => {
    const a = base();
    (a.request as { payload: { taskId: string } }).payload.taskId = "bad.task";
    expectDeny(a, "MALFORMED");
    const b = base();
    (b.chain[0] as { payload: Record<string, unknown> }).payload["extra"] = 1;
    expectDeny(b, "MALFORMED");
    const c = base();
    c.args = { amount: 1n };
    expectDeny(c, "MALFORMED");
    const d = base();
    d.intakeErrors = ["artifact message: DUPLICATE_KEY"];
    expectDeny(d, "MALFORMED");
    expect(decide(base()).verdict).toBe("allow");
  });

  it("NO_ARTIFACT: no chain arrived", () => {
    const a = base();
    a.chain = [];
    expectDeny(a, "NO_ARTIFACT");
  });

  it("BAD_SIGNATURE: request, artifact, lineage, args swapped", () => {
    const flip = (sig: string) => (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    const a = base();
    (a.request as { sig: string }).sig = flip((a.request as { sig: string }).sig);
    expectDeny(a, "BAD_SIGNATURE");
    const b = base();
    (b.chain[1] as { sig: string }).sig = flip((b.chain[1] as { sig: string }).sig);
    expectDeny(b, "BAD_SIGNATURE");
    const c = base();
    (c.lineage[0] as { sig: string }).sig = flip((c.lineage[0] as { sig: string }).sig);
    expectDeny(c, "BAD_SIGNATURE");
    const d = base();
    d.args = { amount: 4999, to: "acct-666" };
    expectDeny(d, "BAD_SIGNATURE");
  });

  it("UNTRUSTED_ISSUER: root signed by a key that is not an authority", () => {
    const rogue = makeWorld();
    const w2 = { ...rogue, authority: namedKey("rogue") };
    const a = inputFor(w, buildTask(w2, { depth: 0 }));
    a.lineage = buildTask(w, { depth: 0 }).lineage; // even with a genuine origin event
    expectDeny(a, "UNTRUSTED_ISSUER");
  });

  it("EXPIRED / NOT_YET_VALID with bounded skew", () => {
    const b = buildTask(w, { depth: 1 });
    expect(decide(inputFor(w, b, T0 + HOUR - 5_001)).verdict).toBe("deny"); // request too old, not the window
    const expired = inputFor(w, b, T0 + HOUR + 5_000);
    expectDeny(expired, "EXPIRED");
    const early = inputFor(w, b, T0 - HOUR - 5_001);
    expectDeny(early, "NOT_YET_VALID");
    // Within skew on both edges: allowed when the request itself is fresh.
    const edge = buildTask(w, { depth: 0, createdAt: T0 - HOUR - 4_000 });
    const e = inputFor(w, edge, T0 - HOUR - 4_999);
    e.health.revocationFeedAt = e.now;
    e.lineage = buildTask(w, { depth: 0 }).lineage.map((l) => l); // origin emitted at T0-1000: in the future here
    expect(decide(e).reasons).toContain("LINEAGE_BROKEN");
  });

  it("POLICY_MISMATCH: other policy digest, out of scope, constraint, Cedar deny", () => {
    const other = { ...w.policy, version: "2" };
    const a = inputFor(w, buildTask(w, { depth: 1 }));
    a.trust.policy = { digest: policyDigest(other), document: other };
    expectDeny(a, "POLICY_MISMATCH");
    expectDeny(inputFor(w, buildTask(w, { depth: 1, resource: "paymentsx/transfer" })), "POLICY_MISMATCH");
    expectDeny(inputFor(w, buildTask(w, { depth: 1, action: "deploy" })), "POLICY_MISMATCH");
    expectDeny(inputFor(w, buildTask(w, { depth: 1, args: { amount: 5001 } })), "POLICY_MISMATCH");
    // Within artifact constraints but over Cedar's 10000 limit: Cedar decides.
    const wide = { actions: ["transfer"], resources: ["payments/"], constraints: {} };
    const c = inputFor(w, buildTask(w, { depth: 0, scope: wide, args: { amount: 20_000 } }));
    const d = decide(c);
    expect(d.reasons).toEqual(["POLICY_MISMATCH"]);
    expect(d.checks.find((x) => x.check === "policy")?.detail).toMatch(/cedar/);
    expect(decide(inputFor(w, buildTask(w, { depth: 0, scope: wide, args: { amount: 9_000 } }))).verdict).toBe("allow");
  });

  it("IDENTITY_MISMATCH: request signed by someone other than the holder", () => {
    const b = buildTask(w, { depth: 1 });
    const intruder = namedKey("intruder");
    const forged = signRequest(intruder, { taskId: b.taskIds[1]!, action: "transfer", resource: "payments/transfer", args: b.args, artifact: b.chain[1]!, parentTaskId: b.taskIds[0]!, createdAt: T0 - 10 });
    expectDeny({ ...inputFor(w, b), request: forged }, "IDENTITY_MISMATCH");
  });

  it("ENVIRONMENT_MISMATCH: gateway, code digest and attribute bindings", () => {
    const bindings = { gateways: ["gw-1"], agentCodeDigest: namedNonce("code-v1").slice(0, 43), environment: { name: "staging" } };
    const b = buildTask(w, { depth: 1, bindings });
    const ok = inputFor(w, b);
    ok.environment.agentCodeDigest = bindings.agentCodeDigest;
    expect(decide(ok).verdict).toBe("allow");
    const g = clone(ok);
    g.environment.gatewayId = "gw-2";
    expectDeny(g, "ENVIRONMENT_MISMATCH");
    const c = clone(ok);
    c.environment.agentCodeDigest = namedNonce("code-v2").slice(0, 43);
    expectDeny(c, "ENVIRONMENT_MISMATCH");
    const e = clone(ok);
    e.environment.attributes = { name: "production" };
    expectDeny(e, "ENVIRONMENT_MISMATCH");
  });

  it("REPLAYED: nonce consumed locally or claimed by another gateway", () => {
    const a = base();
    a.nonce.local = "consumed";
    expectDeny(a, "REPLAYED");
    const b = base();
    b.nonce.cluster = "taken";
    expectDeny(b, "REPLAYED");
    const c = base();
    c.nonce.key = namedNonce("other");
    expectDeny(c, "REPLAYED");
  });

  it("a nonce claim state outside the known ones (a forged or corrupt recorded input) is a deny, never a pass", () => {
    for (const [local, cluster] of [["fresh", null], ["fresh", "won"], [null, "claimed"], ["spent", "claimed"], ["fresh", undefined]] as const) {
      const a = base();
      (a.nonce as unknown as Record<string, unknown>)["local"] = local;
      (a.nonce as unknown as Record<string, unknown>)["cluster"] = cluster;
      expectDeny(a, "GOVERNANCE_UNAVAILABLE");
    }
    const b = base();
    (b as unknown as Record<string, unknown>)["nonce"] = null;
    expectDeny(b, "GOVERNANCE_UNAVAILABLE");
  });

  it("REPLAYED: task id already allowed on this gateway, claimed elsewhere, or not the request's", () => {
    const a = base();
    a.taskClaim = { ...a.taskClaim!, local: "decided" };
    expectDeny(a, "REPLAYED");
    const b = base();
    b.taskClaim = { ...b.taskClaim!, cluster: "taken" };
    expectDeny(b, "REPLAYED");
    const c = base();
    c.taskClaim = { ...c.taskClaim!, taskId: "another-task" };
    expectDeny(c, "REPLAYED");
    expect(decide(base()).verdict).toBe("allow");
  });

  it("task claim: a store that cannot be reached, or no claim made, is GOVERNANCE_UNAVAILABLE; malformed is a deny", () => {
    const a = base();
    a.taskClaim = { ...a.taskClaim!, cluster: "unavailable" };
    expectDeny(a, "GOVERNANCE_UNAVAILABLE");
    const b = base();
    b.taskClaim = { ...b.taskClaim!, cluster: "not-attempted" };
    expectDeny(b, "GOVERNANCE_UNAVAILABLE");
    for (const bad of [null, "claimed", [], { taskId: 1, local: "fresh", cluster: "claimed" }, { ...base().taskClaim!, local: "maybe" }, { ...base().taskClaim!, cluster: "won" }]) {
      const m = base();
      (m as { taskClaim: unknown }).taskClaim = bad;
      expectDeny(m, "GOVERNANCE_UNAVAILABLE");
    }
  });

  it("task claim: absent (logs recorded before claims) decides as before; a duplicate is denied without spending its nonce", () => {
    const legacy = base();
    delete legacy.taskClaim;
    const d = decide(legacy);
    expect(d.verdict).toBe("allow");
    expect(d.checks.map((c) => c.check)).not.toContain("task");
    // What the gateway's pre-check sees for a task id already decided here: REPLAYED alone,
    // and the nonce left unclaimed (no code of its own), so the gateway claims nothing.
    const dup = base();
    dup.nonce.cluster = "not-attempted";
    dup.taskClaim = { ...dup.taskClaim!, local: "decided", cluster: "not-attempted" };
    const dd = decide(dup);
    expect(dd.reasons).toEqual(["REPLAYED"]);
    expect(dd.checks.find((c) => c.check === "nonce")).toMatchObject({ ok: false, detail: "not claimed: denied before the claim" });
    expect(dd.checks.find((c) => c.check === "nonce")?.code).toBeUndefined();
    // Fresh and unclaimed, everything else passing: both claims are what is missing.
    const fresh = base();
    fresh.nonce.cluster = "not-attempted";
    fresh.taskClaim = { ...fresh.taskClaim!, cluster: "not-attempted" };
    const df = decide(fresh);
    expect(df.reasons).toEqual(["GOVERNANCE_UNAVAILABLE"]);
    expect(df.checks.filter((c) => !c.ok).map((c) => c.check)).toEqual(["nonce", "task"]);
    // The nonce lost: the task id was never claimed, and that is no reason of its own.
    const lost = base();
    lost.nonce.cluster = "taken";
    lost.taskClaim = { ...lost.taskClaim!, cluster: "not-attempted" };
    const dl = decide(lost);
    expect(dl.reasons).toEqual(["REPLAYED"]);
    expect(dl.checks.find((c) => c.check === "task")).toMatchObject({ ok: false, detail: "not claimed: the nonce was not won" });
  });

  it("REVOKED: the artifact, an ancestor, or a signing key", () => {
    const b = buildTask(w, { depth: 2 });
    const a = inputFor(w, b);
    a.trust.revokedArtifacts = [artifactId(b.chain[0]!)];
    expectDeny(a, "REVOKED");
    const c = inputFor(w, b);
    c.trust.revokedKeys = [b.chain[1]!.payload.holder];
    expectDeny(c, "REVOKED");
    const d = inputFor(w, b);
    d.trust.revokedKeys = [w.gateway.keyId];
    expectDeny(d, "REVOKED");
    // A snapshot's lists are read afresh by each decision, frozen or not, so an edit between two
    // decisions is never missed (the gateway and replay pass a TrustView instead: trust-history.test.ts).
    const frozen = inputFor(w, b);
    frozen.trust.revokedArtifacts = Object.freeze([...Array.from({ length: 500 }, (_, i) => `other-${i}`), artifactId(b.chain[1]!)]) as string[];
    expectDeny(frozen, "REVOKED");
    expectDeny(frozen, "REVOKED");
    const clean = inputFor(w, b);
    clean.trust.revokedArtifacts = Object.freeze(["other"]) as string[];
    expect(decide(clean).reasons).not.toContain("REVOKED");
    const mutable = inputFor(w, b);
    mutable.trust.revokedArtifacts = ["other"];
    expect(decide(mutable).reasons).not.toContain("REVOKED");
    mutable.trust.revokedArtifacts.push(artifactId(b.chain[2]!));
    expectDeny(mutable, "REVOKED");
    // A revocation object exists and names its target (what the gateway folds into the snapshot).
    expect(revoke(w.authority, { type: "artifact", id: artifactId(b.chain[0]!) }, "compromised", T0).payload.target.type).toBe("artifact");
  });

  it("LINEAGE_BROKEN: missing event, splice, wrong signer, widening, depth, parent mismatch, cycle", () => {
    const missing = base();
    missing.lineage = missing.lineage.slice(0, 1);
    expectDeny(missing, "LINEAGE_BROKEN");

    // Splice: a genuine spawn event for another task tree.
    const other = buildTask(w, { depth: 1, tag: "other" });
    const splice = base();
    splice.lineage = [splice.lineage[0]!, other.lineage[1]!];
    expectDeny(splice, "LINEAGE_BROKEN");

    // Spawn signed by an agent instead of a gateway.
    const b = buildTask(w, { depth: 1 });
    const fake = spawnLineage(w.agents[0]!, { gatewayId: "gw-1", childTaskId: b.taskIds[1]!, childArtifact: b.chain[1]!, parentTaskId: b.taskIds[0]!, parentArtifactId: artifactId(b.chain[0]!), parentDecisionId: artifactId(b.chain[0]!), emittedAt: T0 - 999 });
    expectDeny({ ...inputFor(w, b), lineage: [b.lineage[0]!, fake] }, "LINEAGE_BROKEN");

    // Widening: hand-signed child with more actions than its parent (delegateArtifact refuses to).
    const root = b.chain[0]!;
    expect(() => delegateArtifact(root, w.agents[0]!, { holder: w.agents[1]!.keyId, scope: { ...DEFAULT_SCOPE, actions: ["transfer", "read", "deploy"] }, validity: root.payload.validity, nonce: namedNonce("wide"), attribution: root.payload.attribution })).toThrow(TypeError);
    const widePayload = { ...b.chain[1]!.payload, scope: { ...DEFAULT_SCOPE, constraints: { amount: { max: 50_000 } } } };
    const wide: SignedArtifact = signPayload("artifact", widePayload, w.agents[0]!);
    const wb = inputFor(w, b);
    wb.chain = [root, wide];
    expectDeny(wb, "LINEAGE_BROKEN");

    // Depth over the limit.
    const deep = inputFor(w, buildTask(w, { depth: 3 }));
    deep.limits.maxDepth = 2;
    expectDeny(deep, "LINEAGE_BROKEN");

    // Request claims no parent though its lineage has one.
    const np = buildTask(w, { depth: 1 });
    const noParent = signRequest(np.holder, { taskId: np.taskIds[1]!, action: "transfer", resource: "payments/transfer", args: np.args, artifact: np.chain[1]!, createdAt: T0 - 10 });
    expectDeny({ ...inputFor(w, np), request: noParent }, "LINEAGE_BROKEN");

    // Chain that starts mid-way (root missing).
    const cut = inputFor(w, buildTask(w, { depth: 2 }));
    cut.chain = cut.chain.slice(1);
    cut.lineage = cut.lineage.slice(1);
    expect(decide(cut).verdict).toBe("deny");
  });

  it("GOVERNANCE_UNAVAILABLE: bus down, audit not writable, stale feed, unknown policy, internal error", () => {
    const a = base();
    a.health.busConnected = false;
    expectDeny(a, "GOVERNANCE_UNAVAILABLE");
    const b = base();
    b.health.auditWritable = false;
    expectDeny(b, "GOVERNANCE_UNAVAILABLE");
    const c = base();
    c.health.revocationFeedAt = c.now - 30_001;
    expectDeny(c, "GOVERNANCE_UNAVAILABLE");
    const d = base();
    d.health.revocationFeedAt = null;
    expectDeny(d, "GOVERNANCE_UNAVAILABLE");
    const e = base();
    e.trust.policy = null;
    expectDeny(e, "GOVERNANCE_UNAVAILABLE");
    const f = base();
    f.nonce.cluster = "unavailable";
    expectDeny(f, "GOVERNANCE_UNAVAILABLE");
    // A policy evaluator that throws is an internal error: deny, never an escape.
    const g = decide(base(), () => {
      throw new Error("boom");
    });
    expect(g).toMatchObject({ verdict: "deny", reasons: ["GOVERNANCE_UNAVAILABLE"] });
    // Garbage in the places the gateway fills is a deny, not a throw.
    expect(decide({ ...base(), trust: null as unknown as DecisionInput["trust"] }).verdict).toBe("deny");
  });

  it("origin lineage must come from an authority; roots need one", () => {
    const b = buildTask(w, { depth: 0 });
    const byAgent = originLineage(w.agents[0]!, { childTaskId: b.taskIds[0]!, childArtifact: b.chain[0]!, emittedAt: T0 - 1000 });
    expectDeny({ ...inputFor(w, b), lineage: [byAgent] }, "LINEAGE_BROKEN");
    // issueArtifact is the only way to make a root; it binds the policy given.
    const r = issueArtifact(w.authority, { holder: w.agents[0]!.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: T0, expiresAt: T0 + 1 }, nonce: namedNonce("r"), policy: { id: "p", digest: w.policyDigest }, attribution: { initiator: "x", reason: "y" } });
    expect(r.payload.depth).toBe(0);
  });
});

describe("decide: the verified-signature memo", () => {
  it("answers a repeated signature from the memo, and never another signature or other bytes", () => {
    clearSignatureMemo();
    const input = inputFor(w, buildTask(w, { depth: 0 }));
    const before = signatureMemoStats();
    expect(decide(input).verdict).toBe("allow");
    const first = signatureMemoStats();
    expect(first.misses - before.misses).toBe(3); // request, artifact, origin lineage
    expect(decide(input).verdict).toBe("allow");
    const second = signatureMemoStats();
    expect(second.hits - first.hits).toBe(3);
    expect(second.misses).toBe(first.misses);
    // Same key and signature over other bytes, or a flipped signature: verified for real, denied.
    const other = clone(input);
    (other.request as SignedRequest).payload.createdAt += 1;
    expect(decide(other).reasons).toContain("BAD_SIGNATURE");
    const flipped = clone(input);
    const r = flipped.request as SignedRequest;
    r.sig = (r.sig[0] === "A" ? "B" : "A") + r.sig.slice(1);
    expect(decide(flipped).reasons).toContain("BAD_SIGNATURE");
    expect(signatureMemoStats().misses - second.misses).toBe(2);
  });
});

describe("SignatureMemo", () => {
  const bytes = (n: number): Uint8Array => new TextEncoder().encode(`entry-${n}`);
  const pub = new Uint8Array(32);
  const sig = new Uint8Array(64);
  /** Whether entry n is remembered (a lookup that would fail verification if it were not). */
  const held = (m: SignatureMemo, n: number): boolean => m.verified(pub, sig, bytes(n), () => false);
  const add = (m: SignatureMemo, n: number): boolean => m.verified(pub, sig, bytes(n), () => true);

  it("keeps only successes, keyed by the exact bytes", () => {
    const m = new SignatureMemo(4);
    expect(m.verified(pub, sig, bytes(1), () => false)).toBe(false);
    expect(held(m, 1)).toBe(false);
    add(m, 2);
    expect(held(m, 2)).toBe(true);
    expect(m.verified(new Uint8Array(32).fill(1), sig, bytes(2), () => false)).toBe(false); // other key
    expect(m.verified(pub, new Uint8Array(64).fill(1), bytes(2), () => false)).toBe(false); // other signature
    m.prime(pub, sig, bytes(3)); // as a verify pool reports a success
    expect(held(m, 3)).toBe(true);
    expect(held(m, 4)).toBe(false);
  });

  it("never remembers a key or signature of another width (pub ‖ sig ‖ msg would be ambiguous)", () => {
    const m = new SignatureMemo(4);
    // 33-byte key + 63-byte signature: the same concatenation as a 32/64 pair with one byte moved.
    const longPub = new Uint8Array(33);
    const shortSig = new Uint8Array(63);
    expect(m.verified(longPub, shortSig, bytes(5), () => true)).toBe(true);
    m.prime(longPub, shortSig, bytes(6));
    expect(m.stats().size).toBe(0);
    expect(held(m, 5)).toBe(false);
  });

  it("forgets by generation: the newest entries survive a turnover, memory stays bounded", () => {
    const m = new SignatureMemo(4);
    for (let n = 0; n < 4; n++) add(m, n); // young generation full
    add(m, 4); // turnover: 0..3 become the old generation
    for (let n = 0; n <= 4; n++) expect(held(m, n)).toBe(true);
    for (let n = 5; n < 9; n++) add(m, n); // second turnover drops 0..3
    for (let n = 0; n < 4; n++) expect(held(m, n)).toBe(false);
    for (let n = 4; n < 9; n++) expect(held(m, n)).toBe(true);
    expect(m.stats().size).toBeLessThanOrEqual(8);
    m.clear();
    expect(held(m, 8)).toBe(false);
  });
});
