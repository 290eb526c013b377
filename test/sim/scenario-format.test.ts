// The scenario format: every shipped scenario loads, together they cover the list, and
// a person who makes a mistake is told where (file:line and path) and what.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DENIAL_CODES } from "../../src/core/types.ts";
import { wideningReason } from "../../src/core/scope.ts";
import type { ArtifactPayload, DenialCode } from "../../src/core/types.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import {
  codeDigest,
  describeExpectation,
  expectationMet,
  loadScenarios,
  MALFORMED_KINDS,
  parseDuration,
  parseOffset,
  parseScenario,
  resolveDelegation,
  resolveGrant,
  ScenarioFormatError,
  type ActualOutcome,
  type Expectation,
  type ResolvedArtifact,
  type Scenario,
  type Step,
  type TaskStep,
  type ReplayStep,
} from "../../src/sim/scenario-format.ts";

const DIR = join(import.meta.dirname, "../../scenarios");
const scenarios = loadScenarios(DIR);

function submissions(s: Scenario): (TaskStep | ReplayStep)[] {
  return s.steps.flatMap((st: Step) => (st.kind === "task" || st.kind === "replay" ? [st] : st.kind === "concurrently" ? st.steps : []));
}
function findTask(s: Scenario, id: string): TaskStep | undefined {
  return submissions(s).find((t): t is TaskStep => t.kind === "task" && t.id === id);
}
/** A grant or delegation id and its ancestors'. */
function chainOf(s: Scenario, id: string): string[] {
  const d = [...s.delegations, ...s.steps.flatMap((st) => (st.kind === "delegate" ? [st.delegation] : []))].find((x) => x.id === id);
  return d ? [id, ...chainOf(s, d.from)] : [id];
}
function expectedCodes(e: Expectation): DenialCode[] {
  return "oneOf" in e ? e.oneOf.flatMap(expectedCodes) : e.verdict === "deny" ? e.anyOf : [];
}

