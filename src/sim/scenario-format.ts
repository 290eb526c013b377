// The scenario file format: one YAML file per scenario under scenarios/. A person writes what
// happens (agents, grants, tasks, attacks, faults) and what must come of it; the simulator
// (./simulator.ts) turns it into keys, signed artifacts, NATS traffic and gateway faults.
// scenarios/README.md is the guide for humans; this block is the reference for implementers.
//
// TOP LEVEL
//   name          kebab-case id (required)         description   what the scenario probes (required)
//   tags          [string]                         start         ISO instant of virtual t=0 (default 2027-01-15T08:00:00Z)
//   limits        {maxSkew, maxFeedAge, maxRequestAge, evidenceDeadline: duration; maxDepth: int}  overrides only
//   authorities   [{name, trusted?=true}]  default [{name: authority}]; the first is the default issuer
//   gateways      [id | {id}]              default [gw-1]. All gateways pull from one shared work
//                 queue (DESIGN §6): any of them may take any task or replay, whatever it names
//   policies      {name: {version, cedar, id?=name}}  "default" is built in (DEFAULT_POLICY)
//   policy        name of the policy active at start (default "default")
//   agents        [{name, role?, code?, environment?}]  code = the code the gateway measures
//                 (digest = base64url SHA-256 of the UTF-8 string); environment = measured attributes
//   grants        [Grant]       issued at t=0, before step 1, in order
//   delegations   [Delegation]  issued at t=0 after the grants, in order
//   steps         [Step]        run in order; the virtual clock moves only with `advance`
//   invariants    [{exactlyOneExecuted: [taskId]} | {notExecuted: [taskId]}]
//
// ARTIFACTS (one grant or delegation = one signed artifact = one nonce = ONE task; a second task
// on it is a replay). Times: `notBefore`/`expiresAt` are offsets from `start` ("+2h", "-5m", "0");
// `validFor` is a duration from notBefore. Durations: "500ms", "30s", "10m", "1h", "2d", "1h30m".
//   Grant       {id, to, issuer?, actions, resources, constraints?, notBefore?, validFor | expiresAt,
//                policy?, bindings?, attribution?, metadata?}
//               issuer: an authority (default the first) or an agent (a rogue root).
//               notBefore defaults to the issue time; policy to the one active at issue time.
//   Delegation  {id, from, to, actions?, resources?, constraints?, notBefore?, validFor?, expiresAt?,
//                bindings?, attribution?, metadata?}   signed by the holder of `from`.
//               Omitted scope fields and the window are inherited from the parent; `constraints` and
//               `bindings.environment` merge onto the parent's; `bindings.gateways`/`code` replace.
//   constraints {argName: {min?, max?}}     bindings {gateways?: [id], code?: string, environment?: {k: v}}
//   attribution {initiator, onBehalfOf?, reason}
//
// STEPS — each is a map whose kind is the one key among these it carries (plus `note?` text):
//   task: ID        agent, action, resource, uses (grant/delegation id), args?={}, parent? (task
//                   that spawned it: required iff `uses` is a delegation, and must be the task that
//                   used the delegation's parent), gateway?, tamper?: [Tamper], expect
//   replay: TASKID  id (the label of this attempt), gateway?, expect — resend that task's exact
//                   signed request and evidence
//                   `gateway:` (task or replay) is a label for the reader and the report: it does
//                   NOT route. The report names the gateway that actually decided; write
//                   expectations that hold whichever gateway takes the task.
//   concurrently:   [task or replay steps] submitted at the same instant (with two gateways, both
//                   may pull them: a race within one gateway or across two)
//   grant: ID       Grant fields, issued now with the current authority key and active policy
//   delegate: ID    Delegation fields, issued now
//   revoke: ID      reason?, during? — the authority revokes a grant/delegation (and so its
//                   descendants)
//   revokeKey: NAME reason?, during? — the authority revokes an agent's or authority's key
//                   `during: TASK` (put the step before TASK): TASK's artifact chain and request
//                   are published and its lineage withheld, so the gateway holds TASK collecting
//                   evidence; the revocation lands (every gateway has applied it), then the
//                   lineage is released. One `during` step per task (fault or revocation).
//   advance: DURATION                    moves the virtual clock (heartbeats keep flowing)
//   changeAgent: NAME  code?, environment? — what the gateway measures for that agent from now on
//   fault: KIND     see FAULTS          heal: KIND  ends a lasting fault
// TAMPER (on a task; a string or a one-key map)
//   forge-signature[: artifact|request|lineage]   corrupt that signature (default artifact)
//   sign-as: AGENT        the request still names `agent` but is signed with AGENT's key (a
//                         forgery). A task whose `agent` is simply not the holder of `uses` is
//                         the other identity attack: a valid signature by the wrong agent.
//   drop-artifact         the artifact chain is never published (evidence deadline passes)
//   drop-lineage          the task's own lineage event is never published
//   splice-lineage: TASK  the task's spawn lineage (and request) name TASK as its parent
//   widen-scope: {actions?, resources?, constraints?}  the presented (delegated) artifact is
//                         re-signed by its issuer with these added/replaced, bypassing the refusal
//   malformed: wrong-kind     the request carries another kind's label (the artifact kind),
//                             validly re-signed by the agent: schema-invalid
//   malformed: duplicate-key  the presented artifact's message repeats "sig" (a forged one, then
//                             the genuine one a lenient JSON.parse would keep): not I-JSON
//                         (Oversized messages are refused by the bus itself, max_msg_size, and a
//                         submit message that does not parse names no task to attribute.)
// FAULTS (`during: TASK` = injected once a gateway has taken TASK off the work queue and before
// TASK's evidence is published, so TASK is caught mid-verification (crash-gateway: at its `point`
// of TASK); an outage-like fault with `during` is healed once TASK settles. Without `during` it
// happens at its place in the steps and lasts until `heal` or the end)
//   nats-outage [during]         audit-store-failure [during]      policy-unavailable [during]
//   stale-revocation-feed        heartbeats and revocations stop reaching the gateways (heal resumes)
//   clock-skew  by: ±DURATION, gateway?   the gateway's clock is off by that much (heal resets)
//   rotate-authority-key  authority?, retireOld?=true   fresh key for that authority; later grants use
//                         it; retireOld removes the old key from the trust store
//   change-policy  to: POLICY, during?    the authority publishes another active policy (it stays)
//   policy-rollback  to: POLICY       someone with rights on the policy bucket (and no key) puts the
//                  signed entry of POLICY, published earlier and since retired, back in the bucket;
//                  the scenario fails unless every gateway keeps the policy in force
//   crash-gateway  gateway?, during?, point?=verifying|after-allow-commit, restartAfter?=1s
//                  the gateway process dies at that point of TASK (verifying: before any decision
//                  is written; after-allow-commit: the allow is durable, execution has not begun)
//                  and a new one starts on the same audit store after restartAfter
// EXPECT (per task):  allow | executed | {denied: CODE} | {denied: {anyOf: [CODE]}} | {oneOf: [EXPECT]}
//   allow: verdict allow (execution not asserted); executed: allow and the action ran once;
//   denied: verdict deny and CODE among the decision's reasons (anyOf: at least one of them).
import { readdirSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { LineCounter, parseDocument, isNode } from "yaml";
import { z } from "zod";
import type { JsonValue } from "../canonical/jcs.ts";
import { toB64u } from "../crypto/base64url.ts";
import { sha256 } from "../crypto/hash.ts";
import { DENIAL_CODES, type ArtifactBindings, type ArtifactScope, type Attribution, type DenialCode, type NumericConstraint, type Validity } from "../core/types.ts";
import { DEFAULT_POLICY } from "../policy/default-policy.ts";
import { POLICY_DOCUMENT_KIND, type PolicyDocument } from "../policy/policy-document.ts";

export const DEFAULT_START = Date.parse("2027-01-15T08:00:00Z"); // = testkit T0

// ---------- types (what the simulator consumes) ----------

export interface ScenarioLimits {
  maxSkewMs?: number;
  maxFeedAgeMs?: number;
  maxRequestAgeMs?: number;
  evidenceDeadlineMs?: number;
  maxDepth?: number;
}

export interface AgentSpec {
  name: string;
  role?: string;
  /** The code the gateway measures; its digest is `codeDigest(code)`. Absent: nothing measured. */
  code?: string;
  environment: Record<string, string>;
}

export interface BindingsSpec {
  gateways?: string[];
  code?: string;
  environment?: Record<string, string>;
}

/** Times are offsets in ms from the scenario start; validFor is a duration in ms. */
export interface WindowSpec {
  notBefore?: number;
  validFor?: number;
  expiresAt?: number;
}

export interface GrantSpec {
  id: string;
  to: string;
  issuer?: string;
  actions: string[];
  resources: string[];
  constraints: Record<string, NumericConstraint>;
  window: WindowSpec;
  policy?: string;
  bindings: BindingsSpec;
  attribution?: Attribution;
  metadata: Record<string, JsonValue>;
}

export interface DelegationSpec {
  id: string;
  from: string;
  to: string;
  actions?: string[];
  resources?: string[];
  constraints?: Record<string, NumericConstraint>;
  window: WindowSpec;
  bindings?: BindingsSpec;
  attribution?: Attribution;
  metadata: Record<string, JsonValue>;
}

export type Tamper =
  | { kind: "forge-signature"; target: "artifact" | "request" | "lineage" }
  | { kind: "sign-as"; agent: string }
  | { kind: "drop-artifact" }
  | { kind: "drop-lineage" }
  | { kind: "splice-lineage"; parent: string }
  | { kind: "widen-scope"; actions?: string[]; resources?: string[]; constraints?: Record<string, NumericConstraint> }
  | { kind: "malformed"; how: MalformedKind };

export const MALFORMED_KINDS = ["wrong-kind", "duplicate-key"] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

export type Expectation =
  | { verdict: "allow"; executed: boolean }
  | { verdict: "deny"; anyOf: DenialCode[] }
  | { oneOf: Expectation[] };

export interface TaskStep {
  kind: "task";
  id: string;
  agent: string;
  action: string;
  resource: string;
  args: JsonValue;
  uses: string;
  parent?: string;
  gateway?: string;
  tamper: Tamper[];
  expect: Expectation;
  note?: string;
}

export interface ReplayStep {
  kind: "replay";
  /** Label of this attempt (a task id in the report). */
  id: string;
  /** The earlier task whose signed request and evidence are resent. */
  of: string;
  gateway?: string;
  expect: Expectation;
  note?: string;
}

export type FaultKind =
  | "nats-outage"
  | "audit-store-failure"
  | "policy-unavailable"
  | "stale-revocation-feed"
  | "clock-skew"
  | "rotate-authority-key"
  | "change-policy"
  | "policy-rollback"
  | "crash-gateway";

export const HEALABLE_FAULTS = ["nats-outage", "audit-store-failure", "policy-unavailable", "stale-revocation-feed", "clock-skew"] as const;
export type HealableFault = (typeof HEALABLE_FAULTS)[number];

export type Fault =
  | { kind: "nats-outage" | "audit-store-failure" | "policy-unavailable"; during?: string }
  | { kind: "stale-revocation-feed" }
  | { kind: "clock-skew"; byMs: number; gateway?: string }
  | { kind: "rotate-authority-key"; authority?: string; retireOld: boolean }
  | { kind: "change-policy"; to: string; during?: string }
  | { kind: "policy-rollback"; to: string }
  | { kind: "crash-gateway"; gateway?: string; during?: string; point: "verifying" | "after-allow-commit"; restartAfterMs: number };

export type Step =
  | TaskStep
  | ReplayStep
  | { kind: "concurrently"; steps: (TaskStep | ReplayStep)[]; note?: string }
  | { kind: "grant"; grant: GrantSpec; note?: string }
  | { kind: "delegate"; delegation: DelegationSpec; note?: string }
  | { kind: "revoke"; target: string; reason: string; during?: string; note?: string }
  | { kind: "revokeKey"; principal: string; reason: string; during?: string; note?: string }
  | { kind: "advance"; ms: number; note?: string }
  | { kind: "changeAgent"; agent: string; code?: string; environment?: Record<string, string>; note?: string }
  | { kind: "fault"; fault: Fault; note?: string }
  | { kind: "heal"; fault: HealableFault; note?: string };

export type Invariant = { kind: "exactlyOneExecuted"; tasks: string[] } | { kind: "notExecuted"; tasks: string[] };

export interface Scenario {
  name: string;
  description: string;
  /** Path it was loaded from ("" when parsed from a string). */
  file: string;
  tags: string[];
  /** Epoch ms of virtual t=0. */
  start: number;
  limits: ScenarioLimits;
  authorities: { name: string; trusted: boolean }[];
  gateways: string[];
  /** Every policy by name, "default" included. */
  policies: Record<string, PolicyDocument>;
  activePolicy: string;
  agents: AgentSpec[];
  grants: GrantSpec[];
  delegations: DelegationSpec[];
  steps: Step[];
  invariants: Invariant[];
}

// ---------- errors ----------

export interface ScenarioProblem {
  /** e.g. "steps[3].expect" */
  path: string;
  message: string;
  line?: number;
  /** The file, when an error gathers problems of several files. */
  file?: string;
}

export class ScenarioFormatError extends Error {
  override readonly name = "ScenarioFormatError";
  readonly code = "SCENARIO_INVALID";
  constructor(
    readonly file: string,
    readonly problems: ScenarioProblem[],
    options?: { cause?: unknown },
  ) {
    super(problems.map((p) => `${p.file ?? file}${p.line !== undefined ? `:${p.line}` : ""}: ${p.path === "" ? "" : `${p.path}: `}${p.message}`).join("\n"), options);
  }
}

// ---------- durations and small schemas ----------

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(?:\d+(?:ms|s|m|h|d))+$/;

/** "1h30m" → 5_400_000; "0" → 0. Undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  if (text === "0") return 0;
  if (!DURATION_RE.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * (UNIT_MS[m[2] ?? ""] ?? Number.NaN);
  return Number.isSafeInteger(total) ? total : undefined;
}

/** "+2h" / "-5m" / "2h" / "0" → signed ms. */
export function parseOffset(text: string): number | undefined {
  const sign = text.startsWith("-") ? -1 : 1;
  const d = parseDuration(text.replace(/^[+-]/, ""));
  return d === undefined ? undefined : sign * d;
}

const durationText = "a duration like 500ms, 30s, 10m, 1h, 2d or 1h30m";
const duration = z.union([z.string(), z.literal(0)]).transform((v, ctx) => {
  const ms = parseDuration(String(v));
  if (ms === undefined) ctx.addIssue({ code: "custom", message: `expected ${durationText}, got ${JSON.stringify(v)}`, input: v });
  return ms ?? 0;
});
const offset = z.union([z.string(), z.literal(0)]).transform((v, ctx) => {
  const ms = parseOffset(String(v));
  if (ms === undefined) ctx.addIssue({ code: "custom", message: `expected an offset from start like +2h, -5m or 0, got ${JSON.stringify(v)}`, input: v });
  return ms ?? 0;
});

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
// Task ids become NATS subject tokens (DESIGN §6): no ".", "*", ">" or whitespace.
const name = z.string().regex(NAME_RE, "use letters, digits, '-' and '_' (it becomes a NATS subject token)").max(64);
const nonEmpty = z.string().min(1);
const stringList = z.array(nonEmpty).min(1);
const stringMap = z.record(z.string(), z.string());
const constraintMap = z.record(z.string(), z.strictObject({ min: z.number().optional(), max: z.number().optional() }));
const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.null(), z.boolean(), z.number(), z.string(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);
const code = z.enum(DENIAL_CODES, { error: (i) => `unknown denial code ${JSON.stringify(i.input)}; one of ${DENIAL_CODES.join(", ")}` });

const bindingsSchema = z.strictObject({ gateways: z.array(name).optional(), code: nonEmpty.optional(), environment: stringMap.optional() });
const attributionSchema = z.strictObject({ initiator: nonEmpty, onBehalfOf: nonEmpty.optional(), reason: nonEmpty });

const windowFields = { notBefore: offset.optional(), validFor: duration.optional(), expiresAt: offset.optional() };
function windowOf(v: { notBefore?: number | undefined; validFor?: number | undefined; expiresAt?: number | undefined }): WindowSpec {
  return {
    ...(v.notBefore !== undefined ? { notBefore: v.notBefore } : {}),
    ...(v.validFor !== undefined ? { validFor: v.validFor } : {}),
    ...(v.expiresAt !== undefined ? { expiresAt: v.expiresAt } : {}),
  };
}

/** Drop keys whose value is undefined (exactOptionalPropertyTypes: absent ≠ undefined). */
function defined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

const grantFields = {
  to: name,
  issuer: name.optional(),
  actions: stringList,
  resources: stringList,
  constraints: constraintMap.optional(),
  ...windowFields,
  policy: name.optional(),
  bindings: bindingsSchema.optional(),
  attribution: attributionSchema.optional(),
  metadata: z.record(z.string(), jsonValue).optional(),
  note: z.string().optional(),
};
const delegationFields = {
  from: name,
  to: name,
  actions: stringList.optional(),
  resources: stringList.optional(),
  constraints: constraintMap.optional(),
  ...windowFields,
  bindings: bindingsSchema.optional(),
  attribution: attributionSchema.optional(),
  metadata: z.record(z.string(), jsonValue).optional(),
  note: z.string().optional(),
};

type GrantInput = z.output<z.ZodObject<typeof grantFields>> & { id: string };
type DelegationInput = z.output<z.ZodObject<typeof delegationFields>> & { id: string };

function toGrant(v: GrantInput): GrantSpec {
  if (v.validFor === undefined && v.expiresAt === undefined) throw new SchemaHint("a grant needs validFor or expiresAt");
  if (v.validFor !== undefined && v.expiresAt !== undefined) throw new SchemaHint("give validFor or expiresAt, not both");
  return {
    id: v.id,
    to: v.to,
    ...defined({ issuer: v.issuer, policy: v.policy, attribution: v.attribution && defined(v.attribution) }),
    actions: v.actions,
    resources: v.resources,
    constraints: constraintsOf(v.constraints ?? {}),
    window: windowOf(v),
    bindings: v.bindings ? defined(v.bindings) : {},
    metadata: v.metadata ?? {},
  };
}

function toDelegation(v: DelegationInput): DelegationSpec {
  if (v.validFor !== undefined && v.expiresAt !== undefined) throw new SchemaHint("give validFor or expiresAt, not both");
  return {
    id: v.id,
    from: v.from,
    to: v.to,
    ...defined({
      actions: v.actions,
      resources: v.resources,
      constraints: v.constraints && constraintsOf(v.constraints),
      bindings: v.bindings && defined(v.bindings),
      attribution: v.attribution && defined(v.attribution),
    }),
    window: windowOf(v),
    metadata: v.metadata ?? {},
  };
}

function constraintsOf(c: Record<string, { min?: number | undefined; max?: number | undefined }>): Record<string, NumericConstraint> {
  return Object.fromEntries(Object.entries(c).map(([k, b]) => [k, defined(b)]));
}

/** A message for a shape problem found after zod's field checks (turned into an issue). */
class SchemaHint extends Error {}

function withHints<I, O>(schema: z.ZodType<I>, build: (v: I) => O): z.ZodType<O> {
  return schema.transform((v, ctx) => {
    try {
      return build(v);
    } catch (e) {
      if (!(e instanceof SchemaHint)) throw e;
      ctx.addIssue({ code: "custom", message: e.message, input: v });
      return z.NEVER;
    }
  });
}

// ---------- expectations ----------

const EXPECT_FORMS = "allow | executed | {denied: CODE} | {denied: {anyOf: [CODE, …]}} | {oneOf: [EXPECT, …]}";
const deniedSchema = z
  .strictObject({
    denied: z.union([code, z.strictObject({ anyOf: z.array(code).min(1) })], {
      error: (i) => (typeof i.input === "string" ? `unknown denial code ${JSON.stringify(i.input)}; one of ${DENIAL_CODES.join(", ")}` : "expected CODE or {anyOf: [CODE, …]}"),
    }),
  })
  .transform((v): Expectation => ({ verdict: "deny", anyOf: typeof v.denied === "string" ? [v.denied] : v.denied.anyOf }));
// Picked by shape rather than z.union, so a typo in a code is reported as that, not as "no form matched".
const expectationSchema: z.ZodType<Expectation> = z.lazy(() =>
  z.unknown().transform((v, ctx): Expectation => {
    if (v === "allow") return { verdict: "allow", executed: false };
    if (v === "executed") return { verdict: "allow", executed: true };
    const schema =
      typeof v === "object" && v !== null && !Array.isArray(v)
        ? "denied" in v
          ? deniedSchema
          : "oneOf" in v
            ? oneOfSchema
            : undefined
        : undefined;
    if (schema === undefined) {
      ctx.addIssue({ code: "custom", message: `${v === undefined ? "required" : `got ${JSON.stringify(v)}, expected`}: ${EXPECT_FORMS}`, input: v });
      return z.NEVER;
    }
    const r = schema.safeParse(v);
    if (!r.success) {
      for (const i of r.error.issues) ctx.addIssue({ code: "custom", message: i.message, path: i.path, input: v });
      return z.NEVER;
    }
    return r.data;
  }),
);
const oneOfSchema = z.strictObject({ oneOf: z.array(expectationSchema).min(2) }).transform((v): Expectation => ({ oneOf: v.oneOf }));

export interface ActualOutcome {
  verdict: "allow" | "deny" | "none";
  executed: boolean;
  codes: DenialCode[];
}

export function expectationMet(e: Expectation, a: ActualOutcome): boolean {
  if ("oneOf" in e) return e.oneOf.some((o) => expectationMet(o, a));
  if (e.verdict === "allow") return a.verdict === "allow" && (!e.executed || a.executed);
  return a.verdict === "deny" && !a.executed && e.anyOf.some((c) => a.codes.includes(c));
}

export function describeExpectation(e: Expectation): string {
  if ("oneOf" in e) return `one of: ${e.oneOf.map(describeExpectation).join(" | ")}`;
  if (e.verdict === "allow") return e.executed ? "executed" : "allow";
  return e.anyOf.length === 1 ? `denied: ${e.anyOf[0] ?? ""}` : `denied: any of ${e.anyOf.join(", ")}`;
}

// ---------- tamper, faults, steps ----------

const tamperSchema: z.ZodType<Tamper> = z.union(
  [
    z.literal("forge-signature").transform((): Tamper => ({ kind: "forge-signature", target: "artifact" })),
    z.literal("drop-artifact").transform((): Tamper => ({ kind: "drop-artifact" })),
    z.literal("drop-lineage").transform((): Tamper => ({ kind: "drop-lineage" })),
    z.strictObject({ "forge-signature": z.enum(["artifact", "request", "lineage"]) }).transform((v): Tamper => ({ kind: "forge-signature", target: v["forge-signature"] })),
    z.strictObject({ "sign-as": name }).transform((v): Tamper => ({ kind: "sign-as", agent: v["sign-as"] })),
    z.strictObject({ "splice-lineage": name }).transform((v): Tamper => ({ kind: "splice-lineage", parent: v["splice-lineage"] })),
    z.strictObject({ malformed: z.enum(MALFORMED_KINDS) }).transform((v): Tamper => ({ kind: "malformed", how: v.malformed })),
    z
      .strictObject({ "widen-scope": z.strictObject({ actions: stringList.optional(), resources: stringList.optional(), constraints: constraintMap.optional() }) })
      .transform((v): Tamper => {
        const w = v["widen-scope"];
        return { kind: "widen-scope", ...defined({ actions: w.actions, resources: w.resources, constraints: w.constraints && constraintsOf(w.constraints) }) };
      }),
  ],
  { error: `expected forge-signature[: artifact|request|lineage] | sign-as: AGENT | drop-artifact | drop-lineage | splice-lineage: TASK | widen-scope: {…} | malformed: ${MALFORMED_KINDS.join("|")}` },
);

const note = z.string().optional();

const taskSchema = z
  .strictObject({
    task: name,
    agent: name,
    action: nonEmpty,
    resource: nonEmpty,
    args: jsonValue.optional(),
    uses: name,
    parent: name.optional(),
    gateway: name.optional(),
    tamper: z.array(tamperSchema).optional(),
    expect: expectationSchema,
    note,
  })
  .transform(
    (v): TaskStep => ({
      kind: "task",
      id: v.task,
      agent: v.agent,
      action: v.action,
      resource: v.resource,
      args: v.args ?? {},
      uses: v.uses,
      ...defined({ parent: v.parent, gateway: v.gateway, note: v.note }),
      tamper: v.tamper ?? [],
      expect: v.expect,
    }),
  );

const replaySchema = z
  .strictObject({ replay: name, id: name, gateway: name.optional(), expect: expectationSchema, note })
  .transform((v): ReplayStep => ({ kind: "replay", id: v.id, of: v.replay, ...defined({ gateway: v.gateway, note: v.note }), expect: v.expect }));

const during = name.optional();
type FaultStep = Extract<Step, { kind: "fault" }>;
const faultStep = (f: Fault, n: string | undefined): FaultStep => ({ kind: "fault", fault: f, ...defined({ note: n }) });
const faultSchemas: Record<FaultKind, z.ZodType<FaultStep>> = {
  "nats-outage": z.strictObject({ fault: z.literal("nats-outage"), during, note }).transform((v) => faultStep({ kind: v.fault, ...defined({ during: v.during }) }, v.note)),
  "audit-store-failure": z.strictObject({ fault: z.literal("audit-store-failure"), during, note }).transform((v) => faultStep({ kind: v.fault, ...defined({ during: v.during }) }, v.note)),
  "policy-unavailable": z.strictObject({ fault: z.literal("policy-unavailable"), during, note }).transform((v) => faultStep({ kind: v.fault, ...defined({ during: v.during }) }, v.note)),
  "stale-revocation-feed": z.strictObject({ fault: z.literal("stale-revocation-feed"), note }).transform((v) => faultStep({ kind: "stale-revocation-feed" }, v.note)),
  "clock-skew": z
    .strictObject({ fault: z.literal("clock-skew"), by: offset, gateway: name.optional(), note })
    .transform((v) => faultStep({ kind: "clock-skew", byMs: v.by, ...defined({ gateway: v.gateway }) }, v.note)),
  "rotate-authority-key": z
    .strictObject({ fault: z.literal("rotate-authority-key"), authority: name.optional(), retireOld: z.boolean().optional(), note })
    .transform((v) => faultStep({ kind: "rotate-authority-key", retireOld: v.retireOld ?? true, ...defined({ authority: v.authority }) }, v.note)),
  "change-policy": z
    .strictObject({ fault: z.literal("change-policy"), to: name, during, note })
    .transform((v) => faultStep({ kind: "change-policy", to: v.to, ...defined({ during: v.during }) }, v.note)),
  "policy-rollback": z.strictObject({ fault: z.literal("policy-rollback"), to: name, note }).transform((v) => faultStep({ kind: "policy-rollback", to: v.to }, v.note)),
  "crash-gateway": z
    .strictObject({ fault: z.literal("crash-gateway"), gateway: name.optional(), during, point: z.enum(["verifying", "after-allow-commit"]).optional(), restartAfter: duration.optional(), note })
    .transform((v) =>
      faultStep({ kind: "crash-gateway", point: v.point ?? "verifying", restartAfterMs: v.restartAfter ?? 1_000, ...defined({ gateway: v.gateway, during: v.during }) }, v.note),
    ),
};

/** Pick a sub-schema by a discriminating value, so errors talk about the fields of that kind only. */
function dispatch<T>(what: string, pick: (v: Record<string, unknown>) => { schema: z.ZodType<T> } | { error: string }): z.ZodType<T> {
  return z.unknown().transform((v, ctx) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      ctx.addIssue({ code: "custom", message: `${what} must be a map`, input: v });
      return z.NEVER;
    }
    const chosen = pick(v as Record<string, unknown>);
    if ("error" in chosen) {
      ctx.addIssue({ code: "custom", message: chosen.error, input: v });
      return z.NEVER;
    }
    const r = chosen.schema.safeParse(v);
    if (!r.success) {
      for (const i of r.error.issues) ctx.addIssue({ code: "custom", message: i.message, path: i.path, input: v });
      return z.NEVER;
    }
    return r.data;
  });
}

