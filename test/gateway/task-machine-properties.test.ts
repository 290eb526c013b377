// DESIGN §4, property side: fire random event sequences — actor completions with random and
// malformed outputs, actor errors with odd error values, deadlines, governance events, unknown
// events — at the pure `transition` of the task machine and check that `executing` is reached
// only after a valid allow decision and a commit receipt, in that order, with nothing flagged.
//
// Runs: FAILCLOSED_MACHINE_RUNS (default 2000, for CI). The full run is 100000:
//   FAILCLOSED_MACHINE_RUNS=100000 npx vitest run test/gateway/task-machine-properties.test.ts
import fc from "fast-check";
import { initialTransition, transition } from "xstate";
import type { AnyEventObject, SnapshotFrom } from "xstate";
import { describe, expect, it } from "vitest";
import { DENIAL_CODES } from "../../src/core/types.ts";
import { taskMachine } from "../../src/gateway/task-machine.ts";
import type { TaskEvent, TaskMachineOutput } from "../../src/gateway/task-machine.ts";

const RUNS = Number(process.env["FAILCLOSED_MACHINE_RUNS"] ?? 2000);
// Generous: the full 100000-run pass is meant to finish, not to race a default timeout.
const TIMEOUT_MS = Math.max(60_000, RUNS * 10);

type Snap = SnapshotFrom<typeof taskMachine>;
const INPUT = { taskId: "task-p", evidenceDeadlineMs: 1_000 };
const DEADLINE = "xstate.after.evidenceDeadline.task.collecting";
const GOVERNANCE = new Set(["BUS_LOST", "AUDIT_FAILED", "REVOKED", "ABORT"]);

const done = (id: string, output: unknown): AnyEventObject => ({ type: `xstate.done.actor.${id}`, output });
const fail = (id: string, error: unknown): AnyEventObject => ({ type: `xstate.error.actor.${id}`, error });

// --- the test's own judgement of step outputs (independent of the machine's guards) --------

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const codeOk = (c: unknown): boolean => c === undefined || (DENIAL_CODES as readonly unknown[]).includes(c);

/** Like `every`, but holes count (they are `undefined`, which no test here accepts). */
function allOf(x: unknown, test: (item: unknown) => boolean): boolean {
  return Array.isArray(x) && Array.from(x as unknown[]).every(test);
}

function validEvidence(x: unknown): boolean {
  return (
    isObj(x) &&
    "request" in x &&
    "args" in x &&
    Array.isArray(x["chain"]) &&
    Array.isArray(x["lineage"]) &&
    allOf(x["intakeErrors"], (e) => typeof e === "string")
  );
}

/** DESIGN §3: allow only when every check passed, with no reasons; anything less is not an allow. */
function validAllow(x: unknown): boolean {
  if (!isObj(x) || !("input" in x) || !isObj(x["decision"])) return false;
  const d = x["decision"];
  const checks = d["checks"];
  const reasons = d["reasons"];
  return (
    d["verdict"] === "allow" &&
    Array.isArray(reasons) &&
    reasons.length === 0 &&
    Array.isArray(checks) &&
    checks.length > 0 &&
    allOf(
      checks,
      (c) =>
        isObj(c) &&
        typeof c["check"] === "string" &&
        c["ok"] === true &&
        codeOk(c["code"]) &&
        (c["detail"] === undefined || typeof c["detail"] === "string"),
    )
  );
}

function validReceipt(x: unknown): boolean {
  return (
    isObj(x) &&
    typeof x["decisionId"] === "string" &&
    x["decisionId"] !== "" &&
    Number.isSafeInteger(x["seq"]) &&
    (x["seq"] as number) >= 0
  );
}

// --- generators ---------------------------------------------------------------------------

const EVIDENCE = { request: { r: 1 }, args: {}, chain: [{}], lineage: [{}], intakeErrors: [] };
const ALLOW = {
  decision: { verdict: "allow", checks: [{ check: "schema", ok: true }], reasons: [] },
  input: {},
};

/** `[a, <hole>, b]`: what a sparse literal would give, without the lint complaint. */
function withHole(items: [unknown, unknown]): unknown[] {
  const out: unknown[] = [items[0]];
  out[2] = items[1];
  return out;
}

const oddValue = fc.oneof(
  fc.anything(),
  fc.constantFrom<unknown>(undefined, null, {}, [], "", 0, Number.NaN, Object.create(null), new Error("e")),
);