describe("shipped scenarios", () => {
  it("are at least 20, uniquely named, each described", () => {
    expect(scenarios.length).toBeGreaterThanOrEqual(20);
    expect(new Set(scenarios.map((s) => s.name)).size).toBe(scenarios.length);
    for (const s of scenarios) {
      expect(s.description.length, s.name).toBeGreaterThan(60);
      expect(submissions(s).length, s.name).toBeGreaterThan(0);
    }
  });

  it("cover every denial condition of the fail-closed model", () => {
    const codes = new Set(scenarios.flatMap((s) => submissions(s).flatMap((t) => expectedCodes(t.expect))));
    // Every code of DESIGN §3, MALFORMED included (26-denied-malformed), so a new denial code
    // without a scenario fails here.
    for (const c of DENIAL_CODES) {
      expect(codes, c).toContain(c);
    }
  });

  it("cover every infrastructure fault, tampering kind and two gateways racing", () => {
    const faults = new Set(scenarios.flatMap((s) => s.steps.flatMap((st) => (st.kind === "fault" ? [st.fault.kind] : []))));
    expect([...faults].sort()).toEqual(
      ["audit-store-failure", "change-policy", "clock-skew", "crash-gateway", "nats-outage", "policy-rollback", "policy-unavailable", "rotate-authority-key", "stale-revocation-feed"].sort(),
    );
    const tampers = new Set(scenarios.flatMap((s) => submissions(s).flatMap((t) => (t.kind === "task" ? t.tamper.map((x) => x.kind) : []))));
    expect([...tampers].sort()).toEqual(["drop-artifact", "drop-lineage", "forge-signature", "malformed", "sign-as", "splice-lineage", "widen-scope"]);
    const malformed = new Set(scenarios.flatMap((s) => submissions(s).flatMap((t) => (t.kind === "task" ? t.tamper.flatMap((x) => (x.kind === "malformed" ? [x.how] : [])) : []))));
    expect([...malformed].sort()).toEqual([...MALFORMED_KINDS].sort());
    const race = scenarios.find((s) => s.steps.some((st) => st.kind === "concurrently" && new Set(st.steps.map((t) => t.gateway)).size > 1));
    expect(race?.invariants).toContainEqual({ kind: "exactlyOneExecuted", tasks: ["race-on-gw1", "race-on-gw2"] });
    expect(scenarios.some((s) => s.steps.some((st) => st.kind === "replay"))).toBe(true);
    expect(scenarios.some((s) => s.steps.some((st) => st.kind === "revoke"))).toBe(true);
  });

  it("revoke while a task is being verified: an artifact, a key, and a parent's artifact with its child in flight", () => {
    const during = scenarios.flatMap((s) =>
      s.steps.flatMap((st) => ((st.kind === "revoke" || st.kind === "revokeKey") && st.during !== undefined ? [{ s, st, task: findTask(s, st.during) }] : [])),
    );
    expect(during.some((d) => d.st.kind === "revokeKey")).toBe(true);
    // A child in flight under the revoked artifact's descendant, its parent executing.
    const childInFlight = during.some(({ s, st, task }) => st.kind === "revoke" && task?.parent !== undefined && s.delegations.some((x) => x.id === task.uses && x.from === st.target));
    expect(childInFlight).toBe(true);
    for (const d of during) {
      const code = expectedCodes(d.task!.expect);
      const touched = d.st.kind === "revokeKey" ? d.task!.agent === d.st.principal : chainOf(d.s, d.task!.uses).includes(d.st.target);
      expect(code, `${d.s.name}/${d.task!.id}`).toEqual(touched ? ["REVOKED"] : []);
    }
  });

  it("probe the clock-skew tolerance from both sides, in both directions", () => {
    const s = scenarios.find((x) => x.name === "fault-clock-skew")!;
    const tolerance = s.limits.maxSkewMs!;
    expect(tolerance).toBeGreaterThan(0);
    // Each skew fault, with how far it puts the next task's artifact outside its window by the
    // gateway's clock (the scenario never advances its clock: artifacts are issued at t=0), and
    // whether that task is expected to run.
    const cases: { by: number; overshoot: number; ok: boolean }[] = [];
    s.steps.forEach((st, i) => {
      if (st.kind !== "fault" || st.fault.kind !== "clock-skew") return;
      const next = s.steps.slice(i + 1).find((x): x is TaskStep => x.kind === "task")!;
      const v = resolveGrant(s.grants.find((g) => g.id === next.uses)!, s.start, s.start).validity;
      const at = s.start + st.fault.byMs;
      const overshoot = Math.max(v.notBefore - at, at - v.expiresAt, 0);
      cases.push({ by: st.fault.byMs, overshoot, ok: describeExpectation(next.expect) === "executed" });
    });
    // Behind (artifacts look early) and ahead (artifacts look expired): a task outside its window
    // by less than the tolerance runs (with no tolerance it would not), one outside by a little
    // more than the tolerance is denied.
    for (const sign of [-1, 1]) {
      const side = cases.filter((c) => Math.sign(c.by) === sign);
      expect(side.some((c) => c.ok && c.overshoot > 0 && c.overshoot < tolerance), `sign ${sign}: inside`).toBe(true);
      expect(side.some((c) => !c.ok && c.overshoot > tolerance && c.overshoot < 2 * tolerance), `sign ${sign}: just outside`).toBe(true);
    }
  });

  it("include happy paths where every task runs", () => {
    const happy = scenarios.filter((s) => s.tags.includes("happy-path"));
    expect(happy.map((s) => s.name)).toEqual(expect.arrayContaining(["happy-orchestrator-depth3", "happy-treasury-transfer", "happy-deploy-staging"]));
    const depth3 = happy.find((s) => s.name === "happy-orchestrator-depth3")!;
    expect(submissions(depth3).every((t) => describeExpectation(t.expect) === "executed")).toBe(true);
    expect(depth3.delegations.map((d) => d.from)).toEqual(["orchestrator-grant", "planner-grant", "researcher-grant"]);
  });

  it("declare only delegations that narrow their parent (unless a task tampers with them)", () => {
    for (const s of scenarios) {
      const digests = Object.fromEntries(Object.entries(s.policies).map(([n, p]) => [n, policyDigest(p)]));
      const resolved = new Map<string, { r: ResolvedArtifact; policy: string }>();
      const payload = (x: { r: ResolvedArtifact; policy: string }): ArtifactPayload =>
        ({ scope: x.r.scope, bindings: x.r.bindings, validity: x.r.validity, policy: { id: "p", digest: digests[x.policy]! } }) as ArtifactPayload;
      for (const g of [...s.grants, ...s.steps.flatMap((st) => (st.kind === "grant" ? [st.grant] : []))]) {
        resolved.set(g.id, { r: resolveGrant(g, s.start, s.start), policy: g.policy ?? s.activePolicy });
      }
      for (const d of [...s.delegations, ...s.steps.flatMap((st) => (st.kind === "delegate" ? [st.delegation] : []))]) {
        const parent = resolved.get(d.from)!;
        const child = { r: resolveDelegation(d, parent.r, s.start), policy: parent.policy };
        expect(wideningReason(payload(parent), payload(child)), `${s.name}: ${d.id}`).toBeUndefined();
        resolved.set(d.id, child);
      }
    }
  });
});

describe("durations and offsets", () => {
  it("parse units and reject the rest", () => {
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("2d")).toBe(172_800_000);
    expect(parseDuration("0")).toBe(0);
    for (const bad of ["1", "1.5h", "h", "-1h", "1 h", ""]) expect(parseDuration(bad), bad).toBeUndefined();
    expect(parseOffset("+2h")).toBe(7_200_000);
    expect(parseOffset("-5m")).toBe(-300_000);
    expect(parseOffset("2h")).toBe(7_200_000);
  });
});