const faultSchema = dispatch<FaultStep>("a fault", (v) => {
  const kind = v["fault"];
  const schema = typeof kind === "string" ? faultSchemas[kind as FaultKind] : undefined;
  return schema ? { schema } : { error: `unknown fault ${JSON.stringify(kind)}; one of ${Object.keys(faultSchemas).join(", ")}` };
});

const submission = dispatch<TaskStep | ReplayStep>("a concurrent step", (v) =>
  "task" in v ? { schema: taskSchema } : "replay" in v ? { schema: replaySchema } : { error: "only task and replay steps run concurrently" },
);

const STEP_SCHEMAS = {
  task: taskSchema,
  replay: replaySchema,
  concurrently: z.strictObject({ concurrently: z.array(submission).min(2), note }).transform((v): Step => ({ kind: "concurrently", steps: v.concurrently, ...defined({ note: v.note }) })),
  grant: withHints(z.strictObject({ grant: name, ...grantFields }), (v): Step => ({ kind: "grant", grant: toGrant({ ...v, id: v.grant }), ...defined({ note: v.note }) })),
  delegate: withHints(z.strictObject({ delegate: name, ...delegationFields }), (v): Step => ({
    kind: "delegate",
    delegation: toDelegation({ ...v, id: v.delegate }),
    ...defined({ note: v.note }),
  })),
  revoke: z
    .strictObject({ revoke: name, reason: nonEmpty.optional(), during, note })
    .transform((v): Step => ({ kind: "revoke", target: v.revoke, reason: v.reason ?? "revoked in scenario", ...defined({ during: v.during, note: v.note }) })),
  revokeKey: z
    .strictObject({ revokeKey: name, reason: nonEmpty.optional(), during, note })
    .transform((v): Step => ({ kind: "revokeKey", principal: v.revokeKey, reason: v.reason ?? "key revoked in scenario", ...defined({ during: v.during, note: v.note }) })),
  advance: z.strictObject({ advance: duration, note }).transform((v): Step => ({ kind: "advance", ms: v.advance, ...defined({ note: v.note }) })),
  changeAgent: z
    .strictObject({ changeAgent: name, code: nonEmpty.optional(), environment: stringMap.optional(), note })
    .transform((v): Step => ({ kind: "changeAgent", agent: v.changeAgent, ...defined({ code: v.code, environment: v.environment, note: v.note }) })),
  fault: faultSchema,
  heal: z.strictObject({ heal: z.enum(HEALABLE_FAULTS), note }).transform((v): Step => ({ kind: "heal", fault: v.heal, ...defined({ note: v.note }) })),
} satisfies Record<Step["kind"], z.ZodType<Step>>;

