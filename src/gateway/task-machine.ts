// The governed task machine (DESIGN §4). One XState actor per task; the only way into
// `executing` is `collecting → verifying (allow) → committing (durable allow record)`. Every
// other path — timeouts, rejected steps, malformed step outputs, bus loss, audit failure,
// revocation, shutdown — ends in `denied`.
//
// Pure of I/O: every side effect is an invoked actor the gateway supplies with
// `taskMachine.provide({ actors })`. The defaults below reject, so a machine that was not
// wired up denies instead of running anything (fail closed).
import { assign, fromPromise, not, setup } from "xstate";
import { DENIAL_CODES } from "../core/types.ts";
import type { Decision, DenialCode } from "../core/types.ts";
import { assertNever } from "../infra/assert-never.ts";

export interface TaskMachineInput {
  taskId: string;
  evidenceDeadlineMs: number;
}

export interface Evidence {
  request: unknown;
  args: unknown;
  chain: unknown[];
  lineage: unknown[];
  intakeErrors: string[];
}

export interface VerifyResult {
  decision: Decision;
  /** recorded DecisionInput, JSON */
  input: unknown;
}

export interface CommitResult {
  decisionId: string;
  seq: number;
}

export interface ExecutionResult {
  status: "succeeded" | "failed";
  resultDigest?: string;
  error?: string;
}

export interface DenialInfo {
  taskId: string;
  codes: DenialCode[];
  detail: string;
  evidence: Evidence | undefined;
  verify: VerifyResult | undefined;
  commit: CommitResult | undefined;
}

export type TaskEvent =
  | { type: "BUS_LOST" } // NATS connection lost → deny GOVERNANCE_UNAVAILABLE
  | { type: "AUDIT_FAILED"; detail: string } // audit store reports failure → deny GOVERNANCE_UNAVAILABLE
  | { type: "REVOKED"; detail: string } // a revocation touching this task's chain arrived → deny REVOKED
  | { type: "ABORT"; detail: string }; // gateway shutting down → deny GOVERNANCE_UNAVAILABLE

export interface CollectEvidenceInput {
  taskId: string;
}
export interface VerifyInput {
  taskId: string;
  evidence: Evidence;
}
export interface CommitAllowInput {
  taskId: string;
  verify: VerifyResult;
}
export interface ExecuteInput {
  taskId: string;
  evidence: Evidence;
  verify: VerifyResult;
  commit: CommitResult;
}
export interface RecordOutcomeInput {
  taskId: string;
  commit: CommitResult;
  result: ExecutionResult;
}

/** A governance event that arrived while the allow record was being written. */
export interface TaskFlag {
  code: DenialCode;
  detail: string;
}

export interface TaskContext {
  taskId: string;
  evidenceDeadlineMs: number;
  evidence: Evidence | undefined;
  verify: VerifyResult | undefined;
  commit: CommitResult | undefined;
  result: ExecutionResult | undefined;
  denyCodes: DenialCode[];
  denyDetail: string;
  flagged: TaskFlag | undefined;
  /** Why recordOutcome rejected, if it did: the task then ends `failed` even if the handler succeeded. */
  outcomeError: string | undefined;
}

export type TaskMachineOutput =
  | { verdict: "deny"; codes: DenialCode[]; detail: string }
  | {
      verdict: "allow";
      status: "completed" | "failed";
      result: ExecutionResult | undefined;
      commit: CommitResult | undefined;
      outcomeError: string | undefined;
    };

/**
 * `pending`: not yet authorized. `authorized`: an allow decision is durably recorded, so the
 * handler may run or has run. `deny`: on the deny path. A gateway can ask `snapshot.hasTag(…)`.
 */
export type TaskTag = "pending" | "authorized" | "deny";

/** Invoke ids (= actor names), so done/error events are `xstate.done.actor.<id>` / `xstate.error.actor.<id>`. */
export const TASK_ACTORS = [
  "collectEvidence",
  "verify",
  "commitAllow",
  "execute",
  "recordDenial",
  "recordOutcome",
] as const;
export type TaskActorName = (typeof TASK_ACTORS)[number];

