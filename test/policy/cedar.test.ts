import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { loadCedarWasm, PolicyEngine, screenPolicyText, type PolicyRequest } from "../../src/policy/cedar.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { isPolicyDocument, policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";

function doc(cedar: string, id = "test"): PolicyDocument {
  return { kind: "failclosed/policy/v1", id, version: "1", cedar };
}

function req(action: string, context: Record<string, JsonValue> = {}, principal = "agent-1"): PolicyRequest {
  return { principal, action, resource: "/accounts/42", context: { lineage: { depth: 0 }, ...context } };
}

const engine = new PolicyEngine();
const DEFAULT_DIGEST = policyDigest(DEFAULT_POLICY);
const underDefault = (r: PolicyRequest) => engine.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, r);
const under = (d: PolicyDocument, r: PolicyRequest, e: PolicyEngine = engine) => e.evaluate(d, policyDigest(d), r);

/** Evaluate with a context that the type system would refuse. */
function hostile(context: unknown, d: PolicyDocument = doc(`permit (principal, action, resource);`)) {
  return under(d, { principal: "a", action: "read", resource: "/r", context: context as Record<string, JsonValue> });
}

describe("policyDigest", () => {
  it("is base64url SHA-256 of the RFC 8785 form", () => {
    const d = doc(`permit (principal, action, resource);`, "p");
    const canonical = `{"cedar":"permit (principal, action, resource);","id":"p","kind":"failclosed/policy/v1","version":"1"}`;
    expect(policyDigest(d)).toBe(createHash("sha256").update(canonical).digest("base64url"));
    expect(policyDigest(d)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Key order of the object does not matter; every field does.
    expect(policyDigest({ version: "1", cedar: d.cedar, id: "p", kind: d.kind })).toBe(policyDigest(d));
    expect(policyDigest({ ...d, version: "2" })).not.toBe(policyDigest(d));
  });

  it("refuses anything that is not exactly a policy document", () => {
    expect(isPolicyDocument(DEFAULT_POLICY)).toBe(true);
    expect(isPolicyDocument({ ...DEFAULT_POLICY, extra: 1 })).toBe(false);
    expect(isPolicyDocument({ ...DEFAULT_POLICY, kind: "failclosed/policy/v2" })).toBe(false);
    expect(isPolicyDocument({ ...DEFAULT_POLICY, version: 1 })).toBe(false);
    expect(() => policyDigest({ ...DEFAULT_POLICY, extra: 1 } as PolicyDocument)).toThrow(TypeError);
    expect(() => policyDigest(doc("permit \uD800"))).toThrow(/LONE_SURROGATE/);
  });
});

describe("the default policy", () => {
  it("allows the example agents' ordinary actions, naming the permit", () => {
    expect(underDefault(req("read"))).toEqual({ decision: "allow", reasons: ["read"], errors: [] });
    expect(underDefault(req("plan")).reasons).toEqual(["plan-and-summarize"]);
    expect(underDefault(req("summarize")).decision).toBe("allow");
    expect(underDefault(req("transfer", { args: { amount: 10000, to: "bob" } }))).toEqual({
      decision: "allow",
      reasons: ["transfer-within-limit"],
      errors: [],
    });
    expect(underDefault(req("deploy", { environment: { name: "staging" } })).reasons).toEqual(["deploy-to-staging"]);
    expect(underDefault(req("deploy", { environment: { name: "production" } }, "release-agent-2")).reasons).toEqual([
      "deploy-by-release-agent",
    ]);
  });

  it("denies by default", () => {
    const none = { decision: "deny", reasons: [], errors: [] };
    expect(underDefault(req("delete"))).toEqual(none);
    expect(underDefault(req("transfer", { args: { amount: 10001 } }))).toEqual(none);
    expect(underDefault(req("transfer", { args: { amount: 0 } }))).toEqual(none);
    expect(underDefault(req("transfer", { args: { to: "bob" } }))).toEqual(none);
    expect(underDefault(req("transfer"))).toEqual(none);
    expect(underDefault(req("deploy", { environment: { name: "production" } }))).toEqual(none);
    // Entity ids are exact: no prefix, case or type games.
    expect(underDefault(req("Read"))).toEqual(none);
    expect(underDefault(req("deploy", { environment: { name: "production" } }, "release-agent-1 "))).toEqual(none);
  });

  it("forbids deep delegation, and a request that does not state its depth", () => {
    const forbid = { decision: "deny", reasons: ["lineage-depth-limit"], errors: [] };
    expect(underDefault(req("read", { lineage: { depth: 4 } })).decision).toBe("allow");
    expect(underDefault(req("read", { lineage: { depth: 5 } }))).toEqual(forbid);
    expect(underDefault({ principal: "agent-1", action: "read", resource: "/r", context: {} })).toEqual(forbid);
    expect(underDefault(req("read", { lineage: {} }))).toEqual(forbid);
  });

  it("denies a transfer whose amount is not a Long, recording Cedar's error", () => {
    for (const amount of ["500", 500.5, true, [500]]) {
      const out = underDefault(req("transfer", { args: { amount } }));
      expect(out.decision).toBe("deny");
      expect(out.reasons).toEqual([]);
      expect(out.errors).toHaveLength(1);
      expect(out.errors[0]).toMatch(/^CEDAR_EVAL: transfer-within-limit: type error/);
    }
  });
});

describe("failures deny and are recorded", () => {
  it("a policy that does not parse denies every request, and is not re-parsed", () => {
    const e = new PolicyEngine();
    const bad = doc(`permit (principal, action, resource`);
    const first = under(bad, req("read"), e);
    expect(first.decision).toBe("deny");
    expect(first.errors[0]).toMatch(/^POLICY_PARSE: .*unexpected end of input/);
    for (let i = 0; i < 5; i++) expect(under(bad, req("read"), e)).toEqual(first);
    expect(e.stats()).toMatchObject({ parses: 1, hits: 5, misses: 1 });
  });

  it("an evaluation error in a forbid denies even though Cedar would allow", () => {
    const d = doc(`@id("open") permit (principal, action, resource);
      @id("guard") forbid (principal, action, resource) when { context.risk > 3 };`);
    expect(under(d, req("read", { risk: 2 }))).toEqual({ decision: "allow", reasons: ["open"], errors: [] });
    expect(under(d, req("read", { risk: 9 }))).toEqual({ decision: "deny", reasons: ["guard"], errors: [] });
    // String compared with a Long: Cedar skips the erroring forbid and allows; we deny.
    const out = under(d, req("read", { risk: "high" }));
    expect(out).toEqual({ decision: "deny", reasons: [], errors: [expect.stringMatching(/^CEDAR_EVAL: guard: type error/)] });
    // A missing attribute is an evaluation error too.
    expect(under(d, req("read")).errors).toEqual([expect.stringMatching(/^CEDAR_EVAL: guard: .*risk/)]);
  });

  it("a digest that is not the document's denies, before and after the document is cached", () => {
    const d = doc(`permit (principal, action, resource);`);
    const digest = policyDigest(d);
    expect(engine.evaluate(d, "A".repeat(43), req("read"))).toEqual({
      decision: "deny",
      reasons: [],
      errors: [`DIGEST_MISMATCH: expected ${"A".repeat(43)}, document hashes to ${digest}`],
    });
    expect(engine.evaluate(d, digest, req("read")).decision).toBe("allow");
    // Same digest, different text: the cache must not vouch for it.
    const swapped = engine.evaluate({ ...d, cedar: `permit (principal, action, resource); ` }, digest, req("read"));
    expect(swapped.decision).toBe("deny");
    expect(swapped.errors[0]).toMatch(/^DIGEST_MISMATCH/);
    expect(engine.evaluate({ ...d, version: "2" }, digest, req("read")).errors[0]).toMatch(/^DIGEST_MISMATCH/);
  });

  it("a malformed document or request denies", () => {
    const d = doc(`permit (principal, action, resource);`);
    const digest = policyDigest(d);
    const bad = { ...d, extra: "x" } as PolicyDocument;
    expect(engine.evaluate(bad, digest, req("read")).errors).toEqual(["BAD_DOCUMENT: not a failclosed/policy/v1 document"]);
    expect(engine.evaluate(null as unknown as PolicyDocument, digest, req("read")).decision).toBe("deny");
    expect(engine.evaluate(d, 42 as unknown as string, req("read")).errors[0]).toMatch(/^DIGEST_MISMATCH/);
    const noPrincipal = { ...req("read"), principal: 7 } as unknown as PolicyRequest;
    expect(engine.evaluate(d, digest, noPrincipal).errors).toEqual(["BAD_REQUEST: principal is not a well-formed string"]);
    expect(engine.evaluate(d, digest, { ...req("read"), resource: "/x\uDC00" }).errors[0]).toMatch(/^BAD_REQUEST/);
    expect(engine.evaluate(d, digest, null as unknown as PolicyRequest).decision).toBe("deny");
  });

  it("templates and ambiguous policy ids are refused", () => {
    const template = under(doc(`permit (principal == ?principal, action, resource);`), req("read"));
    expect(template.errors).toEqual(["POLICY_PARSE: policy templates are not supported"]);
    const twice = under(doc(`@id("a") permit (principal, action, resource); @id("a") forbid (principal, action, resource);`), req("read"));
    expect(twice.errors).toEqual([`POLICY_PARSE: policy id "a" is used twice`]);
    const clash = under(doc(`@id("policy1") permit (principal, action, resource); permit (principal, action, resource);`), req("read"));
    expect(clash.errors).toEqual([`POLICY_PARSE: policy id "policy1" is used twice`]);
  });
});

describe("policy ids", () => {
  it("are Cedar's policyN in text order when not annotated, and sorted", () => {
    const text = Array.from({ length: 12 }, (_, i) => `permit (principal, action == Action::"a${i}", resource);`).join("\n");
    const d = doc(`${text}\n@id("any") permit (principal, action, resource) when { context has wide };`);
    for (const i of [0, 1, 2, 9, 10, 11]) expect(under(d, req(`a${i}`)).reasons).toEqual([`policy${i}`]);
    expect(under(d, req("a10", { wide: true })).reasons).toEqual(["any", "policy10"]);
  });
});

describe("cache", () => {
  it("serves repeated evaluations without re-parsing, with identical results", () => {
    const e = new PolicyEngine();
    const digest = policyDigest(DEFAULT_POLICY);
    const requests = [
      req("read"),
      req("transfer", { args: { amount: 20 } }),
      req("transfer", { args: { amount: 20000 } }),
      req("transfer", { args: { amount: "20" } }),
      req("read", { lineage: { depth: 9 } }),
    ];
    const expected = requests.map((r) => e.evaluate(DEFAULT_POLICY, digest, r));
    expect(expected.map((x) => x.decision)).toEqual(["allow", "allow", "deny", "deny", "deny"]);
    for (let round = 0; round < 400; round++) {
      requests.forEach((r, i) => expect(e.evaluate(DEFAULT_POLICY, digest, r)).toEqual(expected[i]));
    }
    expect(e.stats()).toEqual({ hits: 2004, misses: 1, parses: 1, loads: 1, cached: 1 });
    // An equal document that is a different object is still a hit.
    expect(e.evaluate({ ...DEFAULT_POLICY }, digest, requests[0]!)).toEqual(expected[0]);
    expect(e.stats().parses).toBe(1);
  });

  it("evicts the least recently used policy and reuses its slot without mixing policies up", () => {
    const e = new PolicyEngine({ cacheSize: 2 });
    const docs = [
      doc(`@id("A") permit (principal, action == Action::"a", resource);`, "A"),
      doc(`@id("B") permit (principal, action == Action::"b", resource);`, "B"),
      doc(`@id("C") permit (principal, action == Action::"c", resource);`, "C"),
      doc(`permit (principal, action`, "broken"),
    ];
    for (let round = 0; round < 10; round++) {
      for (const [i, d] of docs.entries()) {
        for (const [j, action] of ["a", "b", "c"].entries()) {
          const out = under(d, req(action), e);
          expect(out.decision).toBe(i === j ? "allow" : "deny");
          if (i === j) expect(out.reasons).toEqual([d.id]);
        }
      }
    }
    expect(e.stats().cached).toBe(2);
    expect(e.stats().parses).toBe(40); // round robin over 4 documents, 2 places: every visit misses
    expect(e.stats().loads).toBe(1);
  });

  it("keeps engines apart (each has its own Cedar instance)", () => {
    const e1 = new PolicyEngine();
    const e2 = new PolicyEngine();
    const a = doc(`permit (principal, action == Action::"a", resource);`, "A");
    const b = doc(`permit (principal, action == Action::"b", resource);`, "B");
    expect(under(a, req("a"), e1).decision).toBe("allow");
    expect(under(b, req("a"), e2).decision).toBe("deny"); // same slot name, other instance
    expect(under(a, req("a"), e1).decision).toBe("allow");
    expect(under(a, req("b"), e1).decision).toBe("deny");
  });

  it("rejects an invalid cache size", () => {
    expect(() => new PolicyEngine({ cacheSize: 0 })).toThrow(RangeError);
    expect(() => new PolicyEngine({ cacheSize: 1.5 })).toThrow(RangeError);
  });
});

describe("context", () => {
  const probe = doc(`@id("has-x") permit (principal, action, resource) when { context has x };
    @id("half") permit (principal, action, resource) when { context has ratio && context.ratio == "0.5" };
    @id("proto") permit (principal, action, resource) when { context has "__proto__" };`);

  it("passes non-integers as their canonical string, and leaves nulls out", () => {
    expect(hostile({ ratio: 0.5 }, probe).reasons).toEqual(["half"]);
    expect(hostile({ x: 1e-7 }, probe).reasons).toEqual(["has-x"]);
    expect(hostile({ x: -0 }, probe).reasons).toEqual(["has-x"]);
    expect(hostile({ x: null }, probe)).toEqual({ decision: "deny", reasons: [], errors: [] });
    expect(hostile({ x: [null] }, probe).reasons).toEqual(["has-x"]);
  });

  it("treats an own __proto__ key as an ordinary member and pollutes nothing", () => {
    const out = hostile(JSON.parse(`{"__proto__": {"polluted": true}}`), probe);
    expect(out).toEqual({ decision: "allow", reasons: ["proto"], errors: [] });
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });

  it("refuses what Cedar cannot represent faithfully", () => {
    let deep: JsonValue = 1;
    for (let i = 0; i < 100_000; i++) deep = { d: deep };
    let deepArray: JsonValue = 1;
    for (let i = 0; i < 40; i++) deepArray = [deepArray];
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    const cases: [unknown, RegExp][] = [
      [{ x: deep }, /nested deeper than 32/],
      [{ x: deepArray }, /nested deeper than 32/],
      [cyclic, /nested deeper than 32/],
      [{ x: 2 ** 53 }, /beyond/],
      [{ x: -(2 ** 60) }, /beyond/],
      [{ x: 1e300 }, /beyond/],
      [{ x: Infinity }, /non-finite/],
      [{ x: NaN }, /non-finite/],
      [{ x: 10n }, /bigint/],
      [{ x: undefined }, /undefined/],
      [{ x: () => 1 }, /function/],
      [{ x: new Date(0) }, /not a plain object/],
      [{ x: new Map() }, /not a plain object/],
      // eslint-disable-next-line no-sparse-arrays
      [{ x: [1, , 3] }, /sparse/],
      [{ x: "\uD800" }, /lone surrogate/],
      [{ "\uDFFF": 1 }, /lone surrogate/],
      [{ owner: { __entity: { type: "Agent", id: "root" } } }, /reserved key __entity/],
      [{ x: { __extn: { fn: "decimal", arg: "1.0" } } }, /reserved key __extn/],
      [{ x: Array.from({ length: 20_000 }, (_, i) => i) }, /over 10000 values/],
      [{ get x(): never { throw new Error("boom"); } }, /boom/],
      [[1, 2], /not an object/],
      [null, /not an object/],
    ];
    for (const [context, message] of cases) {
      const out = hostile(context, probe);
      expect(out.decision).toBe("deny");
      expect(out.errors).toEqual([expect.stringMatching(/^BAD_CONTEXT: /)]);
      expect(out.errors[0]).toMatch(message);
    }
  });

  it("cannot forge an entity reference through the context", () => {
    const d = doc(`permit (principal, action, resource) when { context has owner && context.owner == Agent::"root" };`);
    const forged = hostile({ owner: { __entity: { type: "Agent", id: "root" } } }, d);
    expect(forged.decision).toBe("deny");
    expect(hostile({ owner: { type: "Agent", id: "root" } }, d)).toEqual({ decision: "deny", reasons: [], errors: [] });
  });

  it("never throws and is deterministic on arbitrary JSON (property)", () => {
    const e1 = new PolicyEngine();
    const e2 = new PolicyEngine();
    const digest = policyDigest(DEFAULT_POLICY);
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.string(), fc.constantFrom("read", "transfer", "deploy"), (args, principal, action) => {
        const r = { principal, action, resource: "/r", context: { args, lineage: { depth: 1 } } } as PolicyRequest;
        const a = e1.evaluate(DEFAULT_POLICY, digest, r);
        expect(a.decision === "allow" || a.decision === "deny").toBe(true);
        expect(e1.evaluate(DEFAULT_POLICY, digest, r)).toEqual(a);
        expect(e2.evaluate(DEFAULT_POLICY, digest, r)).toEqual(a);
        if (a.decision === "allow") expect(a.errors).toEqual([]);
      }),
      { numRuns: 500 },
    );
    expect(e1.stats().loads).toBe(1);
  });
});