export const STEP_KINDS = Object.keys(STEP_SCHEMAS) as Step["kind"][];

const stepSchema = dispatch<Step>("a step", (v) => {
  const kinds = STEP_KINDS.filter((k) => Object.hasOwn(v, k));
  if (kinds.length !== 1) {
    return { error: kinds.length === 0 ? `a step needs one of: ${STEP_KINDS.join(", ")}` : `a step has one kind, found ${kinds.join(" and ")}` };
  }
  return { schema: STEP_SCHEMAS[kinds[0]!] as z.ZodType<Step> };
});

const invariantSchema = z.union([
  z.strictObject({ exactlyOneExecuted: z.array(name).min(2) }).transform((v): Invariant => ({ kind: "exactlyOneExecuted", tasks: v.exactlyOneExecuted })),
  z.strictObject({ notExecuted: z.array(name).min(1) }).transform((v): Invariant => ({ kind: "notExecuted", tasks: v.notExecuted })),
], { error: "expected {exactlyOneExecuted: [TASK, …]} | {notExecuted: [TASK, …]}" });

const startSchema = z.union([z.string(), z.date()]).transform((v, ctx) => {
  const ms = v instanceof Date ? v.getTime() : Date.parse(v);
  if (!Number.isFinite(ms)) ctx.addIssue({ code: "custom", message: `expected an ISO instant like 2027-01-15T08:00:00Z, got ${JSON.stringify(v)}`, input: v });
  return ms;
});

