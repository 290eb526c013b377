import { describe, expect, it } from "vitest";
import { TrustStore, TrustStoreError, type TrustEvent } from "../../src/core/trust-store.ts";
import { constraintViolation, resourceCovers, scopeAllows, wideningReason } from "../../src/core/scope.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { buildTask, makeWorld, namedKey } from "../../src/testkit/world.ts";
import type { ArtifactPayload } from "../../src/core/types.ts";

describe("trust store", () => {
  it("registers, rotates and revokes keys, recording every change", () => {
    const events: TrustEvent[] = [];
    const t = new TrustStore((e) => events.push(e));
    const a1 = namedKey("a1").keyId;
    const a2 = namedKey("a2").keyId;
    const g1 = namedKey("g1").keyId;
    t.register("authority", a1);
    t.register("gateway", g1);
    t.rotate("authority", a1, a2);
    expect(t.snapshot().authorities).toEqual([a2]);
    t.revokeKey(g1);
    expect(t.snapshot().gateways).toEqual([]);
    expect(t.snapshot().revokedKeys).toEqual([g1]);
    expect(() => t.register("gateway", g1)).toThrow(TrustStoreError);
    const digest = t.activatePolicy(DEFAULT_POLICY);
    expect(t.snapshot().policy?.digest).toBe(digest);
    expect(events.map((e) => e.op)).toEqual(["authority.add", "gateway.add", "authority.add", "authority.remove", "key.revoke", "policy.activate"]);
  });

  it("refuses small-order, non-canonical and malformed keys at registration", () => {
    const t = new TrustStore();
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const negZero = Uint8Array.from(identity);
    negZero[31] = 0x80;
    const yEqualsP = new Uint8Array(32).fill(0xff);
    yEqualsP[31] = 0x7f;
    yEqualsP[0] = 0xed;
    for (const bad of [toB64u(new Uint8Array(32)), toB64u(identity), toB64u(negZero), toB64u(yEqualsP), "not-a-key", toB64u(new Uint8Array(31))]) {
      let err: unknown;
      try {
        t.register("authority", bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TrustStoreError);
      expect((err as TrustStoreError).code).toBe("BAD_KEY");
    }
    expect(t.snapshot().authorities).toEqual([]);
  });
});

describe("scope: delegation narrows and never widens", () => {
  it("covers resources by path segment", () => {
    expect(resourceCovers("payments/", "payments/transfer")).toBe(true);
    expect(resourceCovers("payments", "payments/transfer")).toBe(true);
    expect(resourceCovers("payments", "paymentsx")).toBe(false);
    expect(resourceCovers("payments/", "paymentsx/transfer")).toBe(false);
    expect(resourceCovers("payments/", "payments/")).toBe(true);
    expect(resourceCovers("payments/", "payments/../admin")).toBe(false);
    expect(resourceCovers("payments/transfer", "payments/transfer")).toBe(true);
    expect(resourceCovers("payments/transfer", "payments/transfers")).toBe(false);
    expect(scopeAllows({ actions: ["read"], resources: ["a/"], constraints: {} }, "write", "a/b")).toBe(false);
  });

  it("numeric constraints only tighten, and must be present in the args", () => {
    const scope = { actions: ["transfer"], resources: ["p/"], constraints: { amount: { min: 1, max: 100 } } };
    expect(constraintViolation(scope, { amount: 100 })).toBeUndefined();
    expect(constraintViolation(scope, { amount: 101 })).toMatch(/over/);
    expect(constraintViolation(scope, { amount: 0 })).toMatch(/under/);
    expect(constraintViolation(scope, {})).toMatch(/missing/);
    expect(constraintViolation(scope, { amount: "100" })).toMatch(/not a number/);
    expect(constraintViolation(scope, [1])).toMatch(/not an object/);
  });

  it("names every way a child can widen its parent", () => {
    const w = makeWorld();
    const parent = buildTask(w, { depth: 0 }).chain[0]!.payload;
    const child = (patch: Partial<ArtifactPayload>): ArtifactPayload => ({ ...parent, ...patch });
    expect(wideningReason(parent, child({}))).toBeUndefined();
    expect(wideningReason(parent, child({ scope: { ...parent.scope, actions: ["transfer", "deploy"] } }))).toMatch(/action/);
    expect(wideningReason(parent, child({ scope: { ...parent.scope, resources: ["paymentsx/"] } }))).toMatch(/resource/);
    expect(wideningReason(parent, child({ scope: { ...parent.scope, resources: ["payments/transfer"] } }))).toBeUndefined();
    expect(wideningReason(parent, child({ scope: { ...parent.scope, constraints: {} } }))).toMatch(/constraint/);
    expect(wideningReason(parent, child({ scope: { ...parent.scope, constraints: { amount: { max: 5001 } } } }))).toMatch(/constraint/);
    expect(wideningReason(parent, child({ scope: { ...parent.scope, constraints: { amount: { max: 10 } } } }))).toBeUndefined();
    expect(wideningReason(parent, child({ validity: { ...parent.validity, expiresAt: parent.validity.expiresAt + 1 } }))).toMatch(/validity/);
    expect(wideningReason(parent, child({ validity: { ...parent.validity, notBefore: parent.validity.notBefore - 1 } }))).toMatch(/validity/);
    const bound = child({ bindings: { gateways: ["gw-1"], environment: { name: "staging" }, agentCodeDigest: parent.nonce.slice(0, 43) } });
    expect(wideningReason(bound, { ...bound, bindings: { ...bound.bindings, gateways: ["gw-1", "gw-2"] } })).toMatch(/gateway/);
    expect(wideningReason(bound, { ...bound, bindings: { gateways: ["gw-1"], environment: {} } })).toMatch(/environment|code/);
    expect(wideningReason(parent, child({ policy: { ...parent.policy, digest: "x".repeat(43) } }))).toMatch(/policy/);
  });
});
