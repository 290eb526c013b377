// DESIGN §4, proven rather than hoped: walk every simple path of the task machine's graph
// under an event alphabet that includes every actor's done (good and bad outputs) and error
// event, the evidence deadline and every governance event, then run the machine for real
// with stub actors. The generated diagram in docs/ is checked against the machine here too.
import { readFileSync } from "node:fs";
import { getAdjacencyMap, getShortestPaths, getSimplePaths, serializeSnapshot } from "@xstate/graph";
import type { StatePath } from "@xstate/graph";
import { SimulatedClock, createActor, fromPromise, initialTransition, toPromise, transition } from "xstate";
import type { AnyEventObject, AnyStateMachine, SnapshotFrom } from "xstate";
import { describe, expect, it } from "vitest";
import { DENIAL_CODES } from "../../src/core/types.ts";
import type { Decision, DenialCode } from "../../src/core/types.ts";
import { machineToMermaid, taskMachineDoc } from "../../src/gateway/machine-diagram.ts";
import { TASK_STATES, taskMachine } from "../../src/gateway/task-machine.ts";
import type {
  CollectEvidenceInput,
  CommitAllowInput,
  CommitResult,
  DenialInfo,
  Evidence,
  ExecuteInput,
  ExecutionResult,
  RecordOutcomeInput,
  TaskEvent,
  TaskMachineOutput,
  VerifyInput,
  VerifyResult,
} from "../../src/gateway/task-machine.ts";

type Snap = SnapshotFrom<typeof taskMachine>;
type Path = StatePath<Snap, AnyEventObject>;

const INPUT = { taskId: "task-1", evidenceDeadlineMs: 1_000 };
const DEADLINE = "xstate.after.evidenceDeadline.task.collecting";
const done = (id: string, output: unknown): AnyEventObject => ({ type: `xstate.done.actor.${id}`, output });
const fail = (id: string, error: unknown): AnyEventObject => ({ type: `xstate.error.actor.${id}`, error });

const EVIDENCE: Evidence = { request: { r: 1 }, args: { a: 1 }, chain: [{ c: 1 }], lineage: [{ l: 1 }], intakeErrors: [] };
const ALLOW: VerifyResult = {
  decision: {
    verdict: "allow",
    checks: [
      { check: "schema", ok: true },
      { check: "nonce", ok: true },
    ],
    reasons: [],
  },
  input: { recorded: true },
};
const deny = (decision: Partial<Decision> | Record<string, unknown>): unknown => ({ decision, input: {} });
const VERIFY_OUTPUTS: Record<string, unknown> = {
  allow: ALLOW,
  denyRevoked: deny({
    verdict: "deny",
    checks: [{ check: "revocation", ok: false, code: "REVOKED", detail: "artifact revoked" }],
    reasons: ["REVOKED"],
  }),
  denyNoReasons: deny({ verdict: "deny", checks: [], reasons: [] }),
  allowMissingFields: deny({ verdict: "allow" }),
  allowFailedCheck: deny({ verdict: "allow", checks: [{ check: "nonce", ok: false, code: "REPLAYED" }], reasons: [] }),
  allowWithReason: deny({ verdict: "allow", checks: [{ check: "nonce", ok: true }], reasons: ["REPLAYED"] }),
  allowNoChecks: deny({ verdict: "allow", checks: [], reasons: [] }),
  // A hole passes Array.prototype.every: an "allow" whose one check is missing.
  allowSparseChecks: deny({ verdict: "allow", checks: new Array(1), reasons: [] }),
  empty: {},
};
const COMMIT: CommitResult = { decisionId: "d-1", seq: 7 };

/** The test's own idea of a valid allow, independent of the machine's guard. */
function isFullyValidAllow(x: unknown): boolean {
  return JSON.stringify(x) === JSON.stringify(ALLOW);
}