export const scenarioSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "kebab-case: lower-case letters, digits and '-'"),
  description: z.string().min(10, "say what the scenario probes"),
  tags: z.array(nonEmpty).optional(),
  start: startSchema.optional(),
  limits: z
    .strictObject({ maxSkew: duration.optional(), maxFeedAge: duration.optional(), maxRequestAge: duration.optional(), evidenceDeadline: duration.optional(), maxDepth: z.int().min(0).optional() })
    .optional(),
  authorities: z.array(z.strictObject({ name, trusted: z.boolean().optional() })).min(1).optional(),
  gateways: z.array(z.union([name, z.strictObject({ id: name })])).min(1).optional(),
  policies: z.record(name, z.strictObject({ version: nonEmpty, cedar: nonEmpty, id: nonEmpty.optional() })).optional(),
  policy: name.optional(),
  agents: z.array(z.strictObject({ name, role: nonEmpty.optional(), code: nonEmpty.optional(), environment: stringMap.optional() })).min(1),
  grants: z.array(withHints(z.strictObject({ id: name, ...grantFields }), toGrant)).optional(),
  delegations: z.array(withHints(z.strictObject({ id: name, ...delegationFields }), toDelegation)).optional(),
  steps: z.array(stepSchema).min(1),
  invariants: z.array(invariantSchema).optional(),
});