export const TASK_STATES = [
  "collecting",
  "verifying",
  "committing",
  "executing",
  "recordingOutcome",
  "completed",
  "failed",
  "denying",
  "denied",
] as const;
export type TaskStateName = (typeof TASK_STATES)[number];

export const TASK_MACHINE_ID = "task";

// Policy: the default actors reject. A gateway that forgets to provide one gets a deny
// (or a `failed` outcome), never a silent success.
function notProvided(name: TaskActorName): () => Promise<never> {
  return () => Promise.reject(new Error(`task actor "${name}" not provided`));
}

const DENIAL_CODE_SET: ReadonlySet<string> = new Set(DENIAL_CODES);

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isDenialCode(x: unknown): x is DenialCode {
  return typeof x === "string" && DENIAL_CODE_SET.has(x);
}

/**
 * `Array.prototype.every` skips holes, so `new Array(1)` would pass any test: an "allow" whose
 * only check is a hole. Every index is visited here instead.
 */
function everyIndex(x: unknown, test: (item: unknown) => boolean): x is unknown[] {
  if (!Array.isArray(x)) return false;
  for (let i = 0; i < x.length; i++) if (!test(x[i])) return false;
  return true;
}

function isStringArray(x: unknown): x is string[] {
  return everyIndex(x, (s) => typeof s === "string");
}

// Step outputs come from gateway code, not attacker bytes, but a bug there must still deny,
// not throw inside a guard (which would error the actor instead of recording a deny).
function safely(test: () => boolean): boolean {
  try {
    return test();
  } catch {
    return false;
  }
}

function isEvidence(x: unknown): x is Evidence {
  return safely(
    () =>
      isRecord(x) &&
      "request" in x &&
      "args" in x &&
      Array.isArray(x["chain"]) &&
      Array.isArray(x["lineage"]) &&
      isStringArray(x["intakeErrors"]),
  );
}

function isCheck(x: unknown): boolean {
  return (
    isRecord(x) &&
    typeof x["check"] === "string" &&
    typeof x["ok"] === "boolean" &&
    (x["code"] === undefined || isDenialCode(x["code"])) &&
    (x["detail"] === undefined || typeof x["detail"] === "string")
  );
}

function isDecision(x: unknown): x is Decision {
  return (
    isRecord(x) &&
    (x["verdict"] === "allow" || x["verdict"] === "deny") &&
    everyIndex(x["checks"], isCheck) &&
    everyIndex(x["reasons"], isDenialCode)
  );
}

function isVerifyResult(x: unknown): x is VerifyResult {
  return safely(() => isRecord(x) && "input" in x && isDecision(x["decision"]));
}

/**
 * DESIGN §3: allow only when every check passed. The verdict alone is not trusted: an "allow"
 * with a reason, a failed check, or no checks at all is a contradiction, and contradictions deny.
 */
export function isValidAllow(x: unknown): x is VerifyResult {
  return safely(() => {
    if (!isVerifyResult(x)) return false;
    const { verdict, reasons, checks } = x.decision;
    return verdict === "allow" && reasons.length === 0 && checks.length > 0 && checks.every((c) => c.ok === true);
  });
}

function isCommitResult(x: unknown): x is CommitResult {
  return safely(
    () =>
      isRecord(x) &&
      typeof x["decisionId"] === "string" &&
      x["decisionId"].length > 0 &&
      typeof x["seq"] === "number" &&
      Number.isSafeInteger(x["seq"]) &&
      x["seq"] >= 0,
  );
}

