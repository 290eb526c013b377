// The execution gateway (DESIGN §4, §6). It pulls task submissions from the shared JetStream
// work queue, gathers each task's evidence, claims its nonce and task id cluster-wide, decides, writes the
// decision ahead to its audit log, and only then runs the registered action handler. One
// XState actor per task; every path that is not a durable allow ends in `denied`.
import { availableParallelism } from "node:os";
import { setMaxListeners } from "node:events";
import { setTimeout as delay } from "node:timers/promises";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { createActor, fromPromise, toPromise } from "xstate";
import { canonicalize, utf8Bytes, type JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import { PUBLIC_KEY_LENGTH, SIGNATURE_LENGTH } from "../crypto/ed25519.ts";
import { sha256 } from "../crypto/hash.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signingInput, type Signed, type SignedKind } from "../crypto/signing.ts";
import { VerifyPool, type VerifyJob } from "../crypto/verify-pool.ts";
import { AuditStore } from "../audit/store.ts";
import { AuditStoreError } from "../audit/store-error.ts";
import { TRUST_FROM_LOG } from "../audit/trust-view.ts";
import { DENIED_BEFORE_EXECUTION } from "../audit/rederive.ts";
import type { AuditBackend } from "../audit/backend.ts";
import type { AppendReceipt } from "../audit/store.ts";
import type { CheckpointPayload, PreparedEntry } from "../audit/records.ts";
import { artifactId, spawnLineage } from "../core/artifacts.ts";
import { isChildTaskIdOf } from "../core/child-task-id.ts";
import { decide, primeVerified } from "../core/decide.ts";
import { assertAcceptableKey } from "../core/trust-store.ts";
import type {
  Check,
  CheckName,
  Decision,
  DecisionInput,
  DecisionLimits,
  HeartbeatPayload,
  NonceState,
  TaskClaimState,
  SignedArtifact,
  SignedLineage,
  SignedRequest,
  SignedRevocation,
} from "../core/types.ts";
import { judgeActivation, readPolicyEntry } from "../policy/activation.ts";
import { serveConsistencyProofs } from "../nats/proof-service.ts";
import { stopWatchWith } from "../nats/watch-guard.ts";
import { DENIED_CLAIM_MARK, DENIED_COPIES_MARK, KV_BUCKETS, MAX_DENIED_COPIES, MAX_MESSAGE_BYTES, POLICY_KEY, STREAMS, SUBJECTS, TASK_CONSUMER, TASK_ID_RE, parseTaskClaim, submissionIdOf, taskClaimKey, type TaskClaimValue } from "../nats/contract.ts";
import { claimOnce, ensureBus, type BusSetupOptions } from "../nats/setup.ts";
import { SpawnRefusedError, TaskRevokedError } from "./spawn-error.ts";
import { readSubject } from "../nats/read-subject.ts";
import { followStream, type FollowStreamOptions } from "../nats/follow-stream.ts";
import { submitTaskTracked } from "../runtime/client.ts";
import { systemClock } from "../runtime/clock.ts";
import { EvidenceIndex } from "./evidence-index.ts";
import { RevocationTally, applyGovernanceMessage } from "./governance-feed.ts";
import { Ledger } from "./ledger.ts";
import { describeFailure } from "../infra/error-causes.ts";
import { MAX_OUTCOME_BYTES, encodeOutcome, type DecisionMessage, type TaskOutcome } from "./outcome.ts";
import {
  taskMachine,
  type CollectEvidenceInput,
  type CommitAllowInput,
  type CommitResult,
  type DenialInfo,
  type Evidence,
  type ExecuteInput,
  type ExecutionResult,
  type RecordOutcomeInput,
  type VerifyInput,
  type VerifyResult,
} from "./task-machine.ts";
import { assertNever } from "../infra/assert-never.ts";

export const DEFAULT_LIMITS: DecisionLimits = { maxSkewMs: 5_000, maxDepth: 4, maxFeedAgeMs: 30_000, maxRequestAgeMs: 5 * 60_000 };

/** What an action handler sees. It runs only from `executing`, after a durable allow. */
export interface ActionContext {
  readonly taskId: string;
  readonly agent: string;
  readonly action: string;
  readonly resource: string;
  readonly args: JsonValue;
  readonly chain: readonly SignedArtifact[];
  readonly gatewayId: string;
  /**
   * Aborted when the gateway shuts down; when the handler overruns its timeout (its outcome is
   * then already recorded as failed); and, with a TaskRevokedError (code REVOKED) as its reason,
   * when a revocation touching this task arrives while it executes (its chain's artifacts, their
   * issuers or holders, the requesting agent, its lineage's signers). Being told is all: what the
   * handler has done stands, and its outcome is recorded as it ends.
   */
  readonly signal: AbortSignal;
  /**
   * Spawn a child task while this one executes. The gateway signs the spawn lineage event
   * naming this task's allow decision; after this handler returns, spawning is refused. The
   * child's task id must be in this task's namespace (childTaskId(ctx.taskId, label); Runtime.child
   * makes one): any other is refused (rejects with a SpawnRefusedError, code `LINEAGE_BROKEN`),
   * and nothing is signed or submitted. So is a spawn once a revocation touching this task is in
   * force (SpawnRefusedError, code `REVOKED`, reason `parent-revoked`): the child would be denied.
   * A task id that is not a subject token rejects with TypeError.
   *
   * The promise also has `late`, as Runtime.spawn's: when the child's answer says its handler was
   * cut off by its timeout (`timedOut`), `late` resolves with the signed late outcome once the
   * child's gateway records how it ended (within GatewayOptions.childLateWaitMs), else with
   * undefined; it never rejects. `const p = ctx.spawn(child); await p; (await p.late)?.status`
   */
  spawn(child: ChildTask): SpawnedChild;
  /**
   * The lineage a child of this task needs (this task's lineage plus a fresh spawn event signed
   * by the gateway), for callers that publish and submit the child themselves. Throws a
   * SpawnRefusedError (code `LINEAGE_BROKEN`), signing nothing, when `childTaskId` is not in this
   * task's namespace (childTaskId(ctx.taskId, label)), and (code `REVOKED`) once a revocation
   * touching this task is in force.
   */
  attest(childTaskId: string, childArtifact: SignedArtifact): SignedLineage[];
}

export type ActionHandler = (ctx: ActionContext) => Promise<JsonValue> | JsonValue;

/** What ctx.spawn returns: the child's outcome, and how a child cut off by its timeout ended. */
export type SpawnedChild = Promise<TaskOutcome> & { readonly late: Promise<TaskOutcome | undefined> };

export interface ChildTask {
  request: SignedRequest;
  args: JsonValue;
  /** The child's artifact, delegated from this task's artifact. */
  artifact: SignedArtifact;
}

export interface GatewayOptions {
  natsUrl: string | string[];
  gatewayId: string;
  gatewayKey: KeyPair;
  /** LevelDB directory of the audit log, or a backend (tests: fault injection, in-memory). */
  audit: string | AuditBackend;
  /** The audit fold's window (AuditStoreOptions.foldWindow). Tests only. */
  foldWindow?: number;
  /**
   * Snapshot the audit fold every this many entries, so that a restart after a crash folds at
   * most that many records plus those appended while one is written (Ledger). Default 0: only
   * at stop(), which always snapshots. Each periodic snapshot pauses this gateway only to copy
   * its fold out (about 0.1 s for a full window); encoding and writing go on beside the tasks
   * (docs/performance.md).
   */
  snapshotEveryEntries?: number;
  /** Authority keyIds trusted from the start (recorded as trust records on first start). */
  authorities: string[];
  /**
   * At start, stop trusting an authority the audit log trusts but `authorities` does not name
   * (recorded, with a warning). For deployments whose configuration is the whole trust (the
   * `failclosed gateway` command): a rotation done by restarting with the new key then drops the
   * old one, which would otherwise leave the feed stale for good once it stops heartbeating. Off
   * by default: keys added with addAuthority() at runtime stay trusted across restarts, until
   * removeAuthority().
   */
  retireUnconfiguredAuthorities?: boolean;
  /**
   * How long start() waits for the governance stream to be read up to date before it takes work
   * (default 5 s). Decisions deny until it is read, however long that takes; this only bounds
   * the wait.
   */
  governanceWaitMs?: number;
  /** Other gateways whose spawn lineage this gateway accepts. Its own key is always trusted. */
  peerGateways?: string[];
  clock?: () => number;
  limits?: Partial<DecisionLimits>;
  /** How long a task waits for its artifact chain and lineage. Default 2 s. */
  evidenceDeadlineMs?: number;
  /** Named environment attributes this gateway measures (e.g. {name: "staging"}). */
  attributes?: Record<string, string>;
  /** Measures the code digest of a requesting agent; null when unknown. */
  measureAgentCode?: (agentKeyId: string) => string | null;
  /** Measures the environment a requesting agent's task would run in; overrides `attributes`. */
  measureAttributes?: (agentKeyId: string) => Record<string, string> | null;
  checkpointEvery?: number;
  checkpointIntervalMs?: number;
  /**
   * Consistency proofs between sizes of this gateway's log, served to witnesses on
   * failclosed.audit.proof.<gatewayId> (nats/proof-service.ts): at most this many a second,
   * bursts of twice that, BUSY beyond. Default 100; 0 serves none.
   */
  proofRequestsPerSec?: number;
  /** Tasks in flight at once. Default 256. */
  maxInFlight?: number;
  /**
   * Worker threads that verify each task's signatures ahead of `decide` (crypto/verify-pool.ts).
   * Default: 1 when the machine has more than one core, else 0 (decide verifies inline).
   */
  verifyWorkers?: number;
  /** Time a spawn() waits for a child's outcome. Default 30 s. */
  childTimeoutMs?: number;
  /**
   * How long ctx.spawn()'s `late` listens, after a child answer that says its handler was cut off
   * (`timedOut`), for the late outcome saying how it ended. Default 600 s; 0: not at all.
   */
  childLateWaitMs?: number;
  /** Notified for every finished task (tests, simulator). */
  onOutcome?: (o: TaskOutcome) => void;
  /** Notified once a decision (allow or deny) is durably recorded. */
  onDecision?: (taskId: string, decision: Decision, seq: number) => void;
  /**
   * Fault-injection points for crash tests and scenarios. A hook that never resolves holds
   * the task there (the caller then crashes the gateway). Production code leaves these unset.
   */
  hooks?: {
    beforeVerify?: (taskId: string) => Promise<void>;
    afterAllowCommit?: (taskId: string) => Promise<void>;
    /** Just before the final decision is made and queued (one synchronous step). */
    beforeRecordDecision?: (taskId: string) => Promise<void>;
  };
  /** Redelivery wait for a task a gateway pulled but never acknowledged. Default 30 s. */
  taskAckWaitMs?: number;
  /** Longest a verify step (nonce claim included) or a durable commit may take before the task is denied. Default 10 s. */
  stepTimeoutMs?: number;
  /** Longest an action handler may run before its outcome is recorded as failed. Default 5 min. */
  handlerTimeoutMs?: number;
  /**
   * How often the active policy is read again beside its KV watch, which goes quiet if the
   * bucket's stream is deleted and made again (ms; 0 turns it off). Default 5 s.
   */
  policyRecheckMs?: number;
  /**
   * How long stop() waits for handlers already executing to finish, so their outcomes are
   * recorded. Default 25 s (under docker-compose's 30 s stop grace period).
   */
  stopGraceMs?: number;
  /** Notified of dropped bus messages and internal problems (never fatal). */
  onWarning?: (message: string) => void;
}

/** One task's side effects, which the gateway-wide machine (#taskMachine) invokes by flight key. */
interface TaskSteps {
  collectEvidence(input: CollectEvidenceInput, signal: AbortSignal): Promise<Evidence>;
  verify(input: VerifyInput): Promise<VerifyResult>;
  commitAllow(input: CommitAllowInput): Promise<CommitResult>;
  execute(input: ExecuteInput): Promise<ExecutionResult>;
  recordOutcome(input: RecordOutcomeInput): Promise<void>;
  recordDenial(input: DenialInfo): Promise<void>;
}

interface InFlight {
  taskId: string;
  /** Set before the task's actor starts; a step that finds none rejects (→ deny). */
  steps?: TaskSteps;
  send(event: { type: "BUS_LOST" } | { type: "REVOKED"; detail: string } | { type: "ABORT"; detail: string } | { type: "AUDIT_FAILED"; detail: string }): void;
  /** Artifact ids and key ids the task depends on, from the evidence seen so far. */
  touches(): Set<string>;
  executing: boolean;
  /** Set while the handler runs: a revocation touching the task tells it (ctx.signal). */
  revokedWhileExecuting?: ((target: string) => void) | undefined;
}

/** What a decision is told of the two single-use claims. */
type Claims = { nonce: NonceState; task: TaskClaimState };
type ClusterClaim = NonceState["cluster"];

/** `submissionId` only when the submission names a well-formed task id of its own: one a gateway named (`malformed-<seq>`) has no claims to read or make. */
type SubmitParse = { taskId: string; request: unknown; args: unknown; intakeErrors: string[]; submissionId: string | undefined };

/** The longest delay a Node.js timer honours; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The task machine's own evidence deadline runs this much past the evidence step's. */
const EVIDENCE_GRACE_MS = 500;

/** A step (or a handler) that overran its time: it may still be running. */
class StepTimeoutError extends Error {
  override readonly name = "StepTimeoutError";
}

/** Reject after `ms`: the machine turns a rejected step into a deny (a hung step must not hang the task). */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new StepTimeoutError(`${what} took longer than ${ms} ms`)), ms);
    // Not what keeps a gateway's process alive (its connection does): a handler that never
    // settles must not hold the process open for its whole timeout after stop().
    t.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

const PERMIT_ALL_FOR_PRECHECK = (): { decision: "allow"; reasons: string[]; errors: string[] } => ({ decision: "allow", reasons: [], errors: [] });

/** Room left beside an outcome's bytes under the server's max_payload (the publish's own framing varies by client). */
const OUTCOME_HEADROOM_BYTES = 1024;

/** How long a deny waits to read a claim (#readClaim) before it says it could not. */
const CLAIM_READ_MS = 1_000;