type RawScenario = z.output<typeof scenarioSchema>;

function build(raw: RawScenario, file: string): Scenario {
  const policies: Record<string, PolicyDocument> = { default: DEFAULT_POLICY };
  for (const [n, p] of Object.entries(raw.policies ?? {})) policies[n] = { kind: POLICY_DOCUMENT_KIND, id: p.id ?? n, version: p.version, cedar: p.cedar };
  const l = raw.limits ?? {};
  return {
    name: raw.name,
    description: raw.description.trim(),
    file,
    tags: raw.tags ?? [],
    start: raw.start ?? DEFAULT_START,
    limits: defined({ maxSkewMs: l.maxSkew, maxFeedAgeMs: l.maxFeedAge, maxRequestAgeMs: l.maxRequestAge, evidenceDeadlineMs: l.evidenceDeadline, maxDepth: l.maxDepth }),
    authorities: (raw.authorities ?? [{ name: "authority" }]).map((a) => ({ name: a.name, trusted: a.trusted ?? true })),
    gateways: (raw.gateways ?? ["gw-1"]).map((g) => (typeof g === "string" ? g : g.id)),
    policies,
    activePolicy: raw.policy ?? "default",
    agents: raw.agents.map((a) => ({ name: a.name, ...defined({ role: a.role, code: a.code }), environment: a.environment ?? {} })),
    grants: raw.grants ?? [],
    delegations: raw.delegations ?? [],
    steps: raw.steps,
    invariants: raw.invariants ?? [],
  };
}