describe("resolving artifacts", () => {
  const s = scenarios.find((x) => x.name === "happy-orchestrator-depth3")!;
  it("a grant's window starts at issue time unless notBefore is given; delegations inherit and narrow", () => {
    const root = resolveGrant(s.grants[0]!, s.start, s.start + 1000);
    expect(root.validity).toEqual({ notBefore: s.start + 1000, expiresAt: s.start + 1000 + 7_200_000 });
    expect(root.bindings).toEqual({ environment: { name: "staging" } });
    const planner = resolveDelegation(s.delegations[0]!, root, s.start);
    expect(planner.validity).toEqual({ notBefore: s.start + 1000, expiresAt: s.start + 1000 + 3_600_000 });
    expect(planner.scope).toEqual(root.scope);
    const researcher = resolveDelegation(s.delegations[1]!, planner, s.start);
    expect(researcher.scope.actions).toEqual(["read", "summarize"]);
    expect(researcher.bindings.environment).toEqual({ name: "staging" });
  });
  it("binds code by the digest of its string", () => {
    const deploy = scenarios.find((x) => x.name === "happy-deploy-staging")!;
    const r = resolveGrant(deploy.grants[1]!, deploy.start, deploy.start);
    expect(r.bindings.agentCodeDigest).toBe(codeDigest("deploy-bot@2.3.0"));
    expect(r.bindings.gateways).toEqual(["gw-1"]);
  });
});

describe("expectations", () => {
  const allow: ActualOutcome = { verdict: "allow", executed: false, codes: [] };
  const ran: ActualOutcome = { verdict: "allow", executed: true, codes: [] };
  const expired: ActualOutcome = { verdict: "deny", executed: false, codes: ["GOVERNANCE_UNAVAILABLE", "EXPIRED"] };
  it("match outcomes", () => {
    expect(expectationMet({ verdict: "allow", executed: false }, allow)).toBe(true);
    expect(expectationMet({ verdict: "allow", executed: true }, allow)).toBe(false);
    expect(expectationMet({ verdict: "allow", executed: true }, { ...ran, codes: [] })).toBe(true);
    expect(expectationMet({ verdict: "deny", anyOf: ["EXPIRED"] }, { ...expired, codes: [...expired.codes] })).toBe(true);
    expect(expectationMet({ verdict: "deny", anyOf: ["REVOKED"] }, { ...expired, codes: [...expired.codes] })).toBe(false);
    expect(expectationMet({ verdict: "deny", anyOf: ["REVOKED"] }, { verdict: "none", executed: false, codes: [] })).toBe(false);
    const race: Expectation = { oneOf: [{ verdict: "allow", executed: true }, { verdict: "deny", anyOf: ["REPLAYED"] }] };
    expect(expectationMet(race, { ...ran, codes: [] })).toBe(true);
    expect(expectationMet(race, { verdict: "deny", executed: false, codes: ["REPLAYED"] })).toBe(true);
    expect(expectationMet(race, { ...allow, codes: [] })).toBe(false);
    expect(describeExpectation(race)).toBe("one of: executed | denied: REPLAYED");
  });
});