/**
 * A handler's result, taken once when it returns: its canonical text (hashed for the record's
 * resultDigest) and a plain-data copy parsed back from that text (sent in the outcome), so a
 * result the handler's code changes later, or a getter read anew, cannot make the recorded
 * digest and the delivered result differ. Throws CanonicalError when the result is not I-JSON.
 */
function snapshotResult(v: unknown): { digest: string; copy: JsonValue | undefined; unreadable?: string } {
  const text = canonicalize(v);
  const digest = toB64u(sha256(utf8Bytes(text)));
  // What a client could not read back (nesting beyond its parser's, a "__proto__" key) is not
  // sent: the digest still records it.
  const copy = tryParseStrict(text, { maxBytes: Number.MAX_SAFE_INTEGER });
  return copy.ok ? { digest, copy: copy.value } : { digest, copy: undefined, unreadable: copy.error.message };
}

/** Why a result snapshotResult took is not sent (its copy is undefined): said in time and late alike. */
function undeliveredWhy(taken: { unreadable?: string }): string {
  return `the result could not be delivered: a client could not read it (${taken.unreadable ?? "unreadable"}); see the audit log's resultDigest`;
}

/** What was thrown, as text, whatever it is (String() itself throws on some objects). */
function describeThrown(e: unknown): string {
  try {
    return e instanceof Error ? e.message : String(e);
  } catch {
    return "an unprintable value";
  }
}

/**
 * Whose a cluster claim is, as a deny reads it (#readClaim). "denied": a claim a deny made to
 * spend the task id (#copyMark), whichever submission it names: no gateway ran that one.
 */
type ClaimOwner = "none" | "this" | "other" | "deleted" | "denied" | "unread";

/** A claim as read from the bucket (#claimEntry), with the revision a compare-and-set needs. */
type ClaimEntry = { readonly kind: "none" | "deleted" | "unread" } | { readonly kind: "claim"; readonly claim: TaskClaimValue; readonly revision: number };

/** How many times a claim contended by denies naming copies is read and tried again (#spendTaskId, #claimTask). */
const CLAIM_ROUNDS = MAX_DENIED_COPIES + 4;

/**
 * The checks that, all passed, show a request is its holder's own: the authority's origin lineage
 * ties the root task id to the root artifact, each spawn lineage (signed by a trusted gateway)
 * ties a child task id to its artifact, the chain ties each artifact to its holder, and only the
 * leaf holder's key signs the request. A deny of it may spend the task id (#copyMark) without
 * letting anyone spend a task id not theirs, provided every child task id in its lineage is in
 * its parent's namespace (childIdsInNamespaces): such an id is one only its parent's handler could
 * have had a gateway sign a lineage for, so spending it burns nothing of another holder's. A spawn
 * lineage naming any other id (a peer of an earlier version signs any; `decide` does not check the
 * namespace, as recorded logs must replay) could name a victim's root task id (found by review: a
 * denied child burned one), and such a deny spends nothing. And not once revoked: that deny is
 * final without spending anything.
 */
const HOLDERS_OWN: readonly CheckName[] = ["request-signature", "chain-signatures", "lineage-signatures", "issuer", "identity", "delegation", "lineage", "revocation"];

/**
 * Every spawn event of a submission's lineage (all but the origin, first) names a child task id
 * in its parent's namespace (core/child-task-id.ts). Read from attacker bytes: anything out of
 * shape is false. With HOLDERS_OWN passed, the lineage is also known to run parent to child.
 */
function childIdsInNamespaces(lineage: readonly unknown[]): boolean {
  return lineage.slice(1).every((l) => {
    const p = typeof l === "object" && l !== null ? (l as { payload?: unknown }).payload : undefined;
    if (typeof p !== "object" || p === null) return false;
    const { parentTaskId, childTaskId } = p as { parentTaskId?: unknown; childTaskId?: unknown };
    return isChildTaskIdOf(parentTaskId, childTaskId);
  });
}


/**
 * ctx.spawn's answer: `outcome` with `late` on it. `late` waits for the outcome, then for the
 * late outcome the child's submission tracked (lateOf, read once the outcome is in), if any; it
 * never rejects, so a handler that ignores it leaves no unhandled rejection behind. (Nor does a
 * spawn the handler never awaits that is refused: its rejection is handled here, and goes unseen.)
 */
function spawned(outcome: Promise<TaskOutcome>, lateOf: (() => Promise<TaskOutcome | undefined> | undefined) | undefined): SpawnedChild {
  const late = outcome
    .then(
      () => lateOf?.() ?? undefined,
      () => undefined,
    )
    .catch(() => undefined);
  return Object.assign(outcome, { late });
}

/** A store's refusal only because close() has begun (AUDIT_CLOSED with no failure under it). */
function isClosingRefusal(e: unknown): boolean {
  return e instanceof AuditStoreError && e.code === "AUDIT_CLOSED" && e.cause === undefined;
}

/** A flight's in-flight slot: lent out while its handler waits on children (see #lendingSlot). */
interface FlightSlot {
  held: boolean;
  ended: boolean;
}

export class Gateway {
  readonly id: string;
  readonly #o: GatewayOptions;
  /** GatewayOptions.stepTimeoutMs: the bound on each step, record wait and stop() wait. */
  readonly #stepMs: number;
  readonly #clock: () => number;
  readonly #limits: DecisionLimits;
  readonly #actions = new Map<string, ActionHandler>();
  readonly #index: EvidenceIndex;
  readonly #verifyPool: VerifyPool;
  readonly #inFlight = new Map<string, InFlight>();
  /**
   * One provided machine for all tasks: `provide` rebuilds the whole state-node tree, which cost
   * about 0.2 ms per task, and a task only differs in its steps. Each invoked actor finds its
   * task's steps by the flight key the actor was started with; a missing entry rejects, which
   * the machine turns into a deny.
   */
  readonly #taskMachine = taskMachine.provide({
    actors: {
      collectEvidence: fromPromise<Evidence, CollectEvidenceInput>(async ({ input, signal }) => this.#stepsOf(input.taskId).collectEvidence(input, signal)),
      verify: fromPromise<VerifyResult, VerifyInput>(async ({ input }) => this.#stepsOf(input.taskId).verify(input)),
      commitAllow: fromPromise<CommitResult, CommitAllowInput>(async ({ input }) => this.#stepsOf(input.taskId).commitAllow(input)),
      execute: fromPromise<ExecutionResult, ExecuteInput>(async ({ input }) => this.#stepsOf(input.taskId).execute(input)),
      recordOutcome: fromPromise<void, RecordOutcomeInput>(async ({ input }) => this.#stepsOf(input.taskId).recordOutcome(input)),
      recordDenial: fromPromise<void, DenialInfo>(async ({ input }) => this.#stepsOf(input.taskId).recordDenial(input)),
    },
  });

  #stepsOf(flightKey: string): TaskSteps {
    const steps = this.#inFlight.get(flightKey)?.steps;
    if (steps === undefined) throw new Error(`no task in flight for ${flightKey}`);
    return steps;
  }
  readonly #abort = new AbortController();
  readonly #loops: Promise<void>[] = [];
  #nc!: NatsConnection;
  #js!: JetStreamClient;
  #nonceKv!: KV;
  #jsm!: JetStreamManager;
  /** Checkpoint publishes in flight: stop() lets them land before closing the connection. */
  readonly #publishing = new Set<Promise<void>>();
  /**
   * Whether this gateway's read of the governance stream has caught up with it (up to where the
   * stream stood when the read began, or a message with nothing pending after it) since the read
   * last (re)started: until then the feed does not count as fresh (a heartbeat read early could
   * vouch for revocations that come after it), whatever the start's bounded wait did.
   */
  #govCaughtUp = false;
  /** retireUnconfiguredAuthorities, put off until the governance stream is read (#govCaughtUpNow). */
  #retirePending = false;
  /**
   * Announcement checks running (#policyAnnounced): an authority said a newer policy version exists
   * than the one in force, and the bucket is being read again. Decisions deny meanwhile, while the
   * policy in force is still below the announced version (the watch often brings it first), so
   * none is made under a policy already known to be retired.
   */
  #policyChecks = 0;
  #policyKv!: KV;
  /** Policy watch events seen: a re-read that raced one is dropped (see #recheckPolicy). */
  #policyWatchEvents = 0;
  /** Policy changes, one after another (#policyStep). */
  #policyOps: Promise<void> = Promise.resolve();
  /** The entry last refused (its signature, or why it is unreadable): warned about once. */
  #policyRefused: string | undefined;
  /** Per authority, the newest policy version its heartbeats announced (#policyAnnounced). */
  readonly #policyAnnouncements = new Map<string, number>();
  /** Stream sequences of the task messages this gateway holds (waiting for a slot or in flight). */
  readonly #taken = new Set<number>();
  #ledger!: Ledger;
  /** The log once opened, for a start that fails after opening it (see #abandonStart). */
  #openedStore: AuditStore | undefined;
  #busConnected = true;
  /**
   * issuedAt of the newest verified heartbeat of each authority. The feed is as fresh as the
   * stalest trusted authority's: each heartbeat vouches for its own authority's revocations and
   * policy version (their counts are on its heartbeats only), so another authority's heartbeats
   * cannot stand in for one that went quiet (down, or its heartbeats deleted).
   */
  readonly #heartbeatAt = new Map<string, number>();
  /** Revocations the authorities' heartbeats announce against those the feed has shown. */
  readonly #tally = new RevocationTally();
  #missingWarned = false;
  /** A stale revocation feed was reported (once per stale stretch). */
  #staleWarned = false;
  readonly #startedAt: number;
  #consumers: ConsumerMessages[] = [];
  /** Why this gateway's log refused an entry while it ran (its ledger then unwritable for good), if it did. */
  #auditFailure: unknown = undefined;
  /** Set once this gateway's log turned out unable to vouch for itself: it takes no more tasks (#leaveQueue). */
  #leftQueue = false;
  #stopped = false;
  /** The one stop in progress or done (stop()). */
  #stopping: Promise<void> | undefined;
  #slots = 0;
  /**
   * Flights in progress per task id. The evidence index is keyed by task id, so it forgets a
   * task's evidence only when its last flight ends: a duplicate (or forged) submission naming
   * a task must not drop the evidence the real one is still collecting.
   */
  readonly #flightsPerTask = new Map<string, number>();
  /** Flights started: each task machine's key in #inFlight is unique. */
  #flights = 0;
  /** How often an unacknowledged task message is reported as still being worked on. */
  #workingEveryMs = 10_000;
  #slotWaiters: (() => void)[] = [];
  /** Tasks whose handler has been invoked: a handler never runs twice for one task. */
  readonly #executed = new Set<string>();

  private constructor(o: GatewayOptions) {
    this.#o = o;
    this.#stepMs = o.stepTimeoutMs ?? 10_000;
    this.id = o.gatewayId;
    this.#clock = o.clock ?? systemClock;
    this.#limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.#startedAt = this.#clock();
    this.#index = new EvidenceIndex(this.#clock);
    this.#verifyPool = new VerifyPool(o.verifyWorkers ?? (availableParallelism() > 1 ? 1 : 0), {
      onWorkerLost: (why) => this.#warn(`${why.message}: replacing it; signatures are verified on the main thread meanwhile`),
    });
    // Every task in flight listens on the stop signal (at most two listeners each, removed when
    // it settles), so the count is bounded by maxInFlight, not a leak: size Node's warning to it.
    setMaxListeners(2 * (o.maxInFlight ?? 256) + 16, this.#abort.signal);
  }

  /**
   * Have the verify pool check the evidence's signatures now, so `decide` finds them in its
   * memo. Only successes are recorded, and only as verifyEd25519 on another thread found them;
   * anything unconfirmed (malformed, pool busy or gone, timeout) decide verifies itself.
   */
  async #primeSignatures(ev: Evidence): Promise<void> {
    if (this.#verifyPool.size === 0) return;
    const jobs: VerifyJob[] = [];
    const add = (kind: SignedKind, item: unknown, signerField: string): void => {
      try {
        const s = item as { payload?: Record<string, unknown>; sig?: unknown } | null;
        const signer = s?.payload?.[signerField];
        const pub = fromB64u(signer, PUBLIC_KEY_LENGTH);
        const sig = fromB64u(s?.sig, SIGNATURE_LENGTH);
        if (s?.payload === undefined || pub === undefined || sig === undefined) return;
        jobs.push({ pub, sig, msg: signingInput(kind, s.payload) });
      } catch {
        // Not signable as is: decide reports it.
      }
    };
    add("request", ev.request, "agent");
    for (const a of ev.chain) add("artifact", a, "issuer");
    for (const l of ev.lineage) add("lineage", l, "signer");
    // Only a head start for decide, which verifies whatever this leaves out: never let a slow or
    // lost worker spend more than a quarter of the step's budget.
    const ok = await this.#verifyPool.verify(jobs, Math.min(1_000, this.#stepMs / 4));
    if (ok === undefined) return;
    jobs.forEach((j, i) => {
      if (ok[i] === true) primeVerified(j.pub, j.msg, j.sig);
    });
  }

  static async start(o: GatewayOptions): Promise<Gateway> {
    if (!TASK_ID_RE.test(o.gatewayId)) throw new TypeError("gatewayId must be a subject-safe token");
    for (const k of [...o.authorities, ...(o.peerGateways ?? []), o.gatewayKey.keyId]) assertAcceptableKey(k);
    const proofRate = o.proofRequestsPerSec ?? 100;
    if (!Number.isFinite(proofRate) || proofRate < 0) throw new TypeError("proofRequestsPerSec must be a number ≥ 0");
    // A timer given more than 2^31 − 1 ms (about 24.8 days) fires at once: every handler would be
    // cut off as timed out while it runs, every step denied. And 0, a negative or a non-number
    // time is no bound at all. Refused at the start, saying which.
    const durations = { evidenceDeadlineMs: o.evidenceDeadlineMs, childTimeoutMs: o.childTimeoutMs, childLateWaitMs: o.childLateWaitMs, taskAckWaitMs: o.taskAckWaitMs, stepTimeoutMs: o.stepTimeoutMs, handlerTimeoutMs: o.handlerTimeoutMs, stopGraceMs: o.stopGraceMs, governanceWaitMs: o.governanceWaitMs, checkpointIntervalMs: o.checkpointIntervalMs, policyRecheckMs: o.policyRecheckMs };
    for (const [k, v] of Object.entries(durations)) {
      if (v === undefined) continue;
      const zeroOk = k === "governanceWaitMs" || k === "policyRecheckMs" || k === "stopGraceMs" || k === "checkpointIntervalMs" || k === "childLateWaitMs";
      const max = k === "evidenceDeadlineMs" ? MAX_TIMER_MS - EVIDENCE_GRACE_MS : MAX_TIMER_MS;
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (v === 0 && !zeroOk) || v > max) {
        throw new TypeError(`${k} must be a number of ms ${zeroOk ? "from 0" : "above 0"} up to ${max} (a timer's longest); got ${String(v)}`);
      }
    }
    // decide() would deny every task on a limit that is not a number; say so at the start instead.
    for (const [k, v] of Object.entries({ ...DEFAULT_LIMITS, ...o.limits })) {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new TypeError(`limits.${k} must be a number ≥ 0`);
    }
    const g = new Gateway(o);
    try {
      await g.#start();
    } catch (e) {
      await g.#abandonStart();
      throw e;
    }
    return g;
  }

  /** Pull no more tasks (#pullTasks): flights under way are decided as they would be; messages not yet started are handed back. */
  #leaveQueue(): void {
    this.#leftQueue = true;
    this.#stopConsumers();
  }

