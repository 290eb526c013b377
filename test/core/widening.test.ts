// Delegation narrows: a child pattern must cover nothing its parent does not. Coverage is by
// path: a pattern covers the path it names and everything under it, so "payments" covers
// "payments/" and "payments/x", while "payments/" covers neither "payments" nor "paymentsx".
import { describe, expect, it } from "vitest";
import { delegateArtifact, issueArtifact } from "../../src/core/artifacts.ts";
import { resourceCovers, wideningReason } from "../../src/core/scope.ts";
import type { ArtifactPayload } from "../../src/core/types.ts";
import { buildTask, HOUR, makeWorld, namedNonce, T0 } from "../../src/testkit/world.ts";

const w = makeWorld();
const withResources = (p: ArtifactPayload, resources: string[]): ArtifactPayload => ({ ...p, scope: { ...p.scope, resources } });

describe("delegation: a child may not cover a resource its parent does not", () => {
  const b = buildTask(w, { depth: 1 });
  const parent = b.chain[0]!.payload;
  const child = b.chain[1]!.payload;
  const widens = (p: string, c: string) => wideningReason(withResources(parent, [p]), withResources(child, [c])) !== undefined;

  it("coverage is by path segment", () => {
    expect(resourceCovers("payments", "payments")).toBe(true);
    expect(resourceCovers("payments", "payments/")).toBe(true);
    expect(resourceCovers("payments", "payments/transfer")).toBe(true);
    expect(resourceCovers("payments/", "payments/transfer")).toBe(true);
    expect(resourceCovers("payments/", "payments")).toBe(false);
    expect(resourceCovers("payments", "paymentsx")).toBe(false);
    expect(resourceCovers("payments", "payments/../admin")).toBe(false);
  });

  it("'payments/' → 'payments' widens (the child covers 'payments', the parent does not)", () => {
    expect(widens("payments/", "payments")).toBe(true);
  });

  it("'payments' → 'payments/' and 'payments/transfer' narrow; 'pay' → 'payments' widens", () => {
    expect(widens("payments", "payments/")).toBe(false);
    expect(widens("payments", "payments/transfer")).toBe(false);
    expect(widens("payments/", "payments/transfer/")).toBe(false);
    expect(widens("pay", "payments")).toBe(true);
    expect(widens("payments/transfer", "payments")).toBe(true);
    expect(widens("payments", "payments/../admin")).toBe(true);
  });

  it("delegateArtifact refuses to sign a widening child", () => {
    const [root, a1] = [w.agents[0]!, w.agents[1]!];
    const base = { validity: { notBefore: T0 - HOUR, expiresAt: T0 + HOUR }, attribution: { initiator: "alice@example.com", reason: "test" } };
    const parentArt = issueArtifact(w.authority, {
      ...base,
      holder: root.keyId,
      nonce: namedNonce("wp-0"),
      scope: { actions: ["read"], resources: ["payments/"], constraints: {} },
      policy: { id: w.policy.id, digest: w.policyDigest },
    });
    expect(() => delegateArtifact(parentArt, root, { ...base, holder: a1.keyId, nonce: namedNonce("wp-1"), scope: { actions: ["read"], resources: ["payments"], constraints: {} } })).toThrow(TypeError);
    expect(() => delegateArtifact(parentArt, root, { ...base, holder: a1.keyId, nonce: namedNonce("wp-2"), scope: { actions: ["read"], resources: ["payments/transfer"], constraints: {} } })).not.toThrow();
  });
});

describe("delegation defaults: a bound parent's terms carry over", () => {
  // Found by review (a user's journey through the API): bindings defaulted to {} (unbound), which
  // widens any bound parent, so every delegation from one had to repeat the parent's bindings,
  // and validity had to be given though it can never exceed the parent's.
  const authority = w.authority;
  const holder = w.agents[0]!;
  const parent = issueArtifact(authority, {
    holder: holder.keyId,
    scope: { actions: ["deploy"], resources: ["services/"], constraints: {} },
    bindings: { gateways: ["gw-1"], environment: { name: "staging" } },
    validity: { notBefore: T0, expiresAt: T0 + HOUR },
    nonce: namedNonce("defaults-parent"),
    policy: { id: "p", digest: "A".repeat(43) },
    attribution: { initiator: "t", reason: "defaults" },
  });
  const base = { holder: w.agents[1]!.keyId, scope: { actions: ["deploy"], resources: ["services/api"], constraints: {} }, nonce: namedNonce("defaults-child"), attribution: { initiator: "t", reason: "defaults" } };

  it("left out, bindings and validity are the parent's, and the child verifies as a narrowing", () => {
    const child = delegateArtifact(parent, holder, base);
    expect(child.payload.bindings).toEqual(parent.payload.bindings);
    expect(child.payload.validity).toEqual(parent.payload.validity);
    expect(wideningReason(parent.payload, child.payload)).toBeUndefined();
  });

  it("given, they narrow as before; an unbound child of a bound parent is still refused", () => {
    const narrower = delegateArtifact(parent, holder, { ...base, validity: { notBefore: T0, expiresAt: T0 + HOUR / 2 } });
    expect(narrower.payload.validity.expiresAt).toBe(T0 + HOUR / 2);
    expect(() => delegateArtifact(parent, holder, { ...base, bindings: {} })).toThrow(TypeError);
  });
});