function toExecutionResult(x: unknown): ExecutionResult {
  const ok = safely(
    () =>
      isRecord(x) &&
      (x["status"] === "succeeded" || x["status"] === "failed") &&
      (x["resultDigest"] === undefined || typeof x["resultDigest"] === "string") &&
      (x["error"] === undefined || typeof x["error"] === "string"),
  );
  if (!ok) return { status: "failed", error: "execute returned a malformed result" };
  // Copy only the known fields so nothing unexpected rides into the outcome record.
  const r = x as ExecutionResult;
  const out: ExecutionResult = { status: r.status };
  if (r.resultDigest !== undefined) out.resultDigest = r.resultDigest;
  if (r.error !== undefined) out.error = cleanText(r.error);
  return out;
}

const MAX_DETAIL = 1_000;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Details end up in the deny/outcome audit records, which are canonical I-JSON (DESIGN §2): a
 * lone surrogate would make the record unwritable and a huge message would make it oversized,
 * so either would turn a recorded deny into an unrecorded one. Clean them here.
 */
function cleanText(x: unknown): string {
  if (typeof x !== "string") return "";
  const clipped = x.length > MAX_DETAIL ? `${x.slice(0, MAX_DETAIL)}…` : x;
  return clipped.replace(LONE_SURROGATE, "\uFFFD");
}

function errorDetail(error: unknown): string {
  try {
    return cleanText(error instanceof Error ? error.message : String(error));
  } catch {
    return "unprintable error";
  }
}

const textOf = cleanText;

function unique(codes: DenialCode[]): DenialCode[] {
  return [...new Set(codes)];
}

/** The deny codes of a verify result that is not a valid allow; never empty. */
function denialOfVerify(x: unknown, flagged: TaskFlag | undefined): { codes: DenialCode[]; detail: string } {
  if (!isVerifyResult(x)) {
    return { codes: ["GOVERNANCE_UNAVAILABLE"], detail: "verify returned a malformed result" };
  }
  const failed = x.decision.checks.filter((c) => !c.ok);
  const codes = unique([
    ...(flagged ? [flagged.code] : []),
    ...x.decision.reasons,
    ...failed.flatMap((c) => (c.code ? [c.code] : [])),
  ]);
  const detail = cleanText(failed.map((c) => (c.detail ? `${c.check}: ${c.detail}` : c.check)).join("; "));
  if (codes.length === 0) {
    // A deny with no reason, or an allow that contradicts itself: still a deny.
    return { codes: ["GOVERNANCE_UNAVAILABLE"], detail: `decision ${x.decision.verdict} without a usable reason` };
  }
  return { codes, detail: flagged ? flagged.detail : detail || `decision ${x.decision.verdict}: ${codes.join(",")}` };
}

/** What a governance event means for this task. */
function flagOfEvent(event: TaskEvent): TaskFlag {
  switch (event.type) {
    case "BUS_LOST":
      return { code: "GOVERNANCE_UNAVAILABLE", detail: "bus connection lost" };
    case "AUDIT_FAILED":
      return { code: "GOVERNANCE_UNAVAILABLE", detail: `audit store failure: ${textOf(event.detail)}` };
    case "REVOKED":
      return { code: "REVOKED", detail: `revoked: ${textOf(event.detail)}` };
    case "ABORT":
      return { code: "GOVERNANCE_UNAVAILABLE", detail: `aborted: ${textOf(event.detail)}` };
    default:
      return assertNever(event, "task event");
  }
}

interface DenyParams {
  codes: DenialCode[];
  detail: string;
}

// Entry into these states spawns the actor; the guards that lead here established that the
// fields are set, so a missing one is a bug in this file, not an input problem.
function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new TypeError(`task machine bug: ${what} missing`);
  return value;
}

const deadlineFloor = (ms: number): number => (Number.isFinite(ms) && ms > 0 ? ms : 0);

function coerceInput(input: unknown): Pick<TaskContext, "taskId" | "evidenceDeadlineMs"> {
  const taskId = isRecord(input) && typeof input["taskId"] === "string" ? input["taskId"] : "";
  const ms = isRecord(input) && typeof input["evidenceDeadlineMs"] === "number" ? input["evidenceDeadlineMs"] : Number.NaN;
  return { taskId, evidenceDeadlineMs: ms };
}