describe("policy complexity limits", () => {
  const when = (body: string) => `permit (principal, action, resource) when { ${body} };`;
  // Shapes whose depth Cedar 4.13 recurses on, each overflowing its stack somewhere in 76..353.
  const shapes: Record<string, (n: number) => string> = {
    brackets: (n) => `${"(".repeat(n)}true${")".repeat(n)}`,
    sets: (n) => `${"[".repeat(n)}1${"]".repeat(n)} == 1`,
    sum: (n) => `${Array(n).fill("1").join(" + ")} > 0`,
    attributes: (n) => `context${".a".repeat(n)} == 1`,
    disjunction: (n) => Array(n).fill("context has a").join(" || "),
    conjunction: (n) => Array(n).fill("context.args.amount <= 10000").join(" && "),
    elseIf: (n) => `${"if context has a then false else ".repeat(n)}true`,
    mixed: (n) => `${"(context has a && ".repeat(n)}true${")".repeat(n)}`,
  };
  /** The largest n the screen lets through. */
  const largestAccepted = (shape: (n: number) => string) => {
    let n = 1;
    while (screenPolicyText(when(shape(n + 1))) === undefined) n++;
    return n;
  };

  it("refuses deep policies before Cedar sees them", () => {
    const e = new PolicyEngine();
    for (const [name, shape] of Object.entries(shapes)) {
      const n = largestAccepted(shape);
      expect([name, n >= 14 && n <= 32]).toEqual([name, true]);
      for (const m of [n + 1, 76, 1000]) {
        const out = under(doc(when(shape(m))), req("read"), e);
        expect(out).toEqual({ decision: "deny", reasons: [], errors: [expect.stringMatching(/^POLICY_TOO_COMPLEX: /)] });
      }
    }
    expect(screenPolicyText("permit (principal, action, resource);".repeat(1 << 15))).toMatch(/over 1048576 characters/);
    expect(e.stats()).toMatchObject({ parses: 0, loads: 0 });
  });

  it("lets ordinary policies through: length is not depth", () => {
    expect(screenPolicyText(DEFAULT_POLICY.cedar)).toBeUndefined();
    // Strings and comments do not count; set elements and separate policies are independent.
    expect(screenPolicyText(`// ${"(".repeat(500)}\n${when(`context.s == "${"((.+&&".repeat(500)}"`)}`)).toBeUndefined();
    expect(screenPolicyText(when(`action in [${Array.from({ length: 5000 }, (_, i) => `Action::"a${i}"`).join(", ")}]`))).toBeUndefined();
    expect(screenPolicyText(Array(100).fill(when(shapes.sum!(25))).join("\n"))).toBeUndefined();
  });

  it("everything the screen accepts, Cedar evaluates without crashing, even after JIT warm-up", () => {
    const e = new PolicyEngine();
    for (let i = 0; i < 20_000; i++) e.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, req("transfer", { args: { amount: i } }));
    for (const shape of Object.values(shapes)) {
      const out = under(doc(when(shape(largestAccepted(shape)))), req("read", { a: 1, args: { amount: 1 } }), e);
      expect(out.errors.filter((x) => !x.startsWith("CEDAR_EVAL"))).toEqual([]);
    }
    expect(e.stats().loads).toBe(1);
  });

  it("recovers from a Cedar crash by loading a fresh instance, denying meanwhile", () => {
    let sabotage = false;
    const load = () => {
      const real = loadCedarWasm();
      return {
        ...real,
        statefulIsAuthorized: (call: Parameters<typeof real.statefulIsAuthorized>[0]) => {
          if (sabotage) throw Object.assign(new Error("memory access out of bounds"), { name: "RuntimeError" });
          return real.statefulIsAuthorized(call);
        },
      };
    };
    const e = new PolicyEngine({ load });
    expect(underDefault(req("read")).decision).toBe("allow");
    expect(e.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, req("read")).decision).toBe("allow");
    sabotage = true;
    expect(e.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, req("read"))).toEqual({
      decision: "deny",
      reasons: [],
      errors: ["CEDAR_CRASH: RuntimeError: memory access out of bounds (Cedar instance discarded)"],
    });
    expect(e.stats()).toMatchObject({ loads: 1, cached: 0 });
    sabotage = false;
    expect(e.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, req("read"))).toEqual(underDefault(req("read")));
    expect(e.stats()).toMatchObject({ loads: 2, parses: 2, cached: 1 });
  });

  it("denies when Cedar cannot even be loaded, and tries again next time", () => {
    let broken = true;
    const e = new PolicyEngine({
      load: () => {
        if (broken) throw new Error("ENOENT: cedar_wasm_bg.wasm");
        return loadCedarWasm();
      },
    });
    expect(e.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, req("read")).errors).toEqual([
      "CEDAR_CRASH: Error: ENOENT: cedar_wasm_bg.wasm (Cedar instance discarded)",
    ]);
    broken = false;
    expect(e.evaluate(DEFAULT_POLICY, DEFAULT_DIGEST, req("read")).decision).toBe("allow");
  });

  it("(why) unscreened, a deep policy overflows cedar-wasm 4.13's stack", () => {
    // Depending on V8's tiering the overflow is a clean RangeError or a RuntimeError that leaves
    // the instance corrupt for every later call (seen cold at 150 brackets): hence the screen,
    // and a fresh instance after any throw.
    const cedar = loadCedarWasm();
    expect(() => cedar.preparsePolicySet("x", { staticPolicies: when(shapes.brackets!(1000)) })).toThrow();
    const fresh = loadCedarWasm();
    expect(fresh.preparsePolicySet("y", { staticPolicies: when(shapes.sum!(1000)) })).toEqual({ type: "success" });
    const call = { principal: { type: "Agent", id: "a" }, action: { type: "Action", id: "read" }, resource: { type: "Resource", id: "/r" } };
    expect(() => fresh.statefulIsAuthorized({ ...call, context: {}, entities: [], preparsedPolicySetId: "y" })).toThrow();
  });
});