// ---------- cross-reference checks ----------

/** References between parts must resolve, in order; a person gets every problem at once. */
export function crossCheck(s: Scenario): ScenarioProblem[] {
  const problems: ScenarioProblem[] = [];
  const bad = (path: string, message: string): void => void problems.push({ path, message });
  const agents = new Set<string>();
  const authorities = new Set<string>();
  s.agents.forEach((a, i) => (agents.has(a.name) ? bad(`agents[${i}].name`, `duplicate agent "${a.name}"`) : agents.add(a.name)));
  s.authorities.forEach((a, i) => {
    if (authorities.has(a.name) || agents.has(a.name)) bad(`authorities[${i}].name`, `"${a.name}" already names an authority or agent`);
    authorities.add(a.name);
  });
  const gateways = new Set(s.gateways);
  if (gateways.size !== s.gateways.length) bad("gateways", "duplicate gateway id");
  if (!(s.activePolicy in s.policies)) bad("policy", `unknown policy "${s.activePolicy}"`);

  // artifact id → the id of its parent ("" for a root grant)
  const artifacts = new Map<string, string>();
  const grant = (g: GrantSpec, path: string): void => {
    if (artifacts.has(g.id)) bad(`${path}.id`, `duplicate grant/delegation id "${g.id}"`);
    if (!agents.has(g.to)) bad(`${path}.to`, `unknown agent "${g.to}"`);
    if (g.issuer !== undefined && !authorities.has(g.issuer) && !agents.has(g.issuer)) bad(`${path}.issuer`, `unknown authority or agent "${g.issuer}"`);
    if (g.policy !== undefined && !(g.policy in s.policies)) bad(`${path}.policy`, `unknown policy "${g.policy}"`);
    // A binding may name a gateway that is not in the scenario: that is how an artifact for
    // another site is written, and the deciding gateway must refuse it.
    artifacts.set(g.id, "");
  };
  const delegation = (d: DelegationSpec, path: string): void => {
    if (artifacts.has(d.id)) bad(`${path}.id`, `duplicate grant/delegation id "${d.id}"`);
    if (!artifacts.has(d.from)) bad(`${path}.from`, `"${d.from}" is not a grant or delegation declared before it`);
    if (!agents.has(d.to)) bad(`${path}.to`, `unknown agent "${d.to}"`);
    artifacts.set(d.id, d.from);
  };
  s.grants.forEach((g, i) => grant(g, `grants[${i}]`));
  s.delegations.forEach((d, i) => delegation(d, `delegations[${i}]`));

  const tasks = new Map<string, string>(); // task id → artifact it used
  const laterTasks = new Set<string>();
  const collect = (st: Step): void => {
    if (st.kind === "task" || st.kind === "replay") laterTasks.add(st.id);
    if (st.kind === "concurrently") st.steps.forEach(collect);
  };
  s.steps.forEach(collect);
  const pendingDuring = new Map<string, string>(); // task id → path of the fault or revocation that waits for it
  const armDuring = (task: string, path: string): void => {
    if (!laterTasks.has(task) || tasks.has(task)) bad(`${path}.during`, `"${task}" is not a task after this step`);
    else if (pendingDuring.has(task)) bad(`${path}.during`, `${pendingDuring.get(task) ?? ""} already waits for "${task}": one fault or revocation per task`);
    else pendingDuring.set(task, path);
  };

  const submit = (st: TaskStep | ReplayStep, path: string): void => {
    if (tasks.has(st.id)) bad(`${path}`, `duplicate task id "${st.id}"`);
    if (st.gateway !== undefined && !gateways.has(st.gateway)) bad(`${path}.gateway`, `unknown gateway "${st.gateway}"`);
    pendingDuring.delete(st.id);
    if (st.kind === "replay") {
      if (!tasks.has(st.of)) bad(`${path}.replay`, `"${st.of}" is not a task before this step`);
      tasks.set(st.id, tasks.get(st.of) ?? "");
      return;
    }
    if (!agents.has(st.agent)) bad(`${path}.agent`, `unknown agent "${st.agent}"`);
    if (!artifacts.has(st.uses)) bad(`${path}.uses`, `"${st.uses}" is not a grant or delegation declared before this step`);
    if (st.parent !== undefined && !tasks.has(st.parent)) bad(`${path}.parent`, `"${st.parent}" is not a task before this step`);
    for (const [j, t] of st.tamper.entries()) {
      if (t.kind === "sign-as" && !agents.has(t.agent)) bad(`${path}.tamper[${j}]`, `unknown agent "${t.agent}"`);
      if (t.kind === "splice-lineage" && !tasks.has(t.parent)) bad(`${path}.tamper[${j}]`, `"${t.parent}" is not a task before this step`);
      if (t.kind === "widen-scope" && artifacts.get(st.uses) === "") bad(`${path}.tamper[${j}]`, "widen-scope needs a task that uses a delegation");
    }
    // Lineage follows delegation (decide's lineage check): a task on a delegation is spawned by
    // the task that used its parent; a task on a root grant starts a lineage. Tampered tasks
    // break this on purpose, so they are exempt.
    const lineageTampered = st.tamper.some((t) => t.kind === "drop-lineage" || t.kind === "splice-lineage");
    const from = artifacts.get(st.uses);
    if (!lineageTampered && from !== undefined) {
      if (from === "" && st.parent !== undefined) bad(`${path}.parent`, `"${st.uses}" is a root grant: its task starts a lineage and has no parent`);
      if (from !== "" && st.parent === undefined) bad(`${path}.parent`, `"${st.uses}" is delegated from "${from}": name the task that used "${from}" as parent`);
      if (from !== "" && st.parent !== undefined && tasks.has(st.parent) && tasks.get(st.parent) !== from) {
        bad(`${path}.parent`, `task "${st.parent}" used "${tasks.get(st.parent) ?? ""}", but "${st.uses}" is delegated from "${from}"`);
      }
    }
    tasks.set(st.id, st.uses);
  };

  const runStep = (st: Step, path: string): void => {
    switch (st.kind) {
      case "task":
      case "replay":
        return submit(st, path);
      case "concurrently":
        return st.steps.forEach((c, j) => submit(c, `${path}.concurrently[${j}]`));
      case "grant":
        return grant(st.grant, path);
      case "delegate":
        return delegation(st.delegation, path);
      case "revoke":
        if (!artifacts.has(st.target)) bad(`${path}.revoke`, `"${st.target}" is not a grant or delegation declared before this step`);
        if (st.during !== undefined) armDuring(st.during, path);
        return;
      case "revokeKey":
        if (!agents.has(st.principal) && !authorities.has(st.principal)) bad(`${path}.revokeKey`, `unknown agent or authority "${st.principal}"`);
        if (st.during !== undefined) armDuring(st.during, path);
        return;
      case "changeAgent":
        if (!agents.has(st.agent)) bad(`${path}.changeAgent`, `unknown agent "${st.agent}"`);
        return;
      case "advance":
      case "heal":
        return;
      case "fault": {
        const f = st.fault;
        if ("during" in f && f.during !== undefined) armDuring(f.during, path);
        if ((f.kind === "clock-skew" || f.kind === "crash-gateway") && f.gateway !== undefined && !gateways.has(f.gateway)) bad(`${path}.gateway`, `unknown gateway "${f.gateway}"`);
        if (f.kind === "rotate-authority-key" && f.authority !== undefined && !authorities.has(f.authority)) bad(`${path}.authority`, `unknown authority "${f.authority}"`);
        if ((f.kind === "change-policy" || f.kind === "policy-rollback") && !(f.to in s.policies)) bad(`${path}.to`, `unknown policy "${f.to}"`);
        return;
      }
    }
  };
  s.steps.forEach((st, i) => runStep(st, `steps[${i}]`));
  s.invariants.forEach((inv, i) => inv.tasks.forEach((t) => (tasks.has(t) ? undefined : bad(`invariants[${i}]`, `unknown task "${t}"`))));
  return problems;
}