const GOVERNANCE: AnyEventObject[] = [
  { type: "BUS_LOST" },
  { type: "AUDIT_FAILED", detail: "disk full" },
  { type: "REVOKED", detail: "artifact a-1" },
  { type: "ABORT", detail: "shutdown" },
];
const GOVERNANCE_TYPES = new Set(GOVERNANCE.map((e) => e.type));

// Every event is offered in every state, so "unknown events are ignored" is exercised too.
const ALPHABET: AnyEventObject[] = [
  done("collectEvidence", EVIDENCE),
  done("collectEvidence", {}),
  fail("collectEvidence", new Error("bus read failed")),
  { type: DEADLINE },
  ...Object.values(VERIFY_OUTPUTS).map((o) => done("verify", o)),
  fail("verify", new Error("nonce store down")),
  done("commitAllow", COMMIT),
  done("commitAllow", {}),
  fail("commitAllow", new Error("fsync failed")),
  done("execute", { status: "succeeded", resultDigest: "abc" }),
  done("execute", { status: "failed", error: "handler threw" }),
  done("execute", {}),
  fail("execute", new Error("actor crashed")),
  done("recordOutcome", undefined),
  fail("recordOutcome", new Error("audit write failed")),
  done("recordDenial", undefined),
  fail("recordDenial", new Error("audit write failed")),
  ...GOVERNANCE,
  { type: "EXECUTE_NOW" },
  { type: "xstate.done.actor.somethingElse", output: ALLOW },
];

const traversal = { input: INPUT, events: ALPHABET };
// The graph tools are typed for the machine's own events; the alphabet deliberately holds
// XState's internal done/error/after events and unknown ones as well.
const graphLogic: AnyStateMachine = taskMachine;
const step = (s: Snap, e: AnyEventObject): Snap => transition(taskMachine, s, e as TaskEvent)[0];

const stateOf = (s: Snap): string => String(s.value);

/**
 * DESIGN §4 as a predicate over one walked path: each entry into `executing` must come from
 * `committing` on a well-formed commit receipt with no governance event while committing, after
 * `verifying` → `committing` on a verify result the test itself judges a valid allow, after
 * `collecting` → `verifying` on evidence.
 */
function executingViolations(walked: Path[]): { entries: number; violations: string[] } {
  let entries = 0;
  const violations: string[] = [];
  for (const path of walked) {
    const steps = path.steps;
    const trace = (): string => steps.map((s) => `${s.event.type}→${stateOf(s.state)}`).join(" ");
    const entered = (from: string, to: string, n: number): boolean =>
      n > 0 && stateOf(steps[n]!.state) === to && stateOf(steps[n - 1]!.state) === from;
    for (let k = 1; k < steps.length; k++) {
      if (stateOf(steps[k]!.state) !== "executing" || stateOf(steps[k - 1]!.state) === "executing") continue;
      entries++;
      const i = steps.findIndex((_, n) => entered("collecting", "verifying", n));
      const j = steps.findIndex((_, n) => entered("verifying", "committing", n));
      const problems = [
        stateOf(steps[k - 1]!.state) !== "committing" && "not entered from committing",
        JSON.stringify(steps[k]!.event) !== JSON.stringify(done("commitAllow", COMMIT)) && "no valid commit receipt",
        (i < 1 || JSON.stringify(steps[i]!.event) !== JSON.stringify(done("collectEvidence", EVIDENCE))) &&
          "no evidence collected",
        (j < 1 || j < i || steps[j]!.event.type !== "xstate.done.actor.verify" ||
          !isFullyValidAllow(steps[j]!.event["output"])) && "no valid allow decision",
        steps.slice(j + 1, k).some((s) => GOVERNANCE_TYPES.has(s.event.type)) && "governance event while committing",
      ].filter((p): p is string => p !== false);
      for (const p of problems) violations.push(`${p}: ${trace()}`);
    }
  }
  return { entries, violations };
}