const evidenceOut = fc.oneof(
  { weight: 6, arbitrary: fc.constant<unknown>(EVIDENCE) },
  {
    weight: 2,
    arbitrary: fc.record({
      request: oddValue,
      args: oddValue,
      chain: fc.oneof(fc.array(oddValue, { maxLength: 2 }), oddValue),
      lineage: fc.oneof(fc.array(oddValue, { maxLength: 2 }), oddValue),
      intakeErrors: fc.oneof(fc.array(fc.string(), { maxLength: 2 }), fc.array(oddValue, { maxLength: 2 })),
    }),
  },
  { weight: 1, arbitrary: oddValue },
);

const checkArb = fc.record(
  {
    check: fc.oneof(fc.constantFrom("schema", "nonce", "revocation"), oddValue),
    ok: fc.oneof({ weight: 4, arbitrary: fc.constant<unknown>(true) }, { weight: 1, arbitrary: oddValue }),
    code: fc.oneof(fc.constantFrom(...DENIAL_CODES), oddValue),
    detail: fc.oneof(fc.string(), oddValue),
  },
  { requiredKeys: ["check", "ok"] },
);

const decisionArb = fc.record(
  {
    verdict: fc.oneof({ weight: 4, arbitrary: fc.constantFrom<unknown>("allow", "deny") }, { weight: 1, arbitrary: oddValue }),
    checks: fc.oneof({ weight: 4, arbitrary: fc.array(checkArb, { maxLength: 4 }) }, { weight: 1, arbitrary: oddValue }),
    reasons: fc.oneof(
      { weight: 3, arbitrary: fc.constant<unknown>([]) },
      { weight: 2, arbitrary: fc.array(fc.constantFrom(...DENIAL_CODES), { maxLength: 3 }) },
      { weight: 1, arbitrary: oddValue },
    ),
  },
  { requiredKeys: [] },
);