// ---------- loading ----------

function pathText(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)).join("");
}

/** Parse and validate one scenario from YAML text; `file` names it in errors. */
export function parseScenario(text: string, file = "<scenario>"): Scenario {
  const lines = new LineCounter();
  // uniqueKeys: a repeated key is almost always a copy-paste slip that would silently win.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, merge: true });
  if (doc.errors.length > 0) {
    throw new ScenarioFormatError(
      file,
      doc.errors.map((e) => ({ path: "", message: e.message.split("\n")[0] ?? e.message, line: lines.linePos(e.pos[0]).line })),
    );
  }
  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    // The deepest node that exists along the path gives the line to look at.
    for (let n = path.length; n >= 0; n--) {
      const node: unknown = doc.getIn(path.slice(0, n) as unknown[], true);
      if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
    }
    return undefined;
  };
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  const r = scenarioSchema.safeParse(raw);
  if (!r.success) {
    throw new ScenarioFormatError(
      file,
      r.error.issues.map((i) => {
        const line = lineOf(i.path);
        return { path: pathText(i.path), message: i.message, ...(line !== undefined ? { line } : {}) };
      }),
    );
  }
  const scenario = build(r.data, file);
  const problems = crossCheck(scenario);
  if (problems.length > 0) {
    throw new ScenarioFormatError(
      file,
      problems.map((p) => {
        const segs = p.path.split(/\.|\[|\]/).filter((x) => x !== "").map((x) => (/^\d+$/.test(x) ? Number(x) : x));
        const line = lineOf(segs);
        return line !== undefined ? { ...p, line } : p;
      }),
    );
  }
  return scenario;
}