describe("task machine graph: every simple path", () => {
  const paths = getSimplePaths(graphLogic, traversal) as Path[];
  const terminal = paths.filter((p) => p.state.status === "done");

  it("covers every state and a non-trivial number of paths", () => {
    const seen = new Set(paths.flatMap((p) => p.steps.map((s) => stateOf(s.state))));
    expect([...seen].sort()).toEqual([...TASK_STATES].sort());
    // Pinned on purpose: a change in these counts means the machine's graph changed shape, and
    // whoever changed it should look at which paths appeared or vanished. 76 terminal paths =
    // 14 denied from collecting + 26 from verifying + 28 from committing (24 after a flag) + 8 outcomes.
    expect(paths.length).toBe(122);
    expect(terminal.length).toBe(76);
    const finals = terminal.map((p) => stateOf(p.state));
    expect(finals.filter((f) => f === "denied")).toHaveLength(68);
    expect(finals.filter((f) => f === "completed")).toHaveLength(1);
    expect(finals.filter((f) => f === "failed")).toHaveLength(7);
  });

  it("every path into executing went verifying --(valid allow)--> committing --(commit done, no flag)--> executing", () => {
    const { entries, violations } = executingViolations(paths);
    expect(violations).toEqual([]);
    expect(entries).toBeGreaterThan(0);
  });

  it("the check has teeth: a machine whose guards wave things through is caught", () => {
    const sloppyVerify = taskMachine.provide({ guards: { decisionAllows: () => true } });
    const sloppyCommit = taskMachine.provide({ guards: { stillAuthorized: () => true } });
    for (const sloppy of [sloppyVerify, sloppyCommit]) {
      // Shortest paths (one per reachable state) keep this fast; simple paths of a sloppy
      // machine multiply because every bad output then opens a new branch.
      const found = executingViolations(getShortestPaths(sloppy as AnyStateMachine, traversal) as Path[]);
      expect(found.violations.length).toBeGreaterThan(0);
    }
  });

  it("states only ever move forward along the contract's edges", () => {
    const allowed = new Set([
      "collecting>verifying",
      "collecting>denying",
      "verifying>committing",
      "verifying>denying",
      "committing>executing",
      "committing>denying",
      "executing>recordingOutcome",
      "recordingOutcome>completed",
      "recordingOutcome>failed",
      "denying>denied",
    ]);
    for (const path of paths) {
      for (let k = 1; k < path.steps.length; k++) {
        const from = stateOf(path.steps[k - 1]!.state);
        const to = stateOf(path.steps[k]!.state);
        if (from !== to) expect(allowed, `${from} -> ${to}`).toContain(`${from}>${to}`);
      }
    }
  });

  it("every path ending in a final state: completed/failed only after executing, otherwise denied with codes", () => {
    for (const path of terminal) {
      const final = stateOf(path.state);
      const visited = path.steps.map((s) => stateOf(s.state));
      const output = path.state.output as TaskMachineOutput;
      if (final === "completed" || final === "failed") {
        expect(visited).toContain("executing");
        expect(output.verdict).toBe("allow");
        continue;
      }
      expect(final).toBe("denied");
      expect(visited).not.toContain("executing");
      expect(output.verdict).toBe("deny");
      if (output.verdict !== "deny") continue;
      expect(output.codes.length).toBeGreaterThan(0);
      for (const c of output.codes) expect(DENIAL_CODES).toContain(c);
      const events = path.steps.map((s) => s.event.type);
      if (events.includes(DEADLINE)) expect(output.codes).toEqual(["NO_ARTIFACT"]);
      if (events.includes("REVOKED")) expect(output.codes).toContain("REVOKED");
    }
  });

  it("completed only when the handler reported success and the outcome was recorded", () => {
    for (const path of terminal.filter((p) => stateOf(p.state) === "completed")) {
      const events = path.steps.map((s) => s.event);
      expect(events).toContainEqual(done("execute", { status: "succeeded", resultDigest: "abc" }));
      expect(events.at(-1)).toEqual(done("recordOutcome", undefined));
    }
  });

  it("from every reachable non-final state a deny or an outcome is reachable; unknown events change nothing", () => {
    const adjacency = getAdjacencyMap(graphLogic, traversal) as Record<
      string,
      { state: Snap; transitions: Record<string, { event: AnyEventObject; state: Snap }> }
    >;
    const canFinish = new Set<string>();
    let grew = true;
    while (grew) {
      grew = false;
      for (const [key, { state, transitions }] of Object.entries(adjacency)) {
        if (canFinish.has(key)) continue;
        const next = Object.values(transitions).map((t) => serializeSnapshot(t.state));
        if (state.status === "done" || next.some((n) => canFinish.has(n))) {
          canFinish.add(key);
          grew = true;
        }
      }
    }
    expect(canFinish.size).toBe(Object.keys(adjacency).length);
    for (const { state, transitions } of Object.values(adjacency)) {
      for (const t of Object.values(transitions)) {
        if (t.event.type === "EXECUTE_NOW" || t.event.type === "xstate.done.actor.somethingElse") {
          expect(serializeSnapshot(t.state)).toBe(serializeSnapshot(state));
        }
      }
      // Pending states are never more than one event away from denying.
      if (state.hasTag("pending")) {
        expect(Object.values(transitions).some((t) => stateOf(t.state) === "denying")).toBe(true);
      }
    }
  });

  it("with an invalid input every path ends denied", () => {
    for (const input of [{ ...INPUT, taskId: "" }, { ...INPUT, evidenceDeadlineMs: -1 }]) {
      const walked = getSimplePaths(graphLogic, { input, events: ALPHABET }) as Path[];
      const ends = walked.filter((p) => p.state.status === "done");
      expect(ends.length).toBeGreaterThan(0);
      for (const p of ends) expect(p.state.output).toMatchObject({ verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"] });
      expect(walked.every((p) => p.steps.every((s) => !["verifying", "executing"].includes(stateOf(s.state))))).toBe(true);
    }
  });

  it("no path reaches executing from collecting or verifying directly", () => {
    const [s0] = initialTransition(taskMachine, INPUT);
    for (const e of ALPHABET) expect(stateOf(step(s0, e))).not.toBe("executing");
    const s1 = step(s0, done("collectEvidence", EVIDENCE));
    expect(stateOf(s1)).toBe("verifying");
    for (const e of ALPHABET) expect(stateOf(step(s1, e))).not.toBe("executing");
  });
});

// --- the machine run for real, with stub actors -------------------------------------------

interface Calls {
  order: string[];
  denials: DenialInfo[];
  executed: ExecuteInput[];
  outcomes: RecordOutcomeInput[];
}

type Stub<I, O> = (input: I) => Promise<O>;
interface Overrides {
  collectEvidence?: Stub<CollectEvidenceInput, Evidence>;
  verify?: Stub<VerifyInput, VerifyResult>;
  commitAllow?: Stub<CommitAllowInput, CommitResult>;
  execute?: Stub<ExecuteInput, ExecutionResult>;
  recordDenial?: Stub<DenialInfo, void>;
  recordOutcome?: Stub<RecordOutcomeInput, void>;
}

function wired(over: Overrides, calls: Calls) {
  const track =
    <I, O>(name: string, fallback: Stub<I, O>, given?: Stub<I, O>) =>
    ({ input }: { input: I }) => {
      calls.order.push(name);
      return (given ?? fallback)(input);
    };
  return taskMachine.provide({
    actors: {
      collectEvidence: fromPromise<Evidence, CollectEvidenceInput>(
        track("collectEvidence", () => Promise.resolve(EVIDENCE), over.collectEvidence),
      ),
      verify: fromPromise<VerifyResult, VerifyInput>(track("verify", () => Promise.resolve(ALLOW), over.verify)),
      commitAllow: fromPromise<CommitResult, CommitAllowInput>(
        track("commitAllow", () => Promise.resolve(COMMIT), over.commitAllow),
      ),
      execute: fromPromise<ExecutionResult, ExecuteInput>(
        track(
          "execute",
          (input: ExecuteInput) => {
            calls.executed.push(input);
            return Promise.resolve<ExecutionResult>({ status: "succeeded", resultDigest: "r" });
          },
          over.execute,
        ),
      ),
      recordDenial: fromPromise<void, DenialInfo>(
        track(
          "recordDenial",
          (input: DenialInfo) => {
            calls.denials.push(input);
            return Promise.resolve();
          },
          over.recordDenial,
        ),
      ),
      recordOutcome: fromPromise<void, RecordOutcomeInput>(
        track(
          "recordOutcome",
          (input: RecordOutcomeInput) => {
            calls.outcomes.push(input);
            return Promise.resolve();
          },
          over.recordOutcome,
        ),
      ),
    },
  });
}

async function run(over: Overrides = {}, during?: (send: (e: AnyEventObject) => void) => void) {
  const calls: Calls = { order: [], denials: [], executed: [], outcomes: [] };
  const actor = createActor(wired(over, calls), { input: INPUT });
  const finished = toPromise(actor);
  actor.start();
  during?.((e) => actor.send(e as never));
  const output = await finished;
  return { output, calls, snapshot: actor.getSnapshot() };
}

const never = <T,>(): Promise<T> => new Promise<T>(() => {});
const rejecting = <T,>(message: string) => (): Promise<T> => Promise.reject(new Error(message));
const later = <T,>(value: T, ms = 5) => (): Promise<T> => new Promise<T>((r) => setTimeout(() => r(value), ms));

async function expectDenied(over: Overrides, codes: DenialCode[], during?: (send: (e: AnyEventObject) => void) => void) {
  const { output, calls, snapshot } = await run(over, during);
  expect(snapshot.value).toBe("denied");
  expect(output).toMatchObject({ verdict: "deny", codes });
  expect(calls.order).not.toContain("execute");
  expect(calls.denials).toHaveLength(1);
  expect(calls.denials[0]!.codes).toEqual(codes);
  return { output, calls };
}

describe("task machine with real actors", () => {
  it("happy path: collect → verify → commit → execute → record outcome → completed", async () => {
    const { output, calls } = await run();
    expect(calls.order).toEqual(["collectEvidence", "verify", "commitAllow", "execute", "recordOutcome"]);
    expect(output).toEqual({
      verdict: "allow",
      status: "completed",
      result: { status: "succeeded", resultDigest: "r" },
      commit: COMMIT,
      outcomeError: undefined,
    });
    expect(calls.executed[0]).toEqual({ taskId: "task-1", evidence: EVIDENCE, verify: ALLOW, commit: COMMIT });
  });

  it("with the default (unprovided) actors the task is denied", async () => {
    const actor = createActor(taskMachine, { input: INPUT });
    const finished = toPromise(actor);
    actor.start();
    const output = await finished;
    expect(actor.getSnapshot().value).toBe("denied");
    expect(output).toMatchObject({ verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"] });
  });

  it("evidence deadline → NO_ARTIFACT (simulated clock)", async () => {
    const clock = new SimulatedClock();
    const calls: Calls = { order: [], denials: [], executed: [], outcomes: [] };
    const actor = createActor(wired({ collectEvidence: never }, calls), { input: INPUT, clock });
    const finished = toPromise(actor);
    actor.start();
    clock.increment(999);
    expect(actor.getSnapshot().value).toBe("collecting");
    clock.increment(1);
    const output = await finished;
    expect(output).toMatchObject({ verdict: "deny", codes: ["NO_ARTIFACT"] });
    expect(calls.order).toEqual(["collectEvidence", "recordDenial"]);
  });

  it("the deadline stops counting once evidence is in", async () => {
    const clock = new SimulatedClock();
    const calls: Calls = { order: [], denials: [], executed: [], outcomes: [] };
    const actor = createActor(wired({ verify: never }, calls), { input: INPUT, clock });
    actor.start();
    await new Promise((r) => setTimeout(r, 5));
    expect(actor.getSnapshot().value).toBe("verifying");
    clock.increment(10_000);
    expect(actor.getSnapshot().value).toBe("verifying");
    actor.stop();
  });

  it("a zero deadline denies NO_ARTIFACT at once", async () => {
    const calls: Calls = { order: [], denials: [], executed: [], outcomes: [] };
    const actor = createActor(wired({ collectEvidence: never }, calls), { input: { ...INPUT, evidenceDeadlineMs: 0 } });
    const finished = toPromise(actor);
    actor.start();
    expect(await finished).toMatchObject({ codes: ["NO_ARTIFACT"] });
  });

  it("an invalid input denies without starting the collector (and never throws)", async () => {
    const bad: unknown[] = [
      { ...INPUT, evidenceDeadlineMs: -5 },
      { ...INPUT, evidenceDeadlineMs: Number.NaN },
      { ...INPUT, evidenceDeadlineMs: Number.POSITIVE_INFINITY },
      { ...INPUT, taskId: "" },
      { taskId: 42, evidenceDeadlineMs: 10 },
      undefined,
      null,
    ];
    for (const input of bad) {
      const calls: Calls = { order: [], denials: [], executed: [], outcomes: [] };
      const actor = createActor(wired({}, calls), { input: input as typeof INPUT });
      const finished = toPromise(actor);
      actor.start();
      expect(await finished).toMatchObject({ verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"] });
      expect(calls.order).toEqual(["recordDenial"]);
    }
  });

  it("collectEvidence rejects or returns malformed evidence → GOVERNANCE_UNAVAILABLE", async () => {
    const { output } = await expectDenied({ collectEvidence: rejecting("bus read") }, ["GOVERNANCE_UNAVAILABLE"]);
    expect(output).toMatchObject({ detail: "collectEvidence failed: bus read" });
    await expectDenied({ collectEvidence: () => Promise.resolve({} as Evidence) }, ["GOVERNANCE_UNAVAILABLE"]);
  });

  it("verify rejects → GOVERNANCE_UNAVAILABLE", async () => {
    await expectDenied({ verify: rejecting("nonce store down") }, ["GOVERNANCE_UNAVAILABLE"]);
  });

  it("a deny decision → its reason codes; the deny record carries the decision", async () => {
    const decision = VERIFY_OUTPUTS["denyRevoked"] as VerifyResult;
    const { calls } = await expectDenied({ verify: () => Promise.resolve(decision) }, ["REVOKED"]);
    expect(calls.denials[0]).toMatchObject({ taskId: "task-1", evidence: EVIDENCE, verify: decision, commit: undefined });
    expect(calls.denials[0]!.detail).toContain("artifact revoked");
  });

  it("contradictory or malformed decisions deny, never allow", async () => {
    const cases: [string, DenialCode[]][] = [
      ["denyNoReasons", ["GOVERNANCE_UNAVAILABLE"]],
      ["allowMissingFields", ["GOVERNANCE_UNAVAILABLE"]],
      ["allowFailedCheck", ["REPLAYED"]],
      ["allowWithReason", ["REPLAYED"]],
      ["allowNoChecks", ["GOVERNANCE_UNAVAILABLE"]],
      ["allowSparseChecks", ["GOVERNANCE_UNAVAILABLE"]],
      ["empty", ["GOVERNANCE_UNAVAILABLE"]],
    ];
    for (const [name, codes] of cases) {
      await expectDenied({ verify: () => Promise.resolve(VERIFY_OUTPUTS[name] as VerifyResult) }, codes);
    }
  });

  it("commitAllow rejects or returns a malformed receipt → GOVERNANCE_UNAVAILABLE", async () => {
    await expectDenied({ commitAllow: rejecting("fsync") }, ["GOVERNANCE_UNAVAILABLE"]);
    await expectDenied({ commitAllow: () => Promise.resolve({ seq: 1 } as CommitResult) }, ["GOVERNANCE_UNAVAILABLE"]);
  });

  it("governance events before the commit deny at once", async () => {
    const cases: [AnyEventObject, DenialCode][] = [
      [{ type: "REVOKED", detail: "a-1" }, "REVOKED"],
      [{ type: "BUS_LOST" }, "GOVERNANCE_UNAVAILABLE"],
      [{ type: "AUDIT_FAILED", detail: "disk" }, "GOVERNANCE_UNAVAILABLE"],
      [{ type: "ABORT", detail: "shutdown" }, "GOVERNANCE_UNAVAILABLE"],
    ];
    for (const [event, code] of cases) {
      await expectDenied({ collectEvidence: never }, [code], (send) => send(event));
      const { calls } = await expectDenied({ verify: never }, [code], (send) => {
        setTimeout(() => send(event), 5);
      });
      expect(calls.order).toEqual(["collectEvidence", "verify", "recordDenial"]);
    }
  });

  it("a governance event while committing lets the write finish, then denies and names the commit", async () => {
    const { calls } = await expectDenied({ commitAllow: later(COMMIT, 20) }, ["REVOKED"], (send) => {
      setTimeout(() => send({ type: "REVOKED", detail: "a-1" }), 5);
      setTimeout(() => send({ type: "BUS_LOST" }), 6);
    });
    expect(calls.order).toEqual(["collectEvidence", "verify", "commitAllow", "recordDenial"]);
    expect(calls.denials[0]!.commit).toEqual(COMMIT);
    expect(calls.denials[0]!.verify).toEqual(ALLOW);
  });

  it("governance events during execution do not interrupt the handler", async () => {
    const { output, calls } = await run({ execute: later({ status: "succeeded" }, 20) }, (send) => {
      setTimeout(() => send({ type: "REVOKED", detail: "late" }), 10);
    });
    expect(output).toMatchObject({ verdict: "allow", status: "completed" });
    expect(calls.denials).toHaveLength(0);
  });

  it("a failed handler, a rejecting execute actor or a malformed result end failed, never completed", async () => {
    for (const execute of [
      () => Promise.resolve({ status: "failed", error: "boom" } as ExecutionResult),
      rejecting<ExecutionResult>("actor crashed"),
      () => Promise.resolve({ status: "ok" } as unknown as ExecutionResult),
    ]) {
      const { output, calls } = await run({ execute });
      expect(output).toMatchObject({ verdict: "allow", status: "failed" });
      expect(calls.outcomes[0]!.result.status).toBe("failed");
    }
  });

  it("recordOutcome rejecting ends failed even after a successful handler", async () => {
    const { output } = await run({ recordOutcome: rejecting("audit") });
    expect(output).toMatchObject({ status: "failed", outcomeError: "recordOutcome failed: audit" });
  });

  it("recordDenial rejecting still ends denied", async () => {
    const { output, snapshot } = await run({ verify: rejecting("x"), recordDenial: rejecting("audit") });
    expect(snapshot.value).toBe("denied");
    expect(output).toMatchObject({ verdict: "deny" });
  });
});

describe("task machine diagram", () => {
  it("names every state", () => {
    const mermaid = machineToMermaid(taskMachine);
    expect(mermaid.startsWith("stateDiagram-v2\n")).toBe(true);
    for (const s of TASK_STATES) expect(mermaid).toMatch(new RegExp(`^\\s+${s}\\b`, "m"));
    expect(mermaid).toContain("[*] --> collecting");
    expect(mermaid).toContain("verifying --> committing : verify done if decisionAllows");
    expect(mermaid).toContain("committing --> executing : commitAllow done if stillAuthorized");
  });

  it("docs/task-machine.md is up to date (run `npx tsx scripts/machine-diagram.ts`)", () => {
    const committed = readFileSync(new URL("../../docs/task-machine.md", import.meta.url), "utf8");
    expect(committed).toBe(taskMachineDoc());
  });
});

describe("README", () => {
  it("shows the state machine as generated from the machine", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const doc = readFileSync(new URL("../../docs/task-machine.md", import.meta.url), "utf8");
    const block = (t: string) => /```mermaid\n[\s\S]*?```/.exec(t)?.[0];
    expect(block(doc)).toBeDefined();
    expect(block(readme)).toBe(block(doc));
  });
});