const verifyOut = fc.oneof(
  { weight: 6, arbitrary: fc.constant<unknown>(ALLOW) },
  { weight: 4, arbitrary: fc.record({ decision: decisionArb, input: oddValue }, { requiredKeys: ["decision"] }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<unknown>(
      {},
      { decision: { verdict: "allow" } },
      { decision: { verdict: "allow", checks: [], reasons: [] }, input: {} },
      { decision: { verdict: "allow", checks: new Array(1), reasons: [] }, input: {} },
      { decision: { verdict: "allow", checks: withHole([{ check: "x", ok: true }, { check: "y", ok: true }]), reasons: [] }, input: {} },
      { decision: { verdict: "allow", checks: [{ check: "x", ok: "true" }], reasons: [] }, input: {} },
      { decision: { verdict: "deny", checks: [], reasons: [] }, input: {} },
      { decision: { verdict: "ALLOW", checks: [{ check: "x", ok: true }], reasons: [] }, input: {} },
    ),
  },
  { weight: 1, arbitrary: oddValue },
);

const receiptOut = fc.oneof(
  { weight: 6, arbitrary: fc.constant<unknown>({ decisionId: "d-1", seq: 3 }) },
  { weight: 2, arbitrary: fc.record({ decisionId: fc.oneof(fc.string(), oddValue), seq: fc.oneof(fc.integer(), oddValue) }) },
  { weight: 1, arbitrary: oddValue },
);

const executionOut = fc.oneof(
  fc.constant<unknown>({ status: "succeeded", resultDigest: "r" }),
  fc.record({ status: fc.oneof(fc.constantFrom("succeeded", "failed"), oddValue), error: oddValue }),
  oddValue,
);

const eventArb: fc.Arbitrary<AnyEventObject> = fc.oneof(
  { weight: 50, arbitrary: evidenceOut.map((o) => done("collectEvidence", o)) },
  { weight: 10, arbitrary: oddValue.map((e) => fail("collectEvidence", e)) },
  { weight: 10, arbitrary: fc.constant<AnyEventObject>({ type: DEADLINE }) },
  { weight: 60, arbitrary: verifyOut.map((o) => done("verify", o)) },
  { weight: 10, arbitrary: oddValue.map((e) => fail("verify", e)) },
  { weight: 50, arbitrary: receiptOut.map((o) => done("commitAllow", o)) },
  { weight: 10, arbitrary: oddValue.map((e) => fail("commitAllow", e)) },
  { weight: 20, arbitrary: executionOut.map((o) => done("execute", o)) },
  { weight: 10, arbitrary: oddValue.map((e) => fail("execute", e)) },
  { weight: 10, arbitrary: oddValue.map((o) => done("recordOutcome", o)) },
  { weight: 10, arbitrary: oddValue.map((e) => fail("recordOutcome", e)) },
  { weight: 10, arbitrary: oddValue.map((o) => done("recordDenial", o)) },
  { weight: 10, arbitrary: oddValue.map((e) => fail("recordDenial", e)) },
  {
    weight: 20,
    arbitrary: fc
      .tuple(fc.constantFrom("BUS_LOST", "AUDIT_FAILED", "REVOKED", "ABORT"), fc.oneof(fc.string(), oddValue))
      .map(([type, detail]) => ({ type, detail })),
  },
  {
    weight: 10,
    arbitrary: fc.oneof(
      fc.string().map((type) => ({ type })),
      fc.constantFrom<AnyEventObject>(
        { type: "EXECUTE" },
        { type: "xstate.done.actor.commitAllow.extra", output: { decisionId: "d", seq: 1 } },
        { type: "xstate.after.evidenceDeadline.task.verifying" },
        { type: "xstate.done.actor.execute", output: { status: "succeeded" } },
      ),
    ),
  },
  // XState itself refuses a wildcard event (it throws); kept rare so sequences run on.
  { weight: 1, arbitrary: fc.constant<AnyEventObject>({ type: "*" }) },
);

// Purely random sequences rarely line up the three good outputs, so half the sequences follow
// the happy path's skeleton — each step's output still random — with random noise between steps.
const noise = fc.array(eventArb, { maxLength: 3 });
const guided: fc.Arbitrary<AnyEventObject[]> = fc
  .tuple(
    evidenceOut,
    verifyOut,
    receiptOut,
    executionOut,
    fc.oneof(fc.constant<unknown>(undefined), oddValue),
    fc.array(noise, { minLength: 6, maxLength: 6 }),
  )
  .map(([evidence, verify, receipt, execution, recorded, gaps]) => {
    const skeleton = [
      done("collectEvidence", evidence),
      done("verify", verify),
      done("commitAllow", receipt),
      done("execute", execution),
      done("recordOutcome", recorded),
    ];
    return gaps.flatMap((gap, i) => [...gap, ...(i < skeleton.length ? [skeleton[i]!] : [])]);
  });
const sequences = fc.oneof(fc.array(eventArb, { maxLength: 24, size: "max" }), guided);

// --- the property -------------------------------------------------------------------------

const stateOf = (s: Snap): string => String(s.value);
type Machine = typeof taskMachine;
const step = (m: Machine, s: Snap, e: AnyEventObject): Snap => transition(m, s, e as TaskEvent)[0];

interface Tally {
  sequences: number;
  executed: number;
  completed: number;
  denied: number;
  refused: number;
}

// A plain throw, not `expect`, in the hot loop: 100000 sequences × ~12 steps each.
function invariant(ok: boolean, message: string, events: AnyEventObject[], n: number): asserts ok {
  if (!ok) throw new Error(`${message} (at event ${n}: ${JSON.stringify(events[n])})`);
}

const DENIAL_CODE_SET = new Set<string>(DENIAL_CODES);

/** Runs one sequence and throws on the first violated invariant. */
function checkSequence(machine: Machine, events: AnyEventObject[], tally: Tally): void {
  let [snap] = initialTransition(machine, INPUT);
  // Where (by event index) each stage was legitimately passed, per the test's own judgement.
  let evidenceAt = -1;
  let allowAt = -1;
  let flaggedSinceAllow = false;
  let executed = false;
  tally.sequences++;
  for (const [n, event] of events.entries()) {
    const check = (ok: boolean, message: string): void => invariant(ok, message, events, n);
    const before = stateOf(snap);
    const wasDone = snap.status === "done";
    let next: Snap;
    try {
      next = step(machine, snap, event);
    } catch (error) {
      // XState refuses a `*` event outright. In a running actor that is an actor error — the
      // machine stops where it was (never in executing by this event) and the gateway treats
      // an errored task actor as denied. Anything else thrown is a machine bug.
      check(event.type === "*" && String(error).includes("wildcard"), `transition threw: ${String(error)}`);
      tally.refused++;
      break;
    }
    const after = stateOf(next);
    const output: unknown = event["output"];

    if (wasDone) check(after === before, "a final state is final");
    if (before === "denying" || before === "denied") check(after === "denying" || after === "denied", "deny is one-way");
    if (before === "collecting" && after === "verifying") {
      check(validEvidence(output), "verifying only on well-formed evidence");
      evidenceAt = n;
    }
    if (before === "verifying" && after === "committing") {
      check(validAllow(output), "committing only on a fully valid allow");
      allowAt = n;
      flaggedSinceAllow = false;
    }
    if (before === "committing" && GOVERNANCE.has(event.type)) flaggedSinceAllow = true;
    if (after === "executing" && before !== "executing") {
      check(before === "committing", "executing only from committing");
      check(event.type === "xstate.done.actor.commitAllow", "executing only on the commit's completion");
      check(validReceipt(output), "executing only on a valid commit receipt");
      check(evidenceAt >= 0 && allowAt > evidenceAt, "executing only after evidence, then a valid allow");
      check(!flaggedSinceAllow, "nothing flagged while committing");
      executed = true;
    }
    if (next.hasTag("authorized")) check(executed, "authorized only after executing");
    if (after === "completed" || after === "failed") check(executed, "an outcome only after executing");
    if (after === "denied" && before !== "denied") {
      const out = next.output as TaskMachineOutput;
      check(out.verdict === "deny", "denied outputs a deny");
      if (out.verdict === "deny") {
        check(out.codes.length > 0 && out.codes.every((c) => DENIAL_CODE_SET.has(c)), "a deny names valid codes");
      }
      tally.denied++;
    }
    if (after === "completed" && before !== "completed") tally.completed++;
    snap = next;
  }
  if (executed) tally.executed++;
}

describe("task machine: random event sequences", () => {
  it(
    `never reaches executing without evidence, a valid allow and a commit receipt (${RUNS} runs)`,
    () => {
      const tally: Tally = { sequences: 0, executed: 0, completed: 0, denied: 0, refused: 0 };
      const started = performance.now();
      fc.assert(
        fc.property(sequences, (events) => {
          checkSequence(taskMachine, events, tally);
        }),
        { numRuns: RUNS },
      );
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(
        `task machine properties: ${RUNS} runs in ${seconds}s; ${tally.executed} reached executing, ` +
          `${tally.completed} completed, ${tally.denied} denied, ${tally.refused} refused by XState`,
      );
      // Not vacuous: a fair share of sequences does get through, so the guards are exercised
      // on both sides (fast-check's shrinking re-runs add to the tally, hence lower bounds only).
      expect(tally.executed).toBeGreaterThan(RUNS / 20);
      expect(tally.completed).toBeGreaterThan(0);
      expect(tally.denied).toBeGreaterThan(RUNS / 4);
    },
    TIMEOUT_MS,
  );

  it("the property has teeth: it catches a machine whose guards wave things through", () => {
    const sloppy = [
      taskMachine.provide({ guards: { decisionAllows: () => true } }),
      taskMachine.provide({ guards: { stillAuthorized: () => true } }),
      taskMachine.provide({ guards: { evidenceWellFormed: () => true } }),
    ];
    for (const machine of sloppy) {
      const tally: Tally = { sequences: 0, executed: 0, completed: 0, denied: 0, refused: 0 };
      const result = fc.check(
        fc.property(sequences, (events) => {
          checkSequence(machine, events, tally);
        }),
        { numRuns: 2000 },
      );
      expect(result.failed).toBe(true);
    }
  });

  it("malformed outputs named in the brief never open the way", () => {
    const [s0] = initialTransition(taskMachine, INPUT);
    const verifying = step(taskMachine, s0, done("collectEvidence", EVIDENCE));
    expect(stateOf(verifying)).toBe("verifying");
    for (const bad of [{}, { decision: { verdict: "allow" } }, { decision: { verdict: "allow", checks: [], reasons: [] } }]) {
      expect(stateOf(step(taskMachine, verifying, done("verify", bad)))).toBe("denying");
    }
    const committing = step(taskMachine, verifying, done("verify", ALLOW));
    expect(stateOf(committing)).toBe("committing");
    for (const bad of [{}, { decisionId: "", seq: 1 }, { decisionId: "d", seq: -1 }, null]) {
      expect(stateOf(step(taskMachine, committing, done("commitAllow", bad)))).toBe("denying");
    }
    expect(stateOf(step(taskMachine, committing, done("commitAllow", { decisionId: "d", seq: 0 })))).toBe("executing");
  });
});