  #stopConsumers(): void {
    for (const c of this.#consumers) {
      try {
        c.stop();
      } catch {
        // already closed
      }
    }
  }

  /**
   * A start that failed part way: release what it had opened (the connection, which would
   * otherwise reconnect forever and keep the process alive; the loops; the log, whose lock would
   * bar the next start), then rethrow in start().
   */
  async #abandonStart(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    this.#stopConsumers();
    const nc = this.#nc as NatsConnection | undefined;
    await nc?.close().catch(() => undefined);
    await Promise.allSettled(this.#loops);
    await this.#openedStore?.close().catch(() => undefined);
    await this.#verifyPool.close();
  }

  /**
   * Set the handler an allowed task of action `name` runs. Throws TypeError when `handler` is
   * not a function or `name` already has one: an action's handler is set once.
   */
  registerAction(name: string, handler: ActionHandler): void {
    if (typeof name !== "string" || name === "") throw new TypeError("registerAction: the action name must be a non-empty string");
    // Policy: found out here, not after an allow has spent a task's nonce on a handler that cannot run.
    if (typeof handler !== "function") throw new TypeError(`registerAction: the handler for ${JSON.stringify(name)} is not a function`);
    // Policy: what an allow for an action runs is fixed when it is registered; a second
    // registration (a name collision between modules, a late override) is a mistake to surface.
    if (this.#actions.has(name)) throw new TypeError(`registerAction: action ${JSON.stringify(name)} already has a handler`);
    this.#actions.set(name, handler);
  }

  /** This gateway's key id: the signer of its outcomes, checkpoints and spawn lineage. */
  get keyId(): string {
    return this.#o.gatewayKey.keyId;
  }

  get ledger(): Ledger {
    return this.#ledger;
  }

  /**
   * Why the audit log refused an entry while this gateway ran, if it did: from then on it denied
   * every task and took no more from the queue (undefined: it never did; refusals of a log
   * closing at stop() do not count). A service exits non-zero on it (gateway/service.ts).
   */
  get auditFailure(): unknown {
    return this.#auditFailure;
  }

  get connection(): NatsConnection {
    return this.#nc;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  #warn(msg: string): void {
    try {
      this.#o.onWarning?.(`[${this.id}] ${msg}`);
    } catch {
      // a broken warning sink must not affect decisions
    }
  }

  async #start(): Promise<void> {
    const o = this.#o;
    this.#nc = await connect({
      servers: o.natsUrl,
      name: `failclosed-gateway-${o.gatewayId}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
      pingInterval: 2_000,
      maxPingOut: 2,
      // nats.js otherwise builds an Error (with a stack trace) for every request, in case it
      // times out: about 3% of this thread at load, for a call-site context we never read
      // (a failed claim or publish is a deny or a warning either way).
      noAsyncTraces: true,
    });
    const bus = await ensureBus(this.#nc, this.#busOptions());
    this.#policyKv = bus.policyKv;
    this.#jsm = bus.jsm;
    this.#nonceKv = bus.nonceKv;
    this.#js = jetstream(this.#nc);

    const store = await AuditStore.open(o.audit, {
      origin: o.gatewayId,
      gatewayKey: o.gatewayKey,
      clock: this.#clock,
      ...(o.checkpointEvery !== undefined ? { checkpointEvery: o.checkpointEvery } : {}),
      ...(o.checkpointIntervalMs !== undefined ? { checkpointIntervalMs: o.checkpointIntervalMs } : {}),
      ...(o.foldWindow !== undefined ? { foldWindow: o.foldWindow } : {}),
      onCheckpoint: (cp) => this.#publishCheckpoint(cp),
      onPublishError: (e) => this.#warn(`checkpoint publish failed: ${String(e)}`),
    });
    this.#openedStore = store;
    const opened = store.openedFrom;
    if (opened.snapshotProblem !== undefined) this.#warn(`audit snapshot not used (${opened.snapshotProblem}): folded ${opened.recordsFolded} records from the log`);
    // The records before the snapshot are checked in the background; if they fail, the log
    // turns unwritable and every decision from then on is GOVERNANCE_UNAVAILABLE.
    void store.prefixCheck.then((r) => {
      if (r.ok) return;
      // Policy: a log that cannot vouch for itself decides nothing (it is unwritable: every task
      // would be GOVERNANCE_UNAVAILABLE). Those in flight are denied; the queue is left to the
      // other gateways, which can decide them (found by an operator's review: a gateway on a
      // tampered copy went on pulling, and denied half of a two-gateway cluster's valid tasks).
      this.#warn(`audit log ${r.code === "AUDIT_CORRUPT" ? "corrupt" : "unreadable"} before its snapshot (${r.problem}): denying the tasks in flight and leaving the task queue to the other gateways; start again on a sound log`);
      this.#leaveQueue();
    });
    this.#ledger = new Ledger(store, {
      snapshotEvery: o.snapshotEveryEntries ?? 0,
      onSnapshotError: (e) => this.#warn(`audit snapshot failed: ${String(e)}`),
      // Policy: from the first entry the log refuses (a full disk, a failed sync), every decision
      // is a deny. Say so once, with what the disk said, and leave the task queue to the other
      // gateways, as for a log that cannot vouch for itself above: pulling on would deny their
      // share of the cluster's valid tasks (found by a real EFBIG under a running gateway: every
      // task denied GOVERNANCE_UNAVAILABLE, and nothing said why). Not for the refusals of a log
      // closing because the gateway stops (AUDIT_CLOSED, nothing under it); a real failure while
      // stopping (a handler's outcome record, say) counts, and the service exits 2 on it.
      onFailure: (e) => {
        if (this.#stopped && isClosingRefusal(e)) return;
        this.#auditFailure = e;
        if (this.#stopped) return this.#warn(`audit log not writable while stopping (${describeFailure(e)})`);
        this.#warn(`audit log not writable (${describeFailure(e)}): denying the tasks in flight and leaving the task queue to the other gateways; start again on a log that can be written`);
        this.#leaveQueue();
      },
    });
    await this.#recoverAndTrust();
    const proofRate = o.proofRequestsPerSec ?? 100;
    // Drained with the connection at stop(), before the log closes.
    if (proofRate > 0) serveConsistencyProofs(this.#nc, o.gatewayId, store, { perSec: proofRate, now: () => performance.now(), gatewayKey: o.gatewayKey, onWarning: (m) => this.#warn(m) });

    this.#watchStatus();
    // The governance feed first, then the policy, then work. Read the governance stream up to
    // where it stood at start: the policy is judged knowing which keys are revoked (an entry a
    // revoked authority signed is never taken), and a task decided earlier would see no heartbeat
    // (a pointless deny) or miss a revocation.
    // (How much there is only shortens the wait: whether it was read is the consumer's to say.)
    const backlog = await this.#jsm.streams
      .info(STREAMS.gov)
      .then((i) => i.state.messages > 0)
      .catch(() => true);
    this.#loops.push(this.#followGovernance());
    this.#loops.push(this.#followEvidence());
    const waitMs = o.governanceWaitMs ?? 5_000;
    for (let i = 0; backlog && i < waitMs / 20 && !this.#govCaughtUp; i++) await new Promise((r) => setTimeout(r, 20));
    if (backlog && !this.#govCaughtUp) this.#warn(`the governance stream was not read up to date within ${waitMs} ms: denying every task until it is`);
    // Only once it is read: the revocations an authority about to be retired published are in
    // force first (else they would be dropped as from an untrusted issuer).
    if (this.#govCaughtUp) await this.#retireUnconfiguredAuthorities();
    else this.#retirePending = true;
    // A task is never pulled before this gateway knows what governs it (if it still doesn't,
    // decide denies).
    await this.#policyStep(() => this.#reloadPolicy());
    this.#loops.push(this.#watchPolicy());
    this.#loops.push(this.#recheckPolicy());
    // And the policy steps the backlog queued (a heartbeat announcing a newer policy version).
    await this.#policyOps;
    this.#loops.push(this.#pullTasks());
  }

  /** Crash recovery and trust roots, before any new work. */
  async #recoverAndTrust(): Promise<void> {
    const state = this.#ledger.state;
    const writes: Promise<AppendReceipt>[] = [];
    // An allow without an outcome means the process died while executing: record it as
    // interrupted. It is never re-executed (its nonce is spent; its task id is decided).
    for (const [taskId, t] of state.tasks) {
      if (t.status === "allowed") {
        writes.push(this.#ledger.append({ type: "outcome", taskId, status: "failed", error: "interrupted: gateway stopped before the outcome was recorded" }));
      }
    }
    for (const keyId of this.#o.authorities) {
      if (!state.authorities.has(keyId)) writes.push(this.#ledger.append({ type: "trust", change: { op: "authority.add", keyId } }));
    }
    for (const keyId of [this.#o.gatewayKey.keyId, ...(this.#o.peerGateways ?? [])]) {
      if (!state.gateways.has(keyId)) writes.push(this.#ledger.append({ type: "trust", change: { op: "gateway.add", keyId } }));
    }
    await Promise.all(writes);
  }

  /**
   * With retireUnconfiguredAuthorities, the configured authorities are the trusted set: a key the
   * log still trusts from an earlier run (a rotation done by restarting with the new key) is
   * removed, or it would leave the feed stale for good (every trusted authority must heartbeat).
   * Called once the governance backlog is read, so its revocations are in force here first.
   */
  async #retireUnconfiguredAuthorities(): Promise<void> {
    if (this.#o.retireUnconfiguredAuthorities !== true) return;
    const configured = new Set(this.#o.authorities);
    const writes: Promise<AppendReceipt>[] = [];
    for (const keyId of [...this.#ledger.state.authorities]) {
      if (configured.has(keyId)) continue;
      this.#warn(`authority ${keyId} is trusted in the audit log but not configured: no longer trusted`);
      writes.push(this.#ledger.append({ type: "trust", change: { op: "authority.remove", keyId } }));
    }
    await Promise.all(writes);
  }

  #watchStatus(): void {
    const run = async () => {
      for await (const s of this.#nc.status()) {
        switch (s.type) {
          case "disconnect":
          case "staleConnection":
            if (this.#busConnected) {
              this.#busConnected = false;
              this.#warn("bus disconnected: denying pending tasks");
              for (const t of this.#inFlight.values()) t.send({ type: "BUS_LOST" });
            }
            break;
          case "reconnect":
            this.#busConnected = true;
            break;
          default:
            break;
        }
      }
    };
    this.#loops.push(run().catch((e: unknown) => this.#warn(`status watcher ended: ${String(e)}`)));
  }

  /**
   * Policy changes one after another: each judges the entry against the state the one before it
   * left (a version check raced by another append could otherwise take an older version last).
   * Never rejects: a failed append leaves the ledger unwritable, which denies on its own.
   */
  #policyStep(step: () => Promise<void>): Promise<void> {
    const next = this.#policyOps.then(step).catch((e: unknown) => this.#warn(`policy change not recorded: ${String(e)}`));
    this.#policyOps = next;
    return next;
  }

  /** Withdraw the policy in force, if any. The projection changes at the call (Ledger.append), before any await. */
  async #withdrawPolicy(why: string | undefined): Promise<void> {
    if (this.#ledger.state.policy === undefined) return;
    if (why !== undefined) this.#warn(why);
    // Policy: a withdrawn policy means nothing governs; deny until a new one arrives.
    await this.#ledger.append({ type: "trust", change: { op: "policy.withdraw" } });
  }

  async #watchPolicy(): Promise<void> {
    try {
      const w = await this.#policyKv.watch({ key: POLICY_KEY });
      stopWatchWith(w, this.#nc, this.#abort.signal);
      for await (const e of w) {
        this.#policyWatchEvents++;
        if (e.operation === "PUT") await this.#policyStep(() => this.#applyPolicy(e.value));
        // Said, as the re-read below says it: every task is denied from here, and a delete is
        // unsigned (anyone who may write the bucket can make one; README, threat table).
        else await this.#policyStep(() => this.#withdrawPolicy(`the policy bucket's entry was ${e.operation === "PURGE" ? "purged" : "deleted"}: withdrawing the policy (every task denied, GOVERNANCE_UNAVAILABLE) until an authority publishes one`));
      }
    } catch (e) {
      if (!this.#stopped) this.#warn(`policy watch ended: ${String(e)}`);
    }
  }

  /**
   * Read the active policy again every `policyRecheckMs`, beside the watch. A KV watch does not
   * survive its bucket's stream being deleted and made again (it goes quiet, and a policy the
   * authority retired would stay in force here); this read does. What it finds is applied as a
   * watch event would be; a read that fails changes nothing (a lost bus denies on its own).
   */
  async #recheckPolicy(): Promise<void> {
    const every = this.#o.policyRecheckMs ?? 5_000;
    if (every <= 0) return;
    while (!this.#stopped) {
      await this.#pause(every);
      if (this.#stopped) return;
      try {
        const watched = this.#policyWatchEvents;
        const e = await this.#policyKv.get(POLICY_KEY);
        // The watch delivered something while this read was out: the read may be older than it.
        // The watch is alive; leave it to it.
        if (this.#policyWatchEvents !== watched) continue;
        if (e?.operation === "PUT") {
          const read = readPolicyEntry(e.value);
          const a = read.ok ? read.entry.activation.payload : undefined;
          const high = this.#ledger.state.policyHigh;
          // Only an entry other than the one in force is worth a look (judged as the watch would).
          if (a === undefined || this.#ledger.state.policy?.digest !== a.policyDigest || high?.version !== a.version) {
            await this.#policyStep(() => this.#applyPolicy(e.value, "the policy bucket holds an entry its watch did not deliver"));
          }
        } else {
          await this.#policyStep(() => this.#withdrawPolicy("the policy bucket holds no active policy, though its watch said nothing: withdrawing the policy"));
        }
      } catch (err) {
        if (!this.#stopped) this.#warn(`policy re-read failed: ${String(err)}`);
      }
    }
  }

  /**
   * Take a policy entry if a trusted authority signed it and its version is above the one in
   * force (policy/activation.ts). Anything else keeps the current policy, with one warning per
   * refused entry: a forged or unsigned entry, or a retired policy put back, never governs.
   */
  async #applyPolicy(value: Uint8Array, context?: string): Promise<void> {
    const read = readPolicyEntry(value);
    const refuse = (why: string, id: string): void => {
      if (this.#policyRefused === id) return;
      this.#policyRefused = id;
      this.#warn(`policy entry refused: ${why}; keeping the current policy`);
    };
    if (!read.ok) return refuse(read.why, `bad:${read.why}:${value.byteLength}`);
    const { document, digest, activation } = read.entry;
    const state = this.#ledger.state;
    const judged = judgeActivation(activation.payload, state.policyHigh, state.policy?.digest, {
      isAuthority: (k) => state.authorities.has(k),
      isRevokedKey: (k) => state.revokedKeys.has(k),
    });
    if (!judged.take) {
      if (!judged.same) refuse(judged.why, activation.sig);
      return;
    }
    const announced = this.#announcedPolicyVersion();
    if (activation.payload.version < announced) {
      return refuse(`version ${activation.payload.version} is older than the version ${announced} an authority's heartbeat announces`, activation.sig);
    }
    if (context !== undefined) this.#warn(`${context}: applying it`);
    this.#policyRefused = undefined;
    await this.#ledger.append({ type: "trust", change: { op: "policy.activate", policyDigest: digest, document: document as unknown as JsonValue, activation } });
  }

  /**
   * The newest policy version the trusted authorities' heartbeats announce (their own writes to
   * the bucket): an entry below it is not taken, even the one last in force.
   */
  #announcedPolicyVersion(): number {
    let max = 0;
    const state = this.#ledger.state;
    for (const [issuer, v] of this.#policyAnnouncements) if (state.authorities.has(issuer) && !state.revokedKeys.has(issuer) && v > max) max = v;
    return max;
  }

  /**
   * An authority's heartbeat says the newest policy version it knows of (written by its key or
   * a peer's) is `version`. Above the newest this gateway took, and still so after reading the
   * bucket again, the policy in force is not the active one (a retired entry put back before this
   * gateway first read the bucket, or an update lost): withdraw it, in the log, so every task is
   * denied until that version is read.
   */
  #policyAnnounced(issuer: string, version: number): void {
    if (version <= (this.#policyAnnouncements.get(issuer) ?? 0)) return;
    this.#policyAnnouncements.set(issuer, version);
    if (version <= (this.#ledger.state.policyHigh?.version ?? 0)) return;
    // After the policy changes queued before it (a watch event for this very version, usually)
    // and a fresh read of the bucket: only then is this gateway known to be behind, and withdraws.
    // Until then, decisions deny (#feedAt): none is made under a policy already known to be old.
    this.#policyChecks++;
    this.#policyStep(async () => {
      try {
        await this.#reloadPolicy();
        const state = this.#ledger.state;
        const high = state.policyHigh?.version ?? 0;
        const announced = this.#announcedPolicyVersion();
        if (high >= announced) return;
        await this.#withdrawPolicy(`authority ${issuer} announces policy version ${announced}; the policy in force here is version ${high}: withdrawing it (every task denied, GOVERNANCE_UNAVAILABLE) until that version is read`);
      } finally {
        this.#policyChecks--;
      }
    }).catch(() => undefined);
  }

  async #reloadPolicy(): Promise<void> {
    try {
      const e = await this.#policyKv.get(POLICY_KEY);
      if (e?.operation === "PUT") await this.#applyPolicy(e.value);
    } catch (err) {
      if (!this.#stopped) this.#warn(`policy re-read failed: ${String(err)}`);
    }
  }

  /**
   * Follow the governance stream from its first message, and follow it again whenever the read
   * ends (the stream deleted and made again, a consumer lost): without it, the feed goes stale and
   * every task is denied for good. Each (re)start reads the whole stream again, and the feed is
   * not fresh until that read has caught up.
   */
  async #followGovernance(): Promise<void> {
    const fx = {
      isAuthority: (k: string) => this.#ledger.state.authorities.has(k),
      onRevocation: (r: SignedRevocation) => this.#applyRevocation(r),
      onHeartbeat: (h: HeartbeatPayload) => this.#onHeartbeat(h),
      onRejected: (subject: string, why: string) => this.#warn(`governance message on ${subject} dropped: ${why}`),
    };
    await this.#followWhole(STREAMS.gov, "governance feed", (target) => {
      this.#govCaughtUp = false;
      return (m: JsMsg) => {
        applyGovernanceMessage(m.subject, m.data, fx);
        // Where the stream stood as this read began: reading that far is caught up (or a message
        // with nothing pending after it, when that answer was lost). (Nothing pending alone may
        // never happen while heartbeats keep coming faster than a loaded gateway reads them.)
        if (!this.#govCaughtUp && (m.info.pending === 0 || m.seq >= target)) this.#govCaughtUpNow();
      };
    }, () => {
      // Policy: while it is not read, the feed is not fresh and decide denies on its own.
      this.#govCaughtUp = false;
    });
  }

  /** followStream, stopped with the gateway. */
  async #followWhole(stream: string, what: string, begin: FollowStreamOptions["begin"], ended?: () => void): Promise<void> {
    await followStream(this.#nc, this.#js, this.#jsm, { stream, what, begin, ...(ended ? { ended } : {}), onWarning: (m) => this.#warn(m), signal: this.#abort.signal });
  }

  #govCaughtUpNow(): void {
    this.#govCaughtUp = true;
    if (!this.#retirePending) return;
    this.#retirePending = false;
    // The projection changes now (Ledger.append), before the next decision; durability follows.
    this.#retireUnconfiguredAuthorities().catch((e: unknown) => this.#warn(`retiring unconfigured authorities not recorded: ${String(e)}`));
  }

  #onHeartbeat(h: HeartbeatPayload): void {
    this.#tally.heartbeat(h);
    const before = this.#heartbeatAt.get(h.issuer);
    if (before === undefined || h.issuedAt > before) this.#heartbeatAt.set(h.issuer, h.issuedAt);
    if (h.policyVersion !== undefined) this.#policyAnnounced(h.issuer, h.policyVersion);
    // Fresh again only if this heartbeat makes it so (a backlog replayed is still stale).
    const feed = this.#feedAt();
    if (this.#staleWarned && feed.oldest !== null && this.#clock() - feed.oldest <= this.#limits.maxFeedAgeMs) {
      this.#staleWarned = false;
      this.#warn("revocation feed fresh again");
    }
  }

  /**
   * The feed's time: the oldest of the trusted authorities' newest heartbeats (null while one
   * has sent none), or the newest when that is from the future (decide denies on either).
   */
  #feedAt(): { at: number | null; oldest: number | null; stalest: string | undefined } {
    // Not read up to where it stood at start, or an announced policy version being looked for:
    // nothing on the feed vouches for this gateway's view yet.
    if (!this.#govCaughtUp || (this.#policyChecks > 0 && this.#announcedPolicyVersion() > (this.#ledger.state.policyHigh?.version ?? 0))) {
      return { at: null, oldest: null, stalest: undefined };
    }
    const state = this.#ledger.state;
    let oldest: number | null = null;
    let newest: number | null = null;
    let stalest: string | undefined;
    for (const a of state.authorities) {
      // A revoked authority key vouches for nothing: it is not waited for either.
      if (state.revokedKeys.has(a)) continue;
      const t = this.#heartbeatAt.get(a);
      if (t === undefined) return { at: null, oldest: null, stalest: a };
      if (oldest === null || t < oldest) {
        oldest = t;
        stalest = a;
      }
      if (newest === null || t > newest) newest = t;
    }
    const future = newest !== null && newest - this.#clock() > this.#limits.maxSkewMs;
    return { at: future ? newest : oldest, oldest, stalest };
  }

  /** The first of `ids` (artifact ids, key ids) revoked in this gateway's fold, as "artifact X" or "key K". */
  #revokedAmong(ids: ReadonlySet<string>): string | undefined {
    const state = this.#ledger.state;
    for (const id of ids) {
      if (state.revokedArtifacts.has(id)) return `artifact ${id}`;
      if (state.revokedKeys.has(id)) return `key ${id}`;
    }
    return undefined;
  }

  #applyRevocation(r: SignedRevocation): void {
    this.#tally.revocation(r);
    const t = r.payload.target;
    const state = this.#ledger.state;
    const known = t.type === "artifact" ? state.revokedArtifacts.has(t.id) : state.revokedKeys.has(t.keyId);
    if (!known) {
      this.#ledger.append({ type: "revocation", revocation: r }).catch((e: unknown) => this.#warn(`revocation not recorded: ${String(e)}`));
    }
    // The policy in force was activated by the key now revoked: it no longer has a signer anyone
    // trusts. Withdrawn at once (the projection changes before the next decision), until a
    // trusted authority activates one.
    const high = state.policyHigh;
    if (t.type === "key" && high !== undefined && high.issuer === t.keyId && state.policy?.digest === high.digest) {
      this.#withdrawPolicy(`the policy in force was activated by ${t.keyId}, now revoked: withdrawing it (every task denied, GOVERNANCE_UNAVAILABLE) until a trusted authority activates one`).catch((e: unknown) =>
        this.#warn(`policy withdrawal not recorded: ${String(e)}`),
      );
    }
    const target = t.type === "artifact" ? t.id : t.keyId;
    for (const task of this.#inFlight.values()) {
      if (!task.touches().has(target)) continue;
      // Before execution, a deny. During it, the handler is told (ctx.signal) and spawns no more.
      if (!task.executing) task.send({ type: "REVOKED", detail: `${t.type} ${target}` });
      else task.revokedWhileExecuting?.(`${t.type} ${target}`);
    }
  }

  async #followEvidence(): Promise<void> {
    let n = 0;
    await this.#followWhole(STREAMS.evidence, "evidence feed", () => (m: JsMsg) => {
      this.#index.add(m.subject, m.data);
      if (++n % 1024 === 0) this.#index.evict(10 * 60_000);
    });
  }

  /** Take an in-flight slot; `whileWaiting` runs every #workingEveryMs until one is free. */
  async #slot(whileWaiting: () => void): Promise<void> {
    const max = this.#o.maxInFlight ?? 256;
    if (this.#slots >= max) {
      const keepAlive = setInterval(whileWaiting, this.#workingEveryMs);
      keepAlive.unref();
      try {
        while (this.#slots >= max) await new Promise<void>((r) => this.#slotWaiters.push(r));
      } finally {
        clearInterval(keepAlive);
      }
    }
    this.#slots++;
  }

  #release(): void {
    this.#slots--;
    this.#slotWaiters.shift()?.();
  }

  /**
   * Take work for as long as the gateway runs. The shared durable consumer can vanish under a
   * running gateway (deleted by anyone with stream API rights, or by an operator): nats.js then
   * stops delivering without a word. Consuming aborts on a missing consumer or stream instead,
   * and this loop says so, makes the consumer again (ensureBus) and resumes a second later.
   */
  async #pullTasks(): Promise<void> {
    while (!this.#stopped && !this.#leftQueue) {
      try {
        await this.#consumeTasks();
      } catch (e) {
        if (!this.#stopped && !this.#leftQueue) this.#warn(`task consumer ended: ${String(e)}`);
      }
      if (this.#stopped || this.#leftQueue) return;
      this.#warn("task consumer lost: making it again and resuming in 1 s");
      await this.#pause(1_000);
      if (this.#stopped) return;
      try {
        await ensureBus(this.#nc, this.#busOptions());
      } catch (e) {
        this.#warn(`could not make the task consumer again: ${String(e)}`);
      }
    }
  }

  #busOptions(): BusSetupOptions {
    return { guards: "required", ...(this.#o.taskAckWaitMs !== undefined ? { taskAckWaitMs: this.#o.taskAckWaitMs } : {}), onWarning: (m) => this.#warn(m) };
  }

  /** Wait `ms`, or less if the gateway stops meanwhile. */
  async #pause(ms: number): Promise<void> {
    // (Rejects only when the gateway stops.)
    await delay(ms, undefined, { signal: this.#abort.signal }).catch(() => undefined);
  }

  async #consumeTasks(): Promise<void> {
    const c = await this.#js.consumers.get(STREAMS.tasks, TASK_CONSUMER);
    // Tell the server "still working" well inside the consumer's ack wait (set by whichever
    // gateway created it): a task redelivered while still in flight would run twice.
    const ackWaitMs = await c.info().then(
      (i) => (i.config.ack_wait ?? 30_000_000_000) / 1e6,
      () => this.#o.taskAckWaitMs ?? 30_000,
    );
    this.#workingEveryMs = Math.max(100, Math.floor(ackWaitMs / 3));
    const msgs = await c.consume({ max_messages: Math.min(this.#o.maxInFlight ?? 256, 512), abort_on_missing_resource: true });
    this.#consumers.push(msgs);
    // Left before this consumer was made: it takes nothing.
    if (this.#leftQueue) msgs.stop();
    for await (const m of msgs) {
      if (this.#stopped) break;
      // The same message again while this gateway still has it (a consumer made again delivers
      // every message not yet acknowledged): the flight that has it answers for it, and it is
      // never handed back while that flight runs (found by review).
      const streamSeq = m.info.streamSequence;
      if (this.#taken.has(streamSeq)) continue;
      if (this.#leftQueue) {
        // Delivered before the consumer stopped: handed back at once, not after the ack wait.
        try {
          m.nak();
        } catch {
          // the connection is gone: it comes back after the ack wait
        }
        continue;
      }
      this.#taken.add(streamSeq);
      // A message waiting for a slot is held by this gateway too.
      await this.#slot(() => m.working());
      if (this.#stopped || this.#leftQueue) {
        // stop() began, or the queue was left, while this message waited: hand it back for
        // another gateway (not decided here: a deny of it would be final).
        this.#taken.delete(streamSeq);
        this.#release();
        try {
          m.nak();
        } catch {
          // bus gone: it is redelivered after the ack wait anyway
        }
        // Left the queue: the others it holds are handed back as they come out (above).
        if (this.#stopped) break;
        continue;
      }
      const slot: FlightSlot = { held: true, ended: false };
      this.#runTask(m, slot)
        .catch((e: unknown) => this.#warn(`task crashed outside its machine: ${String(e)}`))
        .finally(() => {
          this.#taken.delete(streamSeq);
          slot.ended = true;
          // Not if lent out to a child it no longer waits for (see #lendingSlot).
          if (slot.held) this.#release();
        });
    }
  }

  #parseSubmit(m: JsMsg): SubmitParse {
    const intakeErrors: string[] = [];
    let request: unknown = null;
    let args: unknown = null;
    let submissionId: string | undefined;
    const parsed = tryParseStrict(m.data, { maxBytes: MAX_MESSAGE_BYTES });
    if (!parsed.ok) intakeErrors.push(`submit: ${parsed.error.code}`);
    else if (typeof parsed.value !== "object" || parsed.value === null || Array.isArray(parsed.value)) intakeErrors.push("submit: not an object");
    else {
      const keys = Object.keys(parsed.value).sort().join(",");
      if (keys !== "args,request") intakeErrors.push(`submit: fields ${keys}`);
      request = parsed.value["request"] ?? null;
      args = parsed.value["args"] ?? null;
      submissionId = submissionIdOf(parsed.value);
    }
    const named = (request as { payload?: { taskId?: unknown } } | null)?.payload?.taskId;
    const wellNamed = typeof named === "string" && TASK_ID_RE.test(named);
    // Policy: no claim is read or written for a task id the gateway made up (found by review:
    // each junk submit wrote a denied-copies claim on task.malformed-<seq>, a key a real task id
    // may be), and no client can be waiting on a submission that names none.
    return { taskId: wellNamed ? named : `malformed-${m.seq}`, request, args, intakeErrors, submissionId: wellNamed ? submissionId : undefined };
  }

  #health(): DecisionInput["health"] {
    // Every task is denied while the feed is stale: say so once, not only in each deny.
    const feed = this.#feedAt();
    if (!this.#staleWarned && (feed.oldest === null ? this.#clock() - this.#startedAt : this.#clock() - feed.oldest) > this.#limits.maxFeedAgeMs) {
      this.#staleWarned = true;
      const who = feed.stalest === undefined ? "any trusted authority yet (or not read up to date)" : `authority ${feed.stalest}`;
      this.#warn(`revocation feed ${feed.oldest === null ? `has no heartbeat from ${who}` : `is stale (${who})`}: denying every task (GOVERNANCE_UNAVAILABLE) until a heartbeat from every trusted authority is fresh`);
    }
    const missing = this.#tally.missing;
    if (missing > 0 !== this.#missingWarned) {
      this.#missingWarned = missing > 0;
      this.#warn(
        missing > 0
          ? `revocation feed incomplete: authority heartbeats announce ${missing} revocation(s) this gateway has not seen (purged, or diverted from ${STREAMS.gov}?): denying every task (GOVERNANCE_UNAVAILABLE) until they arrive`
          : "revocation feed complete again",
      );
    }
    return {
      busConnected: this.#busConnected && !this.#nc.isClosed(),
      auditWritable: this.#ledger.writable,
      revocationFeedAt: feed.at,
      ...(missing > 0 ? { revocationsMissing: missing } : {}),
    };
  }

  #environment(agent: unknown): DecisionInput["environment"] {
    let code: string | null = null;
    try {
      code = typeof agent === "string" ? (this.#o.measureAgentCode?.(agent) ?? null) : null;
    } catch {
      code = null;
    }
    let attributes: Record<string, string> = { ...this.#o.attributes };
    try {
      const measured = typeof agent === "string" ? this.#o.measureAttributes?.(agent) : undefined;
      if (measured) attributes = { ...measured };
    } catch {
      // Policy: an environment we cannot measure binds nothing; bindings then fail to match.
      attributes = {};
    }
    return { gatewayId: this.id, agentCodeDigest: code, attributes };
  }

  #buildInput(ev: Evidence, claims: Claims): DecisionInput {
    const agent = (ev.request as { payload?: { agent?: unknown } } | null)?.payload?.agent;
    return {
      request: ev.request,
      args: ev.args,
      chain: ev.chain,
      lineage: ev.lineage,
      // By reference: decide is given the ledger's view of the same fold (trust-view.ts).
      trust: TRUST_FROM_LOG,
      environment: this.#environment(agent),
      now: this.#clock(),
      limits: this.#limits,
      nonce: claims.nonce,
      taskClaim: claims.task,
      health: this.#health(),
      intakeErrors: ev.intakeErrors,
    };
  }

  /**
   * Queue the evidence, then decide and queue the decision record, in one synchronous step (see
   * ledger.ts). The local claim states are read right before the decision is queued, so they
   * are the fold at the decision's own position, as replay sees it. `cluster` is what the KV
   * claims returned.
   */
  #decideAndRecord(taskId: string, ev: Evidence, nonceKey: string, cluster: { nonce: ClusterClaim; task: ClusterClaim }): { verify: VerifyResult; write: Promise<AppendReceipt> } {
    this.#recordEvidence(taskId, ev);
    const local = this.#localClaims(taskId, nonceKey);
    const claims: Claims = { nonce: { ...local.nonce, cluster: cluster.nonce }, task: { ...local.task, cluster: cluster.task } };
    const input = this.#buildInput(ev, claims);
    const decision = decide(input, undefined, this.#ledger.trustView());
    let recorded: JsonValue;
    let prepared: PreparedEntry;
    try {
      // The trust state is recorded by reference (trust-view.ts): it is the fold of the log
      // before this record. Nothing in `input` is mutated after this point, so it is recorded
      // as is. Encoded here once: a failure proves it is not I-JSON, and the store writes these
      // very bytes.
      recorded = input as unknown as JsonValue;
      prepared = this.#ledger.prepare({ type: "decision", taskId, input: recorded, decision });
    } catch {
      // Input that cannot be recorded cannot be replayed: record what can be, and deny.
      const fallback = this.#buildInput({ request: null, args: null, chain: [], lineage: [], intakeErrors: ["unrecordable input"] }, claims);
      recorded = fallback as unknown as JsonValue;
      const denied = decide(fallback, undefined, this.#ledger.trustView());
      const write = this.#ledger.append({ type: "decision", taskId, input: recorded, decision: denied });
      return { verify: { decision: denied, input: recorded }, write };
    }
    const write = this.#ledger.appendPrepared(prepared);
    return { verify: { decision, input: recorded }, write };
  }

  /**
   * The evidence a decision consumed, as `evidence` records ahead of it: an auditor checks that
   * every allow rests on evidence the log shows arrived for that task. Queued in the same tick
   * as the decision; a failed write fails the decision's batch too.
   */
  #recordEvidence(taskId: string, ev: Evidence): void {
    const isSigned = (x: unknown): x is Signed<JsonValue> =>
      typeof x === "object" && x !== null && !Array.isArray(x) && "payload" in x && typeof (x as { sig?: unknown }).sig === "string";
    const items: ["request" | "artifact" | "lineage", unknown][] = [["request", ev.request], ...ev.chain.map((a) => ["artifact", a] as ["artifact", unknown]), ...ev.lineage.map((l) => ["lineage", l] as ["lineage", unknown])];
    for (const [kind, signed] of items) {
      if (!isSigned(signed)) continue;
      this.#ledger.append({ type: "evidence", taskId, kind, signed }).catch(() => undefined);
    }
  }

  /** Claims as this gateway's log sees them now, before any cluster claim. */
  #localClaims(taskId: string, nonceKey: string): Claims {
    return {
      nonce: { key: nonceKey, local: nonceKey !== "" && this.#ledger.nonceConsumed(nonceKey) ? "consumed" : "fresh", cluster: "not-attempted" },
      task: { taskId, local: this.#ledger.taskDecided(taskId) ? "decided" : "fresh", cluster: "not-attempted" },
    };
  }

  /**
   * KV create is create-only: exactly one claim of a key wins cluster-wide. The nonce is keyed
   * by itself, the task id by taskClaimKey (nonces hold no '.', so the two never meet). With a
   * `revision`, the key is written only while it is at that revision: how a denied-copies claim
   * is replaced (#spendTaskId, #claimTask). "taken": the key was not where the write expected.
   */
  async #claim(key: string, value: Record<string, unknown>, revision = 0): Promise<ClusterClaim> {
    if (!this.#busConnected) return "unavailable";
    try {
      await claimOnce(this.#js, key, JSON.stringify({ ...value, gatewayId: this.id }), revision);
      return "claimed";
    } catch (e) {
      const msg = String((e as Error | undefined)?.message ?? e);
      if (/wrong last sequence|key exists|exists/i.test(msg)) return "taken";
      return "unavailable";
    }
  }

  async #runTask(m: JsMsg, slot: FlightSlot): Promise<void> {
    const sub = this.#parseSubmit(m);
    const { taskId } = sub;
    const working = setInterval(() => m.working(), this.#workingEveryMs);
    working.unref(); // a task stuck in a crashed gateway must not keep the process alive
    let decisionWrite: Promise<AppendReceipt> | undefined;
    let verifyResult: VerifyResult | undefined;
    let evidence: Evidence | undefined;
    let decisionSeq: number | undefined;
    let childWindowOpen = false;
    /** Children this flight's handler is waiting on (see #lendingSlot). */
    const lease = { waiting: 0, slot };
    // This flight's mark in #executed, dropped when the flight ends: from then on the log
    // (taskDecided) and the cluster claim refuse the task id, and the set stays small.
    let claimedExecution = false;
    /** The claims this flight itself won, and its nonce's key once known: a deny looks up the others (#copyMark). */
    const claims: { nonceKey: string; wonNonce: boolean; wonTask: boolean; lineage: readonly unknown[] } = { nonceKey: "", wonNonce: false, wonTask: false, lineage: [] };
    /** Settles once this flight's outcome record is written (true) or will not be (false): a late outcome follows it (#watchLateHandler). */
    let outcomeRecorded: (written: boolean) => void = () => undefined;
    const outcomeWritten = new Promise<boolean>((r) => (outcomeRecorded = r));
    const deadline = this.#o.evidenceDeadlineMs ?? 2_000;

    const leafId = (sub.request as { payload?: { artifactId?: unknown } } | null)?.payload?.artifactId;
    const agentId = (sub.request as { payload?: { agent?: unknown } } | null)?.payload?.agent;
    const entry: InFlight = {
      taskId,
      send: () => undefined,
      executing: false,
      // Computed when a revocation arrives, from whatever evidence is in so far, so a task
      // still waiting for part of its chain is stopped as soon as any known part is revoked.
      touches: () => {
        const out = new Set<string>();
        if (typeof agentId === "string") out.add(agentId);
        const ev = evidence ?? (typeof leafId === "string" ? this.#index.assemble(taskId, leafId) : undefined);
        for (const art of (ev?.chain ?? []) as SignedArtifact[]) {
          out.add(artifactId(art));
          out.add(art.payload.issuer);
          out.add(art.payload.holder);
        }
        for (const l of (ev?.lineage ?? []) as SignedLineage[]) out.add(l.payload.signer);
        return out;
      },
    };
    const resultByTask = new Map<string, JsonValue>();
    const resultProblemByTask = new Map<string, string>();
    /** Set when the handler was cut off by its timeout: the outcome says so (`timedOut`), and a late one may follow. */
    let handlerTimedOut = false;
    /** Set once the execution's outcome record is written: only then can a late one follow it. */
    let outcomeWasRecorded = false;

    const verifyStep = async (input: { taskId: string; evidence: Evidence }): Promise<VerifyResult> => {
      const ev = input.evidence;
      evidence = ev;
      const leaf = ev.chain[ev.chain.length - 1] as SignedArtifact | undefined;
      const key = typeof leaf?.payload?.nonce === "string" ? leaf.payload.nonce : "";
      claims.nonceKey = key;
      // Kept for a deny that may spend the task id (#spendTaskId): only that reads it.
      claims.lineage = ev.lineage;
      await this.#primeSignatures(ev);
      // Pre-check everything but the nonce, so a forged request cannot burn a real nonce.
      // Cedar is left to the recorded decision: a policy deny is the holder's own request
      // failing, which may spend its nonce; forgery is caught by the signature checks.
      // A pre-check that fails only for want of the two claims (nonce, then task id) goes on to
      // make them; a task id already decided here fails it with REPLAYED.
      const pre = decide(this.#buildInput(ev, this.#localClaims(taskId, key)), PERMIT_ALL_FOR_PRECHECK, this.#ledger.trustView());
      const onlyClaimsMissing = pre.checks.every((c) => c.ok || c.check === "nonce" || (c.check === "task" && c.code !== "REPLAYED"));
      // The machine may have left `verifying` during any await here (revoked, bus lost,
      // aborted) and recorded its deny: then neither claim the nonce nor record a second decision.
      const superseded = (): boolean => decisionWrite !== undefined;
      if (superseded()) throw new Error("task was denied while verifying");
      let cluster: ClusterClaim = "not-attempted";
      let taskCluster: ClusterClaim = "not-attempted";
      if (onlyClaimsMissing && key !== "") {
        const claimValue = { taskId, nonce: key, submissionId: sub.submissionId ?? "" };
        cluster = await this.#claim(key, claimValue);
        claims.wonNonce = cluster === "claimed";
        // The task id only once the nonce is won: copies of one submission then contend for the
        // nonce alone, and a copy that lost it spends nothing more (claims made side by side
        // could cross, one copy winning each, and burn both for good).
        if (cluster === "claimed") {
          taskCluster = await this.#claimTask(taskId, claimValue, sub.submissionId);
          claims.wonTask = taskCluster === "claimed";
        }
      }
      await this.#o.hooks?.beforeRecordDecision?.(taskId);
      if (superseded()) throw new Error("task was denied while verifying");
      const r = this.#decideAndRecord(taskId, ev, key, { nonce: cluster, task: taskCluster });
      decisionWrite = r.write;
      verifyResult = r.verify;
      return r.verify;
    };
    const commitStep = async (): Promise<{ decisionId: string; seq: number }> => {
      if (!decisionWrite) throw new Error("no decision record queued");
      const receipt = await decisionWrite;
      decisionSeq = receipt.seq;
      this.#notifyDecision(taskId, verifyResult, receipt.seq);
      await this.#o.hooks?.afterAllowCommit?.(taskId);
      return { decisionId: receipt.leafHash, seq: receipt.seq };
    };
    const executeStep = async (input: ExecuteInput): Promise<ExecutionResult> => {
      entry.executing = true;
      if (this.#executed.has(taskId)) return { status: "failed", error: "handler already ran for this task" };
      this.#executed.add(taskId);
      claimedExecution = true;
      this.#publishDecision(taskId, input.verify.decision, input.commit.seq, sub.submissionId);
      const req = (input.evidence.request as SignedRequest).payload;
      const handler = this.#actions.get(req.action);
      if (!handler) return { status: "failed", error: `no handler registered for action "${req.action}"` };
      // A revocation in force already (a race with the decision's commit) is a deny in spirit:
      // the handler is not called, and the outcome says why.
      const alreadyRevoked = this.#revokedAmong(entry.touches());
      if (alreadyRevoked !== undefined) return { status: "failed", error: `REVOKED: ${alreadyRevoked} was revoked before the handler started: it was not run` };
      childWindowOpen = true;
      // The handler's own signal: aborted when the gateway stops, and when the handler is cut
      // off by its timeout (its outcome is then recorded as failed; it is told to stop too).
      const handlerAbort = new AbortController();
      const onGatewayAbort = (): void => handlerAbort.abort(new Error("gateway stopping"));
      if (this.#abort.signal.aborted) onGatewayAbort();
      else this.#abort.signal.addEventListener("abort", onGatewayAbort, { once: true });
      // A revocation of anything this task rests on, from now until the handler ends: the
      // handler is told, and signs no more children (they would be denied REVOKED anyway).
      entry.revokedWhileExecuting = (target) => {
        if (!handlerAbort.signal.aborted) handlerAbort.abort(new TaskRevokedError(target));
      };
      const chain = input.evidence.chain as SignedArtifact[];
      const lineage = input.evidence.lineage as SignedLineage[];
      // Why this task may sign no child now (ctx.spawn and ctx.attest alike), if so.
      const spawnRefusal = (): SpawnRefusedError | undefined => {
        if (!childWindowOpen) return new SpawnRefusedError("parent-not-executing", "parent task is no longer executing");
        const revoked = this.#revokedAmong(entry.touches());
        return revoked === undefined ? undefined : new SpawnRefusedError("parent-revoked", `parent task rests on ${revoked}, revoked`);
      };
      const ctx: ActionContext = {
        taskId,
        agent: req.agent,
        action: req.action,
        resource: req.resource,
        args: input.evidence.args as JsonValue,
        chain,
        gatewayId: this.id,
        signal: handlerAbort.signal,
        spawn: (child) => {
          const refused = spawnRefusal();
          if (refused !== undefined) return spawned(Promise.reject(refused), undefined);
          let late: Promise<TaskOutcome | undefined> | undefined;
          const outcome = this.#lendingSlot(lease, () => {
            const tracked = this.#spawnChild({ taskId, chain, lineage, decisionId: input.commit.decisionId }, child);
            late = tracked.late;
            return tracked.outcome;
          });
          return spawned(outcome, () => late);
        },
        attest: (childTaskId, childArtifact) => {
          const refused = spawnRefusal();
          if (refused !== undefined) throw refused;
          return [...lineage, this.#spawnEvent({ taskId, chain, decisionId: input.commit.decisionId }, childTaskId, childArtifact)];
        },
      };
      let running: Promise<unknown> | undefined;
      try {
        running = Promise.resolve(handler(ctx));
        const returned: unknown = await withTimeout(running, this.#o.handlerTimeoutMs ?? 300_000, `handler "${req.action}"`);
        // The action ran: whatever it returned, it succeeded. A void handler's undefined is null;
        // a result that is not I-JSON (a Date, a BigInt, a cycle, a lone surrogate) cannot be
        // recorded or sent, so it is left out and the outcome says so. "failed" would invite a
        // caller to run the action again.
        let taken: ReturnType<typeof snapshotResult>;
        try {
          // Taken once, now: the digest recorded, the outcome's result and the bytes signed all
          // come from this one reading (the handler's object may change, or read anew, later).
          taken = snapshotResult(returned === undefined ? null : returned);
        } catch (e) {
          resultProblemByTask.set(taskId, `the handler's result is not I-JSON and was not recorded (${e instanceof Error ? e.message : String(e)})`);
          return { status: "succeeded" };
        }
        if (taken.copy !== undefined) resultByTask.set(taskId, taken.copy);
        else resultProblemByTask.set(taskId, undeliveredWhy(taken));
        return { status: "succeeded", resultDigest: taken.digest };
      } catch (e) {
        handlerAbort.abort(e);
        if (e instanceof StepTimeoutError && running !== undefined) {
          handlerTimedOut = true;
          this.#watchLateHandler(taskId, req.action, running, outcomeWritten, (late) =>
            this.#publishOutcome({
              taskId,
              gatewayId: this.id,
              verdict: "allow",
              codes: [],
              ...late,
              late: true,
              ...(decisionSeq !== undefined ? { decisionSeq } : {}),
              ...(sub.submissionId !== undefined ? { submissionId: sub.submissionId } : {}),
            }),
          );
          return { status: "failed", error: `${e.message}: told to stop (ctx.signal), but it may still be running, and what it does may still take effect` };
        }
        return { status: "failed", error: e instanceof Error ? e.message : String(e) };
      } finally {
        childWindowOpen = false;
        entry.revokedWhileExecuting = undefined;
        this.#abort.signal.removeEventListener("abort", onGatewayAbort);
      }
    };

    entry.steps = {
        collectEvidence: async (_input, signal) => {
          const leaf = (sub.request as { payload?: { artifactId?: unknown } } | null)?.payload?.artifactId;
          if (sub.intakeErrors.length > 0 || typeof leaf !== "string") {
            return { request: sub.request, args: sub.args, chain: [], lineage: [], intakeErrors: sub.intakeErrors };
          }
          // Resolve a little before the machine's own deadline so decide() can name what is
          // missing (artifact vs lineage) instead of a bare timeout.
          const ac = new AbortController();
          const t = setTimeout(() => ac.abort(), deadline);
          const onStop = () => ac.abort();
          signal.addEventListener("abort", onStop, { once: true });
          this.#abort.signal.addEventListener("abort", onStop, { once: true });
          try {
            const a = await this.#index.waitFor(taskId, leaf, ac.signal);
            evidence = { request: sub.request, args: sub.args, chain: a.chain, lineage: a.lineage, intakeErrors: [...sub.intakeErrors, ...a.intakeErrors] };
            return evidence;
          } finally {
            clearTimeout(t);
            signal.removeEventListener("abort", onStop);
            this.#abort.signal.removeEventListener("abort", onStop);
          }
        },
        verify: async (input) => {
          await this.#o.hooks?.beforeVerify?.(taskId);
          return withTimeout(verifyStep(input), this.#stepMs, "verify");
        },
        commitAllow: async () => withTimeout(commitStep(), this.#stepMs, "audit commit"),
        execute: async (input) => executeStep(input),
        recordOutcome: async (input) => {
          const r = input.result;
          const written = this.#ledger.append({
            type: "outcome",
            taskId,
            status: r.status,
            ...(r.resultDigest !== undefined ? { resultDigest: r.resultDigest } : {}),
            ...(r.error !== undefined ? { error: r.error } : {}),
          });
          written.then(
            () => {
              outcomeWasRecorded = true;
              outcomeRecorded(true);
            },
            () => outcomeRecorded(false),
          );
          // Bounded like every other step: a write that never comes back ends the task `failed`
          // (recordOutcome failed), as a rejected one does, instead of holding it for good.
          await withTimeout(written, this.#stepMs, "outcome record");
        },
        recordDenial: async (input) => {
          if (decisionWrite && verifyResult?.decision.verdict === "allow") {
            // Allowed and recorded, then stopped before executing (revoked, bus lost): say so.
            // An allow whose write failed is not in the log: an outcome after it would be one
            // without an allow (replay: OUTCOME_WITHOUT_ALLOW).
            // Bounded as the commit was: a write that never comes back must not hold the deny.
            // One that lands later still gets its outcome right after it, off this task's path
            // (and if it never does, the next start records the allow interrupted).
            const failedOutcome = { type: "outcome" as const, taskId, status: "failed" as const, error: `${DENIED_BEFORE_EXECUTION}: ${input.codes.join(",")}: ${input.detail}` };
            const written = decisionWrite.then(() => true, () => false);
            const recorded = await withTimeout(written, this.#stepMs, "allow record").catch(() => undefined);
            if (recorded === undefined) {
              void written.then((w) => (w ? this.#ledger.append(failedOutcome) : undefined)).catch((e: unknown) => this.#warn(`task ${taskId}: outcome of an allow denied before execution not recorded: ${String(e)}`));
              return;
            }
            if (!recorded) return;
            await withTimeout(this.#ledger.append(failedOutcome), this.#stepMs, "outcome record");
            return;
          }
          if (!decisionWrite) {
            // Denied before verify (deadline, bus loss, revocation while collecting): record
            // a decision whose input re-derives a deny, so replay agrees with what happened. Its
            // input holds the evidence gathered so far, so the record names the reason (a
            // revoked artifact is REVOKED there, not NO_ARTIFACT for an empty chain).
            const partial = typeof leafId === "string" && sub.intakeErrors.length === 0 ? this.#index.assemble(taskId, leafId) : undefined;
            const ev = evidence ?? { request: sub.request, args: sub.args, chain: partial?.chain ?? [], lineage: partial?.lineage ?? [], intakeErrors: [...sub.intakeErrors, ...(partial?.intakeErrors ?? [])] };
            const leaf = ev.chain[ev.chain.length - 1] as SignedArtifact | undefined;
            const key = typeof leaf?.payload?.nonce === "string" ? leaf.payload.nonce : "";
            if (claims.nonceKey === "") claims.nonceKey = key;
            const r = this.#decideAndRecord(taskId, ev, key, { nonce: "not-attempted", task: "not-attempted" });
            decisionWrite = r.write;
            verifyResult = r.verify;
          }
          // Policy: a deny stands without its record; waiting for one that never comes would hang the task.
          const receipt = await withTimeout(decisionWrite, this.#stepMs, "deny record");
          decisionSeq = receipt.seq;
          this.#notifyDecision(taskId, verifyResult, receipt.seq);
        },
    };

    // Keyed by flight, not task id or message (a redelivered message keeps its stream
    // sequence): a duplicate submission runs its own machine and loses the nonce claim
    // (REPLAYED); the executed-set guard stops a second handler run regardless.
    // The machine's own taskId is this key: its steps find this entry by it (#taskMachine).
    const flightKey = `${taskId}#${this.#flights++}`;
    this.#flightsPerTask.set(taskId, (this.#flightsPerTask.get(taskId) ?? 0) + 1);
    const actor = createActor(this.#taskMachine, { input: { taskId: flightKey, evidenceDeadlineMs: deadline + EVIDENCE_GRACE_MS } });
    entry.send = (e) => actor.send(e);
    this.#inFlight.set(flightKey, entry);
    if (!this.#busConnected) queueMicrotask(() => actor.send({ type: "BUS_LOST" }));
    actor.start();
    let outcome: TaskOutcome;
    try {
      const out = await toPromise(actor);
      if (out.verdict === "deny") {
        const reasons = verifyResult?.decision.reasons ?? [];
        const codes = [...new Set([...out.codes, ...reasons])];
        outcome = { taskId, gatewayId: this.id, verdict: "deny", codes, status: "denied", detail: out.detail, ...(decisionSeq !== undefined ? { decisionSeq } : {}) };
        if (verifyResult) outcome.checks = verifyResult.decision.checks;
        if (sub.submissionId !== undefined) Object.assign(outcome, await this.#copyMark(taskId, sub.submissionId, claims, verifyResult?.decision.checks));
        this.#publishDecision(taskId, { verdict: "deny", checks: verifyResult?.decision.checks ?? [], reasons: codes }, decisionSeq, sub.submissionId);
      } else {
        const r = out.result;
        const result = resultByTask.get(taskId);
        const resultProblem = resultProblemByTask.get(taskId);
        outcome = {
          taskId,
          gatewayId: this.id,
          verdict: "allow",
          codes: [],
          status: out.status === "completed" && r?.status === "succeeded" ? "succeeded" : "failed",
          ...(decisionSeq !== undefined ? { decisionSeq } : {}),
          ...(r?.resultDigest !== undefined ? { resultDigest: r.resultDigest } : {}),
          ...(result !== undefined ? { result } : {}),
          ...(resultProblem !== undefined ? { detail: resultProblem } : {}),
          // An outcome record that failed after the handler returned: it ran, whatever "failed" says.
          ...(r?.error !== undefined ? { error: r.error } : out.outcomeError !== undefined ? { error: `${out.outcomeError}: the handler ran and returned; its outcome record is not known to be in the audit log (a write that outlasted its wait may still land there)` } : {}),
          // Only when its failed outcome is in the log: a late one is recorded only after it, so
          // without it none will come, and a client would wait out its window for nothing.
          ...(handlerTimedOut && outcomeWasRecorded ? { timedOut: true as const } : {}),
        };
      }
    } catch (e) {
      // The machine itself failed: nothing ran unless it reached executing, which records.
      outcome = { taskId, gatewayId: this.id, verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "denied", detail: `task machine error: ${String(e)}` };
      if (sub.submissionId !== undefined) Object.assign(outcome, await this.#copyMark(taskId, sub.submissionId, claims, undefined));
    } finally {
      // No outcome record from here on if none was written (a late one needs it before).
      outcomeRecorded(false);
      const allowed = claimedExecution || verifyResult?.decision.verdict === "allow";
      clearInterval(working);
      this.#inFlight.delete(flightKey);
      if (claimedExecution) this.#executed.delete(taskId);
      const left = (this.#flightsPerTask.get(taskId) ?? 1) - 1;
      if (left > 0) this.#flightsPerTask.set(taskId, left);
      else this.#flightsPerTask.delete(taskId);
      // Forget the task's evidence once it was allowed (the task id is then spent: any later
      // submission for it is REPLAYED). A denied flight leaves it to age out with the stream
      // (evict) or the memory budget: a junk submission naming someone's task id, denied at once,
      // must not drop the lineage that task's real submission is about to use.
      if (left <= 0 && allowed) this.#index.forget(taskId);
    }
    if (sub.submissionId !== undefined) outcome.submissionId = sub.submissionId;
    this.#publishOutcome(outcome);
    try {
      m.ack();
    } catch {
      // bus gone: redelivery will find the task decided and deny the duplicate
    }
    try {
      this.#o.onOutcome?.(outcome);
    } catch (e) {
      this.#warn(`onOutcome hook threw: ${String(e)}`);
    }
  }

  /**
   * A handler cut off by its timeout goes on running (most I/O does not listen to ctx.signal),
   * and its outcome is already recorded as failed. When it settles, record how it ended, as a late
   * outcome after that failed one (records.ts `late`; replay holds it to one per failed task), and
   * warn: "failed" must not be taken for "had no effect". Nothing is recorded when the failed
   * outcome was not (the store failed, the gateway stopped first): a late one would follow nothing.
   */
  #watchLateHandler(
    taskId: string,
    action: string,
    running: Promise<unknown>,
    outcomeWritten: Promise<boolean>,
    publish: (late: Pick<TaskOutcome, "status" | "resultDigest" | "result" | "error" | "detail">) => void,
  ): void {
    // `recorded`: the late outcome record's fields, which the published outcome carries too.
    type Ended = { recorded: { status: "succeeded" | "failed"; resultDigest?: string; error?: string }; result?: JsonValue; note: string };
    const ended = running.then(
      (v): Ended => {
        try {
          // Taken once, as for an outcome in time: the digest recorded and the result sent agree.
          const taken = snapshotResult(v === undefined ? null : v);
          // As in time: a result a client could not read is not sent, and the outcome says so.
          const undelivered = taken.copy === undefined ? `; ${undeliveredWhy(taken)}` : "";
          return { recorded: { status: "succeeded", resultDigest: taken.digest }, ...(taken.copy !== undefined ? { result: taken.copy } : {}), note: `it succeeded, result digest ${taken.digest}${undelivered}` };
        } catch {
          return { recorded: { status: "succeeded" }, note: "it succeeded, its result not I-JSON (not recorded)" };
        }
      },
      (e: unknown): Ended => {
        const error = `after its timeout: ${describeThrown(e)}`;
        return { recorded: { status: "failed", error }, note: `it failed: ${error}` };
      },
    );
    // (Never rejects: a handler's code may throw what String() cannot print, and an unhandled
    // rejection would end the process and every other task's outcome with it.)
    Promise.all([ended, outcomeWritten]).then(async ([how, written]) => {
      this.#warn(`task ${taskId}: handler "${action}" ${how.recorded.status === "succeeded" ? "completed" : "failed"} after its timeout (its outcome is recorded as failed): ${how.note}`);
      if (!written) return;
      try {
        await this.#ledger.append({ type: "outcome", taskId, late: true, ...how.recorded });
      } catch (e) {
        this.#warn(`task ${taskId}: how its handler ended after its timeout was not recorded: ${describeThrown(e)}`);
        return;
      }
      // Recorded first, then told (as every outcome): a client still listening learns how it ended.
      publish({ ...how.recorded, ...(how.result !== undefined ? { result: how.result } : {}), detail: `the handler ended after its timeout: ${how.note}` });
    }).catch((e: unknown) => this.#warn(`task ${taskId}: watching its handler after its timeout failed: ${describeThrown(e)}`));
  }

  /**
   * The gateway's attestation that `parent` was executing when it spawned the child. Both
   * ctx.spawn and ctx.attest come through here, and nothing else signs a spawn lineage.
   *
   * Policy: only for a child task id in the parent's namespace (core/child-task-id.ts), else
   * LINEAGE_BROKEN and nothing is signed. A lineage naming another holder's task id would let the
   * parent's child take that id's claim, and the holder's own task would be REPLAYED (found by
   * review). The check sits here, where the lineage is signed, not in `decide`: an honest
   * gateway never signs such a lineage, and one whose key signs anything is a compromised gateway
   * key, which this does not defend against. Leaving `decide` and replay as they were keeps
   * recorded logs, whose children were named any way, replaying clean.
   */
  #spawnEvent(parent: { taskId: string; chain: SignedArtifact[]; decisionId: string }, childTaskId: string, childArtifact: SignedArtifact): SignedLineage {
    if (!isChildTaskIdOf(parent.taskId, childTaskId)) {
      throw new SpawnRefusedError("child-id-not-in-namespace", `child task id ${JSON.stringify(childTaskId)} is not in the namespace of parent task ${parent.taskId} (derive it with childTaskId(parentTaskId, label))`);
    }
    const leaf = parent.chain[parent.chain.length - 1];
    if (!leaf) throw new Error("parent has no artifact");
    return spawnLineage(this.#o.gatewayKey, {
      gatewayId: this.id,
      childTaskId,
      childArtifact,
      parentTaskId: parent.taskId,
      parentArtifactId: artifactId(leaf),
      parentDecisionId: parent.decisionId,
      emittedAt: this.#clock(),
    });
  }

  #notifyDecision(taskId: string, v: VerifyResult | undefined, seq: number): void {
    if (!v) return;
    try {
      this.#o.onDecision?.(taskId, v.decision, seq);
    } catch (e) {
      this.#warn(`onDecision hook threw: ${String(e)}`);
    }
  }

  /** Operator action: trust another authority key (key rotation). Recorded before it takes effect. */
  async addAuthority(keyId: string): Promise<void> {
    assertAcceptableKey(keyId);
    if (this.#ledger.state.authorities.has(keyId)) return;
    await this.#ledger.append({ type: "trust", change: { op: "authority.add", keyId } });
    // Its revocations already on the feed were dropped as untrusted when they went by: read them
    // again now (its heartbeats count them, and they must be in force here).
    await this.#rereadRevocations(keyId).catch((e: unknown) => this.#warn(`could not read ${keyId}'s earlier revocations again: ${String(e)} (its heartbeats will say so: denying until they are read)`));
  }

  /**
   * Apply again the revocations on the feed that `issuer` signed, then its heartbeats (in that
   * order: a heartbeat counts the revocations before it). Until one of its heartbeats is read,
   * the feed is not fresh: every trusted authority must vouch for its own.
   */
  async #rereadRevocations(issuer: string): Promise<void> {
    const fx = {
      isAuthority: (k: string) => k === issuer && this.#ledger.state.authorities.has(k),
      onRevocation: (r: SignedRevocation) => this.#applyRevocation(r),
      onHeartbeat: (h: HeartbeatPayload) => this.#onHeartbeat(h),
      onRejected: () => undefined, // other issuers' and malformed ones were reported when they went by
    };
    await readSubject(this.#js, this.#jsm, STREAMS.gov, SUBJECTS.revocation, 5_000, (m) => applyGovernanceMessage(m.subject, m.data, fx));
    await readSubject(this.#js, this.#jsm, STREAMS.gov, SUBJECTS.heartbeat, 5_000, (m) => applyGovernanceMessage(m.subject, m.data, fx));
  }

  /** Operator action: stop trusting an authority key (the old key after a rotation). */
  async removeAuthority(keyId: string): Promise<void> {
    if (this.#ledger.state.authorities.has(keyId)) await this.#ledger.append({ type: "trust", change: { op: "authority.remove", keyId } });
  }

  /**
   * Run `wait` (a parent waiting on a child's outcome) with the parent's in-flight slot lent out:
   * parents waiting on children could otherwise take every slot, and then no child could ever be
   * taken here (each denied at its deadline). The slot is lent while the first child is awaited
   * and taken back when the last is answered; taking it back may wait for a free one.
   */
  async #lendingSlot<T>(lease: { waiting: number; slot: FlightSlot }, wait: () => Promise<T>): Promise<T> {
    const { slot } = lease;
    if (lease.waiting++ === 0 && slot.held && !slot.ended) {
      slot.held = false;
      this.#release();
    }
    try {
      return await wait();
    } finally {
      // Taken back only for a flight still running (one that ended, say its handler did not
      // await the child, released nothing at its end: the slot was out).
      if (--lease.waiting === 0 && !slot.held && !slot.ended) {
        if (this.#stopped) this.#slots++;
        else await this.#slot(() => undefined);
        slot.held = true;
        // The flight ended while this waited for a slot: it released nothing, so release here.
        if (slot.ended) {
          slot.held = false;
          this.#release();
        }
      }
    }
  }

  #spawnChild(parent: { taskId: string; chain: SignedArtifact[]; lineage: SignedLineage[]; decisionId: string }, child: ChildTask): { outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined> } {
    const childTaskId = child.request.payload.taskId;
    if (!TASK_ID_RE.test(childTaskId)) throw new TypeError("child task id is not subject-safe");
    const event = this.#spawnEvent(parent, childTaskId, child.artifact);
    return submitTaskTracked(this.#nc, {
      request: child.request,
      args: child.args,
      chain: [...parent.chain, child.artifact],
      lineage: [...parent.lineage, event],
      timeoutMs: this.#o.childTimeoutMs ?? 30_000,
      lateWaitMs: this.#o.childLateWaitMs ?? 600_000,
      skewMs: this.#limits.maxSkewMs,
      // Only a gateway this one trusts for lineage can answer for the child.
      gatewayKeys: new Set(this.#ledger.state.gateways),
    });
  }

  /**
   * Whether a deny of this submission may be a copy's, not a verdict on the submission (README,
   * outcomes). A gateway executes a submission only after claiming its nonce and then its task id
   * under its submission id, so a claim held under this very submission id means some gateway got
   * that far with it: it may have run, or be about to. That holds whatever this copy was denied
   * for: REPLAYED for the claim it lost, or a ground found before any claim (EXPIRED,
   * ENVIRONMENT_MISMATCH, NO_ARTIFACT, …) when JetStream redelivered it to this gateway after the
   * one running it crashed. Claims this flight won are its own and are not looked at.
   *
   * Marked `duplicate` (with `originalDone` when this gateway saw the task finish) when the task
   * id's claim is this submission's, or it is not known to be another's and the nonce's is;
   * nothing when either is held by another submission (this one can never run) or neither is
   * held; `claimsUnread` when that cannot be read, so that no path makes a definitive deny of a
   * submission whose claim may exist (the client then settles it at the decision deadline).
   * Denies only: an allow reads nothing.
   *
   * Neither held: this deny spent nothing, so a copy of these very bytes could still be allowed
   * before the request's deadline (the feed fresh again, a policy rolled out, another gateway
   * whose environment matches), and "denied" would be untrue (found by the chaos soak). So the
   * deny spends the task id first, with a claim marked denied, when `checks` show the request is
   * its holder's own (HOLDERS_OWN); a claim that cannot be made leaves the deny `claimsUnread`.
   */
  async #copyMark(taskId: string, submissionId: string, claims: { nonceKey: string; wonNonce: boolean; wonTask: boolean; lineage: readonly unknown[] }, checks: readonly Check[] | undefined): Promise<Pick<TaskOutcome, "duplicate" | "originalDone" | "claimsUnread">> {
    // The task id is claimed only after the nonce: a flight that won it won both.
    if (claims.wonTask) return {};
    const nonceKey = claims.wonNonce ? "" : claims.nonceKey;
    const [task, nonce] = await Promise.all([this.#readClaim(taskClaimKey(taskId), submissionId), nonceKey === "" ? Promise.resolve<ClaimOwner>("none") : this.#readClaim(nonceKey, submissionId)]);
    const duplicate = (): Pick<TaskOutcome, "duplicate" | "originalDone"> => {
      const status = this.#ledger.state.tasks.get(taskId)?.status;
      return status === "succeeded" || status === "failed" ? { duplicate: true, originalDone: true } : { duplicate: true };
    };
    const ownedHere = (o: ClaimOwner): boolean => o === "this" || o === "deleted";
    switch (task) {
      case "this":
      case "deleted":
        return duplicate();
      case "other":
      case "denied":
        // Policy: the task id runs once cluster-wide, and another submission holds it (or a deny
        // spent it): this one never runs.
        return {};
      case "unread":
      case "none":
        if (ownedHere(nonce)) return duplicate();
        // Policy: another submission holds the nonce (one artifact, other args): this one never
        // wins it, so never runs. Otherwise what cannot be read is not known.
        if (nonce === "other" || nonce === "denied") return {};
        if (task === "unread" || nonce === "unread") return { claimsUnread: true };
        return this.#spendTaskId(taskId, submissionId, claims.nonceKey, checks, claims.lineage, duplicate);
      default:
        return assertNever(task);
    }
  }

  /**
   * Make a deny that spent nothing final (#copyMark). A request that is its holder's own spends
   * the task id: a claim marked denied. Any other (no evidence by the deadline, an untrusted or
   * mis-signed chain, a broken lineage, another key than the holder's: what anyone can submit for
   * any task id) cannot, or anyone could burn another holder's task id; yet a copy of those very
   * bytes could run before the deadline once what was missing arrives, while this deny's client
   * was told "denied" (found by review: a copy of someone's submission sent while a gateway's
   * evidence read lags). So it names its submission in a denied-copies claim instead: no copy of
   * that submission runs, and any other submission for the task id takes the claim over
   * (#claimTask). Claims made meanwhile are read as #copyMark does; what cannot be made or read
   * leaves the deny `claimsUnread`, for its client to settle.
   */
  async #spendTaskId(taskId: string, submissionId: string, nonceKey: string, checks: readonly Check[] | undefined, lineage: readonly unknown[], duplicate: () => Pick<TaskOutcome, "duplicate" | "originalDone">): Promise<Pick<TaskOutcome, "duplicate" | "originalDone" | "claimsUnread">> {
    // This gateway allowed the task id before (its claims lost since, say): never "never ran" to
    // write into the claims. A copy of the very submission it allowed is a duplicate; another
    // submission for that task id is denied for good; not knowing which, the client settles it.
    if (this.#ledger.taskDecided(taskId)) {
      const ran = await this.#allowedSubmission(taskId);
      return ran === undefined ? { claimsUnread: true } : ran === submissionId ? duplicate() : {};
    }
    const holdersOwn = checks !== undefined && HOLDERS_OWN.every((name) => checks.some((c) => c.check === name && c.ok)) && childIdsInNamespaces(lineage);
    const key = taskClaimKey(taskId);
    const spent = { taskId, nonce: nonceKey, submissionId, outcome: DENIED_CLAIM_MARK };
    const copies = (ids: readonly string[]): Record<string, unknown> => ({ taskId, outcome: DENIED_COPIES_MARK, submissionIds: ids });
    let made = await this.#claim(key, holdersOwn ? spent : copies([submissionId]));
    for (let round = 0; ; round++) {
      switch (made) {
        case "claimed":
          return {};
        case "unavailable":
        case "not-attempted":
          return { claimsUnread: true };
        case "taken":
          break;
        default:
          return assertNever(made);
      }
      // Contended past every round (denies naming copies, one after another): left to its client.
      if (round >= CLAIM_ROUNDS) return { claimsUnread: true };
      const held = await this.#claimEntry(key);
      switch (held.kind) {
        case "none":
        case "unread":
          // Taken, then not there (removed meanwhile: tampering), or a read that failed.
          return { claimsUnread: true };
        case "deleted":
          return duplicate();
        case "claim":
          break;
        default:
          return assertNever(held);
      }
      const c = held.claim;
      switch (c.kind) {
        case "held":
          return c.submissionId === submissionId ? duplicate() : {};
        case "denied":
          return {};
        case "denied-copies":
          // Named already (another copy's deny): this one never runs either.
          if (!holdersOwn && c.submissionIds.includes(submissionId)) return {};
          // Policy: a full list takes no more names; this deny is left for its client to settle.
          if (!holdersOwn && c.submissionIds.length >= MAX_DENIED_COPIES) return { claimsUnread: true };
          // A spend covers every copy the claim named; a name joins the others.
          made = await this.#claim(key, holdersOwn ? spent : copies([...c.submissionIds, submissionId]), held.revision);
          break;
        default:
          return assertNever(c);
      }
    }
  }

  /**
   * Claim the task id for an allow (after its nonce). A denied-copies claim that does not name
   * this submission is taken over, compare-and-set on its revision (#spendTaskId): denies of
   * other submissions made it, which anyone can make for any task id. One that names it means a
   * gateway told this submission's client "denied": "taken", and the task is REPLAYED.
   */
  async #claimTask(taskId: string, value: Record<string, unknown>, submissionId: string | undefined): Promise<ClusterClaim> {
    const key = taskClaimKey(taskId);
    let made = await this.#claim(key, value);
    for (let round = 0; made === "taken" && round < CLAIM_ROUNDS; round++) {
      const held = await this.#claimEntry(key);
      if (held.kind === "unread") return "unavailable";
      if (held.kind !== "claim" || held.claim.kind !== "denied-copies") return "taken";
      if (submissionId === undefined || held.claim.submissionIds.includes(submissionId)) return "taken";
      // Policy: taken over only if the key never held anything but denied-copies lists, as read
      // from its history. Claims are unsigned: a plain KV put of such a list over a held claim let
      // the holder's second submission run on another gateway, the task id twice (found by a probe).
      if (!(await this.#onlyDeniedCopies(key))) return "unavailable";
      made = await this.#claim(key, value, held.revision);
    }
    // Contended past every round (denies naming copies, one after another): not known to be free.
    return made === "taken" ? "unavailable" : made;
  }

  /**
   * Whether every revision the claims bucket holds for `key` is a denied-copies list, and no more
   * of them than honest gateways write before a takeover (MAX_DENIED_COPIES: one create, then one
   * name added per compare-and-set). The bucket keeps CLAIM_HISTORY revisions a key, more than
   * that, so a held or spent claim under a list put over it is seen, and so is a flood meant to
   * push it out. Bounded (CLAIM_READ_MS); false when it cannot be told (fail closed: no takeover).
   */
  async #onlyDeniedCopies(key: string): Promise<boolean> {
    if (!this.#busConnected) return false;
    let count = 0;
    let others = 0;
    try {
      const read = readSubject(this.#js, this.#jsm, `KV_${KV_BUCKETS.nonces}`, `$KV.${KV_BUCKETS.nonces}.${key}`, CLAIM_READ_MS, (m) => {
        count++;
        const op = m.headers?.get("KV-Operation");
        if ((op !== undefined && op !== "" && op !== "PUT") || parseTaskClaim(m.data)?.kind !== "denied-copies") others++;
      });
      await withTimeout(read, CLAIM_READ_MS, `reading ${key}'s history`);
    } catch {
      return false;
    }
    return count > 0 && count <= MAX_DENIED_COPIES && others === 0;
  }

  /** The submission id of the allow this gateway's log holds for `taskId`, if it can be read (Ledger.findDecision). */
  async #allowedSubmission(taskId: string): Promise<string | undefined> {
    const rec = await this.#ledger.findDecision(taskId);
    if (rec?.type !== "decision" || rec.decision.verdict !== "allow") return undefined;
    const input = rec.input as { request?: unknown; args?: unknown } | null;
    return input === null || typeof input !== "object" ? undefined : submissionIdOf({ request: input.request, args: input.args });
  }

  /**
   * Whose claim `key` is in the claims bucket, for a deny (#copyMark). Claims are never deleted:
   * a delete or purge marker ("deleted") means someone removed one, and the copy that made it may
   * have been this submission's. A denied-copies claim is "denied" for a submission it names and
   * "none" for any other, which may still take it over (#claimTask).
   */
  async #readClaim(key: string, submissionId: string): Promise<ClaimOwner> {
    const held = await this.#claimEntry(key);
    switch (held.kind) {
      case "none":
      case "unread":
        return held.kind;
      case "deleted":
        this.#warn(`claim ${key} was deleted from ${KV_BUCKETS.nonces} (tampering?): a deny that may be a copy's is marked a possible duplicate`);
        return "deleted";
      case "claim": {
        const c = held.claim;
        switch (c.kind) {
          case "held":
            return c.submissionId === submissionId ? "this" : "other";
          case "denied":
            return "denied";
          case "denied-copies":
            return c.submissionIds.includes(submissionId) ? "denied" : "none";
          default:
            return assertNever(c);
        }
      }
      default:
        return assertNever(held);
    }
  }

  /** The claim at `key` and its revision. Bounded (CLAIM_READ_MS), never throws: a read that fails or times out, a lost bus, or a value that is no claim is "unread". */
  async #claimEntry(key: string): Promise<ClaimEntry> {
    if (!this.#busConnected) return { kind: "unread" };
    let timer: NodeJS.Timeout | undefined;
    try {
      const entry = await Promise.race([this.#nonceKv.get(key), new Promise<"late">((r) => (timer = setTimeout(() => r("late"), CLAIM_READ_MS)))]);
      if (entry === "late") return { kind: "unread" };
      if (entry === null) return { kind: "none" };
      if (entry.operation !== "PUT") return { kind: "deleted" };
      const claim = parseTaskClaim(entry.value);
      return claim === undefined ? { kind: "unread" } : { kind: "claim", claim, revision: entry.revision };
    } catch {
      return { kind: "unread" };
    } finally {
      clearTimeout(timer);
    }
  }

  #publishDecision(taskId: string, d: Decision, seq: number | undefined, submissionId: string | undefined): void {
    const msg: DecisionMessage = {
      taskId,
      gatewayId: this.id,
      verdict: d.verdict,
      reasons: d.reasons,
      checks: d.checks,
      ...(seq !== undefined ? { decisionSeq: seq } : {}),
      ...(submissionId !== undefined ? { submissionId } : {}),
    };
    try {
      this.#nc.publish(SUBJECTS.decision(taskId), JSON.stringify(msg));
    } catch {
      // the audit log is the record; the bus copy is a courtesy
    }
  }

  /**
   * Signed with the gateway key (outcome.ts encodeOutcome), so clients that know the key can tell
   * it from a forgery. At most what the server takes in one message (its max_payload, less some
   * headroom) and what a client reads (MAX_OUTCOME_BYTES): a result that does not fit is left out,
   * with a detail saying so. A publish that fails anyway is tried again without the result.
   * Never silent: what does not go out as it should is warned about.
   */
  #publishOutcome(o: TaskOutcome): void {
    const maxPayload = this.#nc.info?.max_payload;
    const limit = typeof maxPayload === "number" && maxPayload > 0 ? Math.max(0, Math.min(MAX_OUTCOME_BYTES, maxPayload - OUTCOME_HEADROOM_BYTES)) : MAX_OUTCOME_BYTES;
    const encoded = encodeOutcome(o, this.#o.gatewayKey, limit);
    if (encoded === undefined) {
      this.#warn(`outcome of ${o.taskId} could not be signed: not published (its client settles it at its decision deadline)`);
      return;
    }
    if (encoded.resultDropped !== undefined) this.#warn(`outcome of ${o.taskId} published without its result: ${encoded.resultDropped}`);
    try {
      this.#nc.publish(SUBJECTS.outcome(o.taskId), encoded.text);
      return;
    } catch (e) {
      if (o.result === undefined || encoded.resultDropped !== undefined) {
        this.#warn(`outcome of ${o.taskId} not published: ${String(e)} (the audit log has it; its client settles it at its decision deadline)`);
        return;
      }
      this.#warn(`outcome of ${o.taskId} not published with its result (${String(e)}): publishing it again without the result`);
    }
    const { result: _dropped, ...rest } = o;
    const why = "the result could not be delivered: the bus refused the outcome with it (see the audit log's resultDigest)";
    const again = encodeOutcome({ ...rest, detail: o.detail !== undefined ? `${o.detail}; ${why}` : why }, this.#o.gatewayKey, limit);
    try {
      if (again === undefined) throw new Error("it could not be signed");
      this.#nc.publish(SUBJECTS.outcome(o.taskId), again.text);
    } catch (e) {
      this.#warn(`outcome of ${o.taskId} not published without its result either: ${String(e)} (the audit log has it; its client settles it at its decision deadline)`);
    }
  }

  async #publishCheckpoint(cp: Signed<CheckpointPayload>): Promise<void> {
    const p = this.#js.publish(SUBJECTS.checkpoint(this.id), JSON.stringify(cp)).then(() => undefined);
    this.#publishing.add(p);
    try {
      await p;
    } finally {
      this.#publishing.delete(p);
    }
  }

  /**
   * Stop pulling work, deny what is pending, close the log. A second call returns the first
   * one's promise: it resolves only once the gateway has stopped (the log flushed and closed).
   */
  stop(): Promise<void> {
    // After crash() (or a start that failed) there is nothing left to stop.
    this.#stopping ??= this.#stopped ? Promise.resolve() : this.#stopOnce();
    return this.#stopping;
  }

  async #stopOnce(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    for (const t of this.#inFlight.values()) t.send({ type: "ABORT", detail: "gateway stopping" });
    this.#stopConsumers();
    // Tasks not yet executing are denied by the ABORT at once. Those executing were allowed and
    // their handlers are running (their ctx.signal is aborted, but most I/O does not listen):
    // their outcomes are waited for, up to stopGraceMs, so the log records how they ended. One
    // still running after that is recorded as interrupted by the next start.
    const graceEnds = performance.now() + (this.#o.stopGraceMs ?? 25_000);
    while (this.#inFlight.size > 0 && performance.now() < graceEnds) await new Promise((r) => setTimeout(r, 20));
    const running = [...this.#inFlight.values()].filter((t) => t.executing).length;
    if (running > 0) this.#warn(`stopping with ${running} handler(s) still running after the stop grace: the next start records them as interrupted`);
    // Each bounded like a step: a disk that stopped answering must not hold stop() for good.
    await withTimeout(this.#ledger.store.checkpoint(), this.#stepMs, "final checkpoint").catch(() => undefined);
    // The next start folds only what comes after this (a cache: the log stays the truth).
    if (this.#ledger.writable) await withTimeout(this.#ledger.snapshot(), this.#stepMs, "audit snapshot").catch((e: unknown) => this.#warn(`audit snapshot failed: ${String(e)}`));
    // Witnesses need the final checkpoint; give its publish (and any other) a moment to land.
    await Promise.race([Promise.allSettled([...this.#publishing]), new Promise((r) => setTimeout(r, 2_000))]);
    try {
      await this.#nc.drain();
    } catch {
      await this.#nc.close().catch(() => undefined);
    }
    await Promise.allSettled(this.#loops);
    // A log whose writes never come back never closes: stop() says so and returns (the process
    // may exit; the next start recovers from what is durable, as after a crash).
    await withTimeout(this.#ledger.store.close(), this.#stepMs, "audit log close").catch((e: unknown) => this.#warn(`audit log not closed: ${String(e)}`));
    await this.#verifyPool.close();
  }

  /** Simulate a crash: drop the connection and the log without any goodbye. */
  async crash(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    this.#stopConsumers();
    await this.#nc.close().catch(() => undefined);
    await this.#ledger.store.close().catch(() => undefined);
    await this.#verifyPool.close();
  }
}
