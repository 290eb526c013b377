// decide() checks the gateway's own inputs it compares against (the clock reading, the limits,
// the feed time and health flags): a comparison with NaN, undefined or a string is false, which
// would wave the check it bounds through. Malformed, they deny (GOVERNANCE_UNAVAILABLE).
import { describe, expect, it } from "vitest";
import { decide } from "../../src/core/decide.ts";
import type { DecisionInput } from "../../src/core/types.ts";
import { buildTask, HOUR, inputFor, makeWorld, T0 } from "../../src/testkit/world.ts";

const w = makeWorld();
const expired = () => inputFor(w, buildTask(w, { depth: 0, validity: { notBefore: T0 - 3 * HOUR, expiresAt: T0 - 2 * HOUR } }));

function verdict(i: DecisionInput) {
  const d = decide(i);
  return { verdict: d.verdict, reasons: d.reasons };
}

describe("decide: malformed limits / clock must deny, not disable checks", () => {
  it("control: an expired artifact is EXPIRED with sane limits", () => {
    expect(verdict(expired())).toEqual({ verdict: "deny", reasons: ["EXPIRED"] });
  });

  it("limits.maxSkewMs = NaN (e.g. Number(unset env var)) must not let an expired artifact through", () => {
    const i = expired();
    i.limits = { ...i.limits, maxSkewMs: Number.NaN };
    expect(decide(i).verdict).toBe("deny");
  });

  it("limits.maxSkewMs missing (undefined after a {...DEFAULT_LIMITS, ...partial} spread) must deny", () => {
    const i = expired();
    i.limits = { ...i.limits, maxSkewMs: undefined as unknown as number };
    expect(decide(i).verdict).toBe("deny");
  });

  it("limits.maxFeedAgeMs = NaN must not accept a revocation feed that is 10 hours stale", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    i.health = { ...i.health, revocationFeedAt: T0 - 10 * HOUR };
    i.limits = { ...i.limits, maxFeedAgeMs: Number.NaN };
    expect(decide(i).verdict).toBe("deny");
  });

  it("health.revocationFeedAt = undefined (not null) must not pass the feed-freshness check", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    i.health = { ...i.health, revocationFeedAt: undefined as unknown as null };
    expect(decide(i).verdict).toBe("deny");
  });

  it("limits.maxDepth = NaN must not lift the delegation depth limit", () => {
    const ok = inputFor(w, buildTask(w, { depth: 3 }));
    ok.limits = { ...ok.limits, maxDepth: 2 };
    expect(verdict(ok)).toEqual({ verdict: "deny", reasons: ["LINEAGE_BROKEN"] }); // control
    const i = inputFor(w, buildTask(w, { depth: 3 }));
    i.limits = { ...i.limits, maxDepth: Number.NaN };
    expect(decide(i).verdict).toBe("deny");
  });

  it("a non-number clock reading (numeric string) must not turn `now + skew` into string concatenation", () => {
    const i = inputFor(w, buildTask(w, { depth: 0, validity: { notBefore: T0 + HOUR, expiresAt: T0 + 2 * HOUR } }));
    expect(verdict(i)).toEqual({ verdict: "deny", reasons: ["NOT_YET_VALID"] }); // control
    i.now = String(T0) as unknown as number;
    expect(decide(i).verdict).toBe("deny");
  });
});

describe("decide: revocations announced by heartbeats and not seen", () => {
  it("any missing revocation denies GOVERNANCE_UNAVAILABLE; none missing (or absent, as in older logs) allows", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    expect(decide(i).verdict).toBe("allow");
    expect(decide({ ...i, health: { ...i.health, revocationsMissing: 0 } }).verdict).toBe("allow");
    const d = decide({ ...i, health: { ...i.health, revocationsMissing: 2 } });
    expect(d.reasons).toEqual(["GOVERNANCE_UNAVAILABLE"]);
    expect(d.checks.find((c) => !c.ok)?.detail).toMatch(/revocation feed incomplete: 2/);
  });

  it("a count that is not an integer ≥ 0 denies as malformed input", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    for (const bad of [Number.NaN, -1, 0.5, "1", null]) {
      const d = decide({ ...i, health: { ...i.health, revocationsMissing: bad as unknown as number } });
      expect(d.reasons, String(bad)).toEqual(["GOVERNANCE_UNAVAILABLE"]);
      expect(d.checks.find((c) => !c.ok)?.detail, String(bad)).toMatch(/gateway inputs malformed/);
    }
  });
});
