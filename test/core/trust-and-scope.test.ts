import { describe, expect, it } from "vitest";
import { TrustStore, TrustStoreError, type TrustEvent } from "../../src/core/trust-store.ts";
import { ambiguousPath, constraintViolation, resourceCovers, scopeAllows, wideningReason } from "../../src/core/scope.ts";
import { decide } from "../../src/core/decide.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { buildTask, inputFor, makeWorld, namedKey } from "../../src/testkit/world.ts";
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
  const world = makeWorld();
  const root = buildTask(world, { depth: 0 }).chain[0]!.payload;
  const payload = (scope: Partial<ArtifactPayload["scope"]>): ArtifactPayload => ({ ...root, scope: { ...root.scope, constraints: {}, ...scope } });

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

  it("never covers a path another reader could take for a different one (encoded, look-alike or backslash dot segments)", () => {
    const tricks = [
      "payments/%2e%2e/admin",
      "payments/%2E%2E/admin",
      "payments/.%2e/admin",
      "payments/..%2fadmin",
      "payments/\uff0e\uff0e/admin", // fullwidth full stops: ".." under NFKC
      "payments/\u2025/admin", // two-dot leader: ".." under NFKC
      "payments/..\\admin",
      "payments/\u0000/admin",
      "payments/./transfer",
    ];
    for (const r of tricks) {
      expect(ambiguousPath(r), r).toBe(true);
      expect(resourceCovers("payments/", r), r).toBe(false);
      expect(resourceCovers(r, r), r).toBe(false);
    }
    // Ordinary names, Unicode ones included, are not ambiguous.
    for (const r of ["payments/transfer", "payments/caf\u00e9", "payments/a.b", "payments/..a", "payments/~x"]) expect(ambiguousPath(r), r).toBe(false);
  });

  it("decide denies a request for an ambiguous path under a scope that covers its prefix", () => {
    for (const resource of ["payments/%2e%2e/admin", "payments/\uff0e\uff0e/admin", "payments/..\\admin", "payments/../admin"]) {
      const d = decide(inputFor(world, buildTask(world, { depth: 1, resource })));
      expect(d.verdict, resource).toBe("deny");
      expect(d.checks.find((c) => !c.ok)?.code, resource).toBe("POLICY_MISMATCH");
    }
    expect(decide(inputFor(world, buildTask(world, { depth: 1, resource: "payments/transfer" }))).verdict).toBe("allow");
  });

  it("a child pattern with an encoded dot segment does not narrow its parent", () => {
    const parent = payload({ resources: ["payments/"] });
    expect(wideningReason(parent, payload({ resources: ["payments/%2e%2e/"] }))).toMatch(/not within parent scope/);
    expect(wideningReason(parent, payload({ resources: ["payments/x/"] }))).toBeUndefined();
  });

  it("a constraint named like an Object.prototype member cannot be dropped by a child", () => {
    for (const name of ["constructor", "toString", "__defineGetter__"]) {
      const parent = payload({ resources: ["a"], constraints: { [name]: {} } });
      expect(wideningReason(parent, payload({ resources: ["a"], constraints: {} })), name).toMatch(/dropped/);
    }
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