function isValidInput(context: Pick<TaskContext, "taskId" | "evidenceDeadlineMs">): boolean {
  return context.taskId !== "" && Number.isFinite(context.evidenceDeadlineMs) && context.evidenceDeadlineMs >= 0;
}

// Before an allow is durable (collecting, verifying), any governance event denies at once.
const denyOnEvent = { target: "denying", actions: { type: "deny", params: ({ event }: { event: TaskEvent }) => denyOf(event) } } as const;
const DENY_ON_GOVERNANCE_EVENT = { BUS_LOST: denyOnEvent, AUDIT_FAILED: denyOnEvent, REVOKED: denyOnEvent, ABORT: denyOnEvent } as const;

export const taskMachine = setup({
  types: {
    context: {} as TaskContext,
    events: {} as TaskEvent,
    input: {} as TaskMachineInput,
    output: {} as TaskMachineOutput,
    tags: {} as TaskTag,
    children: {} as { [K in TaskActorName]: K },
  },
  actors: {
    collectEvidence: fromPromise<Evidence, CollectEvidenceInput>(notProvided("collectEvidence")),
    verify: fromPromise<VerifyResult, VerifyInput>(notProvided("verify")),
    commitAllow: fromPromise<CommitResult, CommitAllowInput>(notProvided("commitAllow")),
    execute: fromPromise<ExecutionResult, ExecuteInput>(notProvided("execute")),
    recordDenial: fromPromise<void, DenialInfo>(notProvided("recordDenial")),
    recordOutcome: fromPromise<void, RecordOutcomeInput>(notProvided("recordOutcome")),
  },
  guards: {
    inputValid: ({ context }) => isValidInput(context),
    evidenceWellFormed: (_, params: { output: unknown }) => isEvidence(params.output),
    // Named as in DESIGN §4: the decision (computed by decide in the verify actor) is an allow,
    // fully consistent, and no revocation/outage was flagged against this task meanwhile.
    decisionAllows: ({ context }, params: { output: unknown }) =>
      context.flagged === undefined && context.evidence !== undefined && isValidAllow(params.output),
    // The allow is durably recorded (a well-formed commit receipt for a decision we hold) and no
    // revocation, bus loss, audit failure or abort was flagged while it was being written.
    stillAuthorized: ({ context }, params: { output: unknown }) =>
      context.flagged === undefined && context.verify !== undefined && isCommitResult(params.output),
    executionSucceeded: ({ context }) => context.result?.status === "succeeded",
  },
  actions: {
    deny: assign((_, params: DenyParams) => ({
      denyCodes: params.codes.length > 0 ? unique(params.codes) : (["GOVERNANCE_UNAVAILABLE"] as DenialCode[]),
      denyDetail: params.detail,
    })),
    // Policy: while the allow record is being written the write cannot be recalled, so a
    // governance event is remembered and turns the commit's completion into a deny. The first
    // flag wins; later ones add nothing a deny does not already say.
    flag: assign(({ context }, params: { flag: TaskFlag }) => ({ flagged: context.flagged ?? params.flag })),
  },
  delays: {
    evidenceDeadline: ({ context }) => deadlineFloor(context.evidenceDeadlineMs),
  },
}).createMachine({
  id: TASK_MACHINE_ID,
  initial: "collecting",
  // Total on purpose: a missing or ill-typed input must not throw here (an actor whose context
  // cannot be built is an error, not a recorded deny); `inputValid` turns it into a deny instead.
  context: ({ input }) => ({
    ...coerceInput(input as unknown),
    evidence: undefined,
    verify: undefined,
    commit: undefined,
    result: undefined,
    denyCodes: [],
    denyDetail: "",
    flagged: undefined,
    outcomeError: undefined,
  }),
  // The machine's output is the output of the final state it ended in (denied/completed/failed).
  output: ({ event }) => (event as { output: TaskMachineOutput }).output,
  states: {
    collecting: {
      description: "Gather the request, artifact chain and lineage from NATS, until the evidence deadline.",
      tags: ["pending"],
      // Checked before anything else can happen: the collector is never started for a bad input.
      always: {
        guard: not("inputValid"),
        target: "denying",
        actions: { type: "deny", params: { codes: ["GOVERNANCE_UNAVAILABLE"], detail: "task machine input invalid" } },
      },
      invoke: {
        id: "collectEvidence",
        src: "collectEvidence",
        input: ({ context }) => ({ taskId: context.taskId }),
        onDone: [
          {
            guard: { type: "evidenceWellFormed", params: ({ event }) => ({ output: event.output }) },
            target: "verifying",
            actions: assign({ evidence: ({ event }) => event.output }),
          },
          {
            target: "denying",
            actions: {
              type: "deny",
              params: { codes: ["GOVERNANCE_UNAVAILABLE"], detail: "collectEvidence returned malformed evidence" },
            },
          },
        ],
        onError: {
          target: "denying",
          actions: {
            type: "deny",
            params: ({ event }) => ({
              codes: ["GOVERNANCE_UNAVAILABLE"],
              detail: `collectEvidence failed: ${errorDetail(event.error)}`,
            }),
          },
        },
      },
      after: {
        evidenceDeadline: {
          target: "denying",
          actions: {
            type: "deny",
            params: { codes: ["NO_ARTIFACT"], detail: "no evidence before the deadline" },
          },
        },
      },
      on: DENY_ON_GOVERNANCE_EVENT,
    },
    verifying: {
      description: "Build the DecisionInput, claim the nonce and the task id and run decide().",
      tags: ["pending"],
      invoke: {
        id: "verify",
        src: "verify",
        input: ({ context }) => ({ taskId: context.taskId, evidence: required(context.evidence, "evidence") }),
        onDone: [
          {
            guard: { type: "decisionAllows", params: ({ event }) => ({ output: event.output }) },
            target: "committing",
            actions: assign({ verify: ({ event }) => event.output }),
          },
          {
            target: "denying",
            actions: [
              // Keep the decision (if well formed) so the deny record carries its checks.
              assign({ verify: ({ event }) => (isVerifyResult(event.output) ? event.output : undefined) }),
              {
                type: "deny",
                params: ({ context, event }) => denialOfVerify(event.output, context.flagged),
              },
            ],
          },
        ],
        onError: {
          target: "denying",
          actions: {
            type: "deny",
            params: ({ event }) => ({
              codes: ["GOVERNANCE_UNAVAILABLE"],
              detail: `verify failed: ${errorDetail(event.error)}`,
            }),
          },
        },
      },
      on: DENY_ON_GOVERNANCE_EVENT,
    },
    committing: {
      description: "Write-ahead: durably append the allow decision (synced) before anything runs.",
      tags: ["pending"],
      invoke: {
        id: "commitAllow",
        src: "commitAllow",
        input: ({ context }) => ({ taskId: context.taskId, verify: required(context.verify, "verify") }),
        onDone: [
          {
            guard: { type: "stillAuthorized", params: ({ event }) => ({ output: event.output }) },
            target: "executing",
            actions: assign({ commit: ({ event }) => event.output }),
          },
          {
            target: "denying",
            actions: [
              // The allow is already in the log: the deny record must name it so replay sees it superseded.
              assign({ commit: ({ event }) => (isCommitResult(event.output) ? event.output : undefined) }),
              {
                type: "deny",
                params: ({ context, event }) =>
                  context.flagged
                    ? { codes: [context.flagged.code], detail: context.flagged.detail }
                    : {
                        codes: ["GOVERNANCE_UNAVAILABLE"],
                        detail: isCommitResult(event.output)
                          ? "commit completed without its decision"
                          : "commitAllow returned a malformed result",
                      },
              },
            ],
          },
        ],
        onError: {
          target: "denying",
          actions: {
            type: "deny",
            params: ({ context, event }) => ({
              codes: [...(context.flagged ? [context.flagged.code] : []), "GOVERNANCE_UNAVAILABLE"],
              detail: `commitAllow failed: ${errorDetail(event.error)}`,
            }),
          },
        },
      },
      on: {
        BUS_LOST: { actions: { type: "flag", params: ({ event }) => ({ flag: flagOfEvent(event) }) } },
        AUDIT_FAILED: { actions: { type: "flag", params: ({ event }) => ({ flag: flagOfEvent(event) }) } },
        REVOKED: { actions: { type: "flag", params: ({ event }) => ({ flag: flagOfEvent(event) }) } },
        ABORT: { actions: { type: "flag", params: ({ event }) => ({ flag: flagOfEvent(event) }) } },
      },
    },
    executing: {
      description: "Authorized and recorded: run the action handler. Governance events no longer interrupt it.",
      tags: ["authorized"],
      invoke: {
        id: "execute",
        src: "execute",
        input: ({ context }) => ({
          taskId: context.taskId,
          evidence: required(context.evidence, "evidence"),
          verify: required(context.verify, "verify"),
          commit: required(context.commit, "commit"),
        }),
        onDone: {
          target: "recordingOutcome",
          actions: assign({ result: ({ event }) => toExecutionResult(event.output) }),
        },
        onError: {
          target: "recordingOutcome",
          actions: assign({
            result: ({ event }): ExecutionResult => ({
              status: "failed",
              error: `execute failed: ${errorDetail(event.error)}`,
            }),
          }),
        },
      },
    },
    recordingOutcome: {
      description: "Append the outcome record and publish it.",
      tags: ["authorized"],
      invoke: {
        id: "recordOutcome",
        src: "recordOutcome",
        input: ({ context }) => ({
          taskId: context.taskId,
          commit: required(context.commit, "commit"),
          result: required(context.result, "result"),
        }),
        onDone: [{ guard: "executionSucceeded", target: "completed" }, { target: "failed" }],
        onError: {
          target: "failed",
          actions: assign({ outcomeError: ({ event }) => `recordOutcome failed: ${errorDetail(event.error)}` }),
        },
      },
    },
    completed: {
      description: "The handler succeeded and its outcome is recorded.",
      tags: ["authorized"],
      type: "final",
      output: ({ context }) => allowOutput(context, "completed"),
    },
    failed: {
      description: "The handler (or recording its outcome) failed after authorization.",
      tags: ["authorized"],
      type: "final",
      output: ({ context }) => allowOutput(context, "failed"),
    },
    denying: {
      description: "Record the deny with its codes in the audit log and publish it.",
      tags: ["deny"],
      invoke: {
        id: "recordDenial",
        src: "recordDenial",
        input: ({ context }) => denialInfo(context),
        // Policy: a deny stands whether or not recording it worked; the gateway reports the
        // recording failure as an audit problem on its own.
        onDone: { target: "denied" },
        onError: { target: "denied" },
      },
    },
    denied: {
      description: "Final: the task did not run.",
      tags: ["deny"],
      type: "final",
      output: ({ context }) => ({ verdict: "deny", codes: denialCodes(context), detail: context.denyDetail }),
    },
  },
});

function denyOf(event: TaskEvent): DenyParams {
  const f = flagOfEvent(event);
  return { codes: [f.code], detail: f.detail };
}

function denialCodes(context: TaskContext): DenialCode[] {
  return context.denyCodes.length > 0 ? context.denyCodes : ["GOVERNANCE_UNAVAILABLE"];
}

function denialInfo(context: TaskContext): DenialInfo {
  return {
    taskId: context.taskId,
    codes: denialCodes(context),
    detail: context.denyDetail,
    evidence: context.evidence,
    verify: context.verify,
    commit: context.commit,
  };
}

function allowOutput(context: TaskContext, status: "completed" | "failed"): TaskMachineOutput {
  return {
    verdict: "allow",
    status,
    result: context.result,
    commit: context.commit,
    outcomeError: context.outcomeError,
  };
}