describe("errors a person can act on", () => {
  const base = `name: t
description: a scenario written in a test to probe errors
agents:
  - { name: alice }
grants:
  - { id: g, to: alice, actions: [read], resources: [r/], validFor: 1h }
steps:
`;
  function problems(yaml: string): string {
    try {
      parseScenario(yaml, "bad.yaml");
    } catch (e) {
      expect(e).toBeInstanceOf(ScenarioFormatError);
      expect((e as ScenarioFormatError).code).toBe("SCENARIO_INVALID");
      return (e as Error).message;
    }
    throw new Error("expected the scenario to be refused");
  }
  const task = "  - { task: t1, agent: alice, action: read, resource: r/x, uses: g, expect: executed }\n";

  it("accepts the minimal scenario", () => {
    expect(parseScenario(base + task).steps).toHaveLength(1);
  });
  it("names file, line and path of a misspelt field", () => {
    expect(problems(base + "  - { task: t1, agent: alice, action: read, resource: r/x, uses: g, expcet: executed }\n")).toMatch(
      /^bad\.yaml:8: steps\[0\]: .*expcet/m,
    );
  });
  it("lists the step kinds when none is recognised", () => {
    expect(problems(base + "  - { tsak: t1 }\n")).toMatch(/steps\[0\]: a step needs one of: task, replay, concurrently, grant, delegate/);
  });
  it("lists the denial codes for an unknown one", () => {
    expect(problems(base + "  - { task: t1, agent: alice, action: read, resource: r/x, uses: g, expect: { denied: EXPIRD } }\n")).toMatch(
      /steps\[0\]\.expect\.denied: unknown denial code "EXPIRD"; one of MALFORMED, NO_ARTIFACT/,
    );
  });
  it("reports YAML syntax errors and duplicate keys with a line", () => {
    expect(problems(base + "  - { task: t1, agent: alice\n")).toMatch(/^bad\.yaml:\d+: /);
    expect(problems(base + "  - task: t1\n    task: t2\n")).toMatch(/^bad\.yaml:9: Map keys must be unique/);
  });
  it("refuses a bad duration and a task id that is not a subject token", () => {
    expect(problems(base.replace("validFor: 1h", "validFor: 1 hour") + task)).toMatch(/grants\[0\]\.validFor: expected a duration/);
    expect(problems(base + task.replace("task: t1", "task: 'a.b'"))).toMatch(/steps\[0\]\.task: .*NATS subject token/);
  });
  it("checks references: agents, grants, parents, during, invariants", () => {
    const msg = problems(
      base +
        "  - { fault: nats-outage, during: t0 }\n" +
        "  - { task: t1, agent: bob, action: read, resource: r/x, uses: nope, expect: executed }\n" +
        "  - { delegate: d, from: g, to: alice }\n" +
        "  - { task: t2, agent: alice, action: read, resource: r/x, uses: d, expect: executed }\n" +
        "invariants:\n  - notExecuted: [ghost]\n",
    );
    expect(msg).toContain('steps[0].during: "t0" is not a task after this step');
    expect(msg).toContain('steps[1].agent: unknown agent "bob"');
    expect(msg).toContain('steps[1].uses: "nope" is not a grant or delegation declared before this step');
    expect(msg).toContain('steps[3].parent: "d" is delegated from "g": name the task that used "g" as parent');
    expect(msg).toContain('invariants[0]: unknown task "ghost"');
  });
  it("reads the malformed tamper and revocations during a task", () => {
    const s = parseScenario(
      base +
        "  - { revoke: g, during: t1, reason: leaked }\n" +
        "  - { task: t1, agent: alice, action: read, resource: r/x, uses: g, tamper: [{ malformed: duplicate-key }, { malformed: wrong-kind }], expect: { denied: MALFORMED } }\n" +
        "  - { revokeKey: alice, during: t2 }\n" +
        "  - { task: t2, agent: alice, action: read, resource: r/x, uses: g, expect: { denied: REVOKED } }\n",
    );
    expect(s.steps[0]).toEqual({ kind: "revoke", target: "g", reason: "leaked", during: "t1" });
    expect((s.steps[1] as TaskStep).tamper).toEqual([
      { kind: "malformed", how: "duplicate-key" },
      { kind: "malformed", how: "wrong-kind" },
    ]);
    expect(s.steps[2]).toEqual({ kind: "revokeKey", principal: "alice", reason: "key revoked in scenario", during: "t2" });
    expect(problems(base + task.replace("expect:", "tamper: [{ malformed: oversized }], expect:"))).toMatch(/steps\[0\]\.tamper\[0\]: expected .*malformed: wrong-kind\|duplicate-key/);
  });
  it("checks a revocation's during: a later task, one during step per task", () => {
    const msg = problems(
      base +
        task +
        "  - { revoke: g, during: t1 }\n" +
        "  - { revokeKey: alice, during: t2 }\n" +
        "  - { fault: audit-store-failure, during: t2 }\n" +
        "  - { task: t2, agent: alice, action: read, resource: r/x, uses: g, expect: executed }\n",
    );
    expect(msg).toContain('steps[1].during: "t1" is not a task after this step');
    expect(msg).toContain('steps[3].during: steps[2] already waits for "t2": one fault or revocation per task');
  });
  it("needs validFor or expiresAt on a grant", () => {
    expect(problems(base.replace(", validFor: 1h", "") + task)).toContain("grants[0]: a grant needs validFor or expiresAt");
  });
  it("gathers the problems of every file of a directory", async () => {
    const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const dir = await mkdtemp(join(tmpdir(), "scenarios-"));
    try {
      await writeFile(join(dir, "a.yaml"), base + "  - { tsak: t1 }\n");
      await writeFile(join(dir, "b.yml"), base.replace("name: t", "name: u") + "  - { advance: soon }\n");
      await writeFile(join(dir, "ignored.txt"), "not a scenario");
      let message = "";
      try {
        loadScenarios(dir);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message.split("\n")).toEqual([
        `${join(dir, "a.yaml")}:8: steps[0]: a step needs one of: task, replay, concurrently, grant, delegate, revoke, revokeKey, advance, changeAgent, fault, heal`,
        `${join(dir, "b.yml")}:8: steps[0].advance: expected a duration like 500ms, 30s, 10m, 1h, 2d or 1h30m, got "soon"`,
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