export function loadScenario(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ScenarioFormatError(path, [{ path: "", message: `cannot read: ${e instanceof Error ? e.message : String(e)}` }], { cause: e });
  }
  return parseScenario(text, path);
}

/** Every *.yaml / *.yml in `dir`, by file name; all problems of all files in one error. */
export function loadScenarios(dir: string): Scenario[] {
  const files = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
  const out: Scenario[] = [];
  const problems: ScenarioProblem[] = [];
  for (const f of files) {
    try {
      out.push(loadScenario(join(dir, f)));
    } catch (e) {
      if (!(e instanceof ScenarioFormatError)) throw e;
      problems.push(...e.problems.map((p) => ({ ...p, file: e.file })));
    }
  }
  if (problems.length > 0) throw new ScenarioFormatError(resolve(dir), problems);
  const names = new Map<string, string>();
  for (const s of out) {
    const prev = names.get(s.name);
    if (prev !== undefined) throw new ScenarioFormatError(s.file, [{ path: "name", message: `"${s.name}" is also the name of ${basename(prev)}` }]);
    names.set(s.name, s.file);
  }
  return out;
}

// ---------- resolving artifacts (pure helpers for the simulator) ----------

/** base64url SHA-256 of the UTF-8 code string: what a gateway "measures" for an agent. */
export function codeDigest(code: string): string {
  return toB64u(sha256(new TextEncoder().encode(code)));
}

export interface ResolvedArtifact {
  scope: ArtifactScope;
  bindings: ArtifactBindings;
  validity: Validity;
}

function bindingsOf(b: BindingsSpec): ArtifactBindings {
  return defined({ gateways: b.gateways, agentCodeDigest: b.code === undefined ? undefined : codeDigest(b.code), environment: b.environment });
}

/** The scope, bindings and window of a grant issued at epoch ms `issuedAt`. */
export function resolveGrant(g: GrantSpec, start: number, issuedAt: number): ResolvedArtifact {
  const notBefore = g.window.notBefore !== undefined ? start + g.window.notBefore : issuedAt;
  const expiresAt = g.window.expiresAt !== undefined ? start + g.window.expiresAt : notBefore + (g.window.validFor ?? 0);
  return { scope: { actions: g.actions, resources: g.resources, constraints: g.constraints }, bindings: bindingsOf(g.bindings), validity: { notBefore, expiresAt } };
}

/** A delegation narrows its parent: omitted fields inherit; constraints and environment merge. */
export function resolveDelegation(d: DelegationSpec, parent: ResolvedArtifact, start: number): ResolvedArtifact {
  const notBefore = d.window.notBefore !== undefined ? start + d.window.notBefore : parent.validity.notBefore;
  const expiresAt =
    d.window.expiresAt !== undefined ? start + d.window.expiresAt : d.window.validFor !== undefined ? notBefore + d.window.validFor : parent.validity.expiresAt;
  const own = d.bindings ? bindingsOf(d.bindings) : {};
  const environment = { ...(parent.bindings.environment ?? {}), ...(own.environment ?? {}) };
  return {
    scope: {
      actions: d.actions ?? parent.scope.actions,
      resources: d.resources ?? parent.scope.resources,
      constraints: { ...parent.scope.constraints, ...(d.constraints ?? {}) },
    },
    bindings: defined({
      gateways: own.gateways ?? parent.bindings.gateways,
      agentCodeDigest: own.agentCodeDigest ?? parent.bindings.agentCodeDigest,
      environment: Object.keys(environment).length > 0 ? environment : undefined,
    }),
    validity: { notBefore, expiresAt },
  };
}
