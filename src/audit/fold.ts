// Event sourcing (DESIGN §5): the governance state at any point of the log is the fold of
// the records before it. Pure: no I/O, no clock. The store folds as it appends; replay folds
// independently and compares what each decision claimed against this state.
import type { JsonValue } from "../canonical/jcs.ts";
import type { AuditRecord, CheckpointPayload } from "./records.ts";
import { assertNever } from "../infra/assert-never.ts";

export type TaskStatus = "evidence" | "allowed" | "denied" | "succeeded" | "failed";

/**
 * How many records a finished task and a spent nonce stay in the fold: the log's local memory.
 * Cluster-wide, the create-only KV claims keep every nonce and task id spent for good; the
 * fold's copy is the backstop for claims the KV lost (JetStream on nats-server 2.9 acks before
 * fsync, so a server crash can lose the last moments of claims), and a window of about a
 * million records covers that with room to spare while keeping a long-lived gateway's memory
 * flat. Tasks allowed and without an outcome are never forgotten: crash recovery needs them.
 * Part of the log's meaning: replay folds with the same window, so both agree on every claim.
 * The window counts entries: decisions, outcomes, trust and revocation records. Not checkpoints:
 * the gateway's projection (gateway/ledger.ts) never sees the ones the store writes, and must
 * forget in step with replay. Not evidence either: it is queued in the same step as the
 * decision it supports, so the claim states a gateway reads for that decision are the fold at
 * the decision's position whichever side of its evidence they are read on.
 * It applies from the first decision that carries a task claim on: gateways that wrote logs
 * without claims never forgot anything, so their logs are folded, and replayed, as they were.
 */
export const FOLD_WINDOW = 1 << 20;

/**
 * The version of the fold's rules (this file) and of their snapshot encoding (fold-snapshot.ts).
 * A fold snapshot records it, and one made under other rules is never restored: the state is
 * folded from the log again, as replay does. Bump it with any change to either file that could
 * change what a fold holds; test/audit/snapshot.test.ts pins both files' text to it.
 */
export const FOLD_VERSION = 2;

export interface TaskState {
  status: TaskStatus;
  lastSeq: number;
  decisionSeq?: number;
}

export interface AuditState {
  /** Records folded so far: the next seq. */
  size: number;
  authorities: Set<string>;
  gateways: Set<string>;
  policy: { digest: string; document: JsonValue } | undefined;
  /**
   * The newest signed policy activation taken (version, digest, signer), kept through withdrawals:
   * a gateway takes only a higher version after it (policy/activation.ts judgeActivation).
   */
  policyHigh: { version: number; digest: string; issuer: string } | undefined;
  revokedArtifacts: Set<string>;
  revokedKeys: Set<string>;
  /** Nonces spent within the window, with the seq that last spent each. */
  consumedNonces: Map<string, number>;
  tasks: Map<string, TaskState>;
  /** Entries (records other than checkpoints and evidence) folded so far: the window's clock. */
  entries: number;
  /** Set by the first decision with a task claim: from then on the window forgets. */
  windowed: boolean;
  /** Entries a finished task or spent nonce stays (FOLD_WINDOW; smaller only in tests). */
  window: number;
  /** What to forget when, in entry order, tasks and nonces apart; read from `head`. */
  retire: { tasks: Retiring; nonces: Retiring };
  lastCheckpoint: CheckpointPayload | undefined;
  /** Bumped by every trust and revocation record: a cache key for derived trust views. */
  trustVersion: number;
}

/**
 * A FIFO of (entry, seq, key), appended in entry order and consumed from `head`: the key is
 * forgotten once `entry` falls out of the window, unless touched again since (its seq moved).
 */
export interface Retiring {
  entries: number[];
  seqs: number[];
  keys: string[];
  head: number;
}

export function emptyState(window = FOLD_WINDOW): AuditState {
  if (!Number.isSafeInteger(window) || window < 1) throw new RangeError(`fold window must be a positive integer, got ${window}`);
  return {
    size: 0,
    authorities: new Set(),
    gateways: new Set(),
    policy: undefined,
    policyHigh: undefined,
    revokedArtifacts: new Set(),
    revokedKeys: new Set(),
    consumedNonces: new Map(),
    tasks: new Map(),
    entries: 0,
    windowed: false,
    window,
    retire: { tasks: { entries: [], seqs: [], keys: [], head: 0 }, nonces: { entries: [], seqs: [], keys: [], head: 0 } },
    lastCheckpoint: undefined,
    trustVersion: 0,
  };
}

const cloneRetiring = (r: Retiring): Retiring => ({ entries: r.entries.slice(r.head), seqs: r.seqs.slice(r.head), keys: r.keys.slice(r.head), head: 0 });

export function cloneState(s: AuditState): AuditState {
  return {
    size: s.size,
    authorities: new Set(s.authorities),
    gateways: new Set(s.gateways),
    policy: s.policy,
    policyHigh: s.policyHigh,
    revokedArtifacts: new Set(s.revokedArtifacts),
    revokedKeys: new Set(s.revokedKeys),
    consumedNonces: new Map(s.consumedNonces),
    tasks: new Map([...s.tasks].map(([k, v]) => [k, { ...v }])),
    entries: s.entries,
    windowed: s.windowed,
    window: s.window,
    retire: { tasks: cloneRetiring(s.retire.tasks), nonces: cloneRetiring(s.retire.nonces) },
    lastCheckpoint: s.lastCheckpoint,
    trustVersion: s.trustVersion,
  };
}

/** Statuses only an allow leads to: allowed, then an outcome. */
export function hadAllow(t: TaskState): boolean {
  switch (t.status) {
    case "allowed":
    case "succeeded":
    case "failed":
      return true;
    case "evidence":
    case "denied":
      return false;
    default:
      return assertNever(t.status, "task status");
  }
}

/**
 * True when the log already holds an allow for this task id (executed, finished or
 * interrupted): the id is spent on this gateway (DecisionInput.taskClaim.local "decided").
 */
export function taskDecided(state: Readonly<AuditState>, taskId: string): boolean {
  const t = state.tasks.get(taskId);
  return t !== undefined && hadAllow(t);
}

/**
 * Forgettable a window after its last record: every status but `allowed`, which waits for its
 * outcome (crash recovery records it as interrupted). An `evidence` task whose decision never
 * made it to the log is forgotten too; a decision arriving later starts it afresh.
 */
function finished(status: TaskStatus): boolean {
  switch (status) {
    case "evidence":
    case "denied":
    case "succeeded":
    case "failed":
      return true;
    case "allowed":
      return false;
    default:
      return assertNever(status, "task status");
  }
}

function push(state: AuditState, r: Retiring, seq: number, key: string): void {
  if (!state.windowed) return;
  r.entries.push(state.entries);
  r.seqs.push(seq);
  r.keys.push(key);
}

/** Set a task's last seq; a finished task is due to be forgotten a window after it. */
function touched(state: AuditState, taskId: string, t: TaskState, seq: number): void {
  t.lastSeq = seq;
  if (finished(t.status)) push(state, state.retire.tasks, seq, taskId);
}

function touchTask(state: AuditState, taskId: string, status: TaskStatus, seq: number): TaskState {
  let t = state.tasks.get(taskId);
  if (t === undefined) state.tasks.set(taskId, (t = { status, lastSeq: seq }));
  t.status = status;
  touched(state, taskId, t, seq);
  return t;
}

/**
 * Forget what fell out of the window before the next entry: a task only if it is finished and
 * untouched since it was queued, a nonce only if nothing spent it again since.
 */
function retire(state: AuditState): void {
  if (!state.windowed) return;
  const limit = state.entries - state.window;
  const rt = state.retire.tasks;
  while (rt.head < rt.entries.length && rt.entries[rt.head]! < limit) {
    const key = rt.keys[rt.head]!;
    const t = state.tasks.get(key);
    if (t !== undefined && t.lastSeq === rt.seqs[rt.head] && finished(t.status)) state.tasks.delete(key);
    rt.head++;
  }
  const rn = state.retire.nonces;
  while (rn.head < rn.entries.length && rn.entries[rn.head]! < limit) {
    const key = rn.keys[rn.head]!;
    if (state.consumedNonces.get(key) === rn.seqs[rn.head]) state.consumedNonces.delete(key);
    rn.head++;
  }
  compact(rt);
  compact(rn);
}

/** Drop consumed entries once they are most of the arrays (amortized O(1) per entry). */
function compact(r: Retiring): void {
  if (r.head < 4096 || r.head * 2 < r.seqs.length) return;
  r.entries = r.entries.slice(r.head);
  r.seqs = r.seqs.slice(r.head);
  r.keys = r.keys.slice(r.head);
  r.head = 0;
}

/**
 * The nonce a decision spent: its DecisionInput.nonce (core/types NonceState) when the cluster
 * claim succeeded ("claimed"), and in logs from before task claims also when it showed the
 * nonce held elsewhere ("taken"). From then on the gateway's local nonce state must say
 * "consumed" for that key.
 *
 * Why "taken" no longer counts once task claims are in the log (`windowed`): the holder of a
 * taken nonce may be a flight on this very gateway that has won the nonce and is still claiming
 * its task id. Its copy's REPLAYED decision is then queued first, and counting it would make
 * the winner's own nonce look spent here, denying both. A nonce spent by another gateway is
 * in that gateway's log and in the KV, which the next claim asks.
 */
export function claimedNonce(input: JsonValue, onlyWon = false): string | undefined {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined;
  const n = input["nonce"];
  if (typeof n !== "object" || n === null || Array.isArray(n)) return undefined;
  const key = n["key"];
  return typeof key === "string" && (n["cluster"] === "claimed" || (!onlyWon && n["cluster"] === "taken")) ? key : undefined;
}

/** Apply one record in place (the caller owns `state`). Records must come in seq order. */
export function applyRecord(state: AuditState, r: AuditRecord): AuditState {
  if (r.seq !== state.size) throw new RangeError(`fold expects seq ${state.size}, got ${r.seq}`);
  const tick = r.type !== "checkpoint" && r.type !== "evidence";
  if (tick) retire(state);
  switch (r.type) {
    case "trust": {
      const c = r.change;
      switch (c.op) {
        case "authority.add":
          state.authorities.add(c.keyId);
          break;
        case "authority.remove":
          state.authorities.delete(c.keyId);
          break;
        case "gateway.add":
          state.gateways.add(c.keyId);
          break;
        case "gateway.remove":
          state.gateways.delete(c.keyId);
          break;
        case "policy.activate":
          state.policy = { digest: c.policyDigest, document: c.document };
          // Replay reports an activation that is not above the one before (POLICY_UNVERIFIED);
          // the fold keeps the highest, as the gateway that wrote the log did.
          if (c.activation !== undefined && (state.policyHigh === undefined || c.activation.payload.version >= state.policyHigh.version)) {
            state.policyHigh = { version: c.activation.payload.version, digest: c.policyDigest, issuer: c.activation.payload.issuer };
          }
          break;
        case "policy.withdraw":
          state.policy = undefined;
          break;
        default:
          assertNever(c, "trust change");
      }
      state.trustVersion += 1;
      break;
    }
    case "revocation": {
      // Replay checks the authority's signature; the fold records what the log put in force.
      const t = r.revocation.payload.target;
      if (t.type === "artifact") state.revokedArtifacts.add(t.id);
      else state.revokedKeys.add(t.keyId);
      state.trustVersion += 1;
      break;
    }
    case "evidence": {
      const t = state.tasks.get(r.taskId);
      // Late evidence never reopens a decided task.
      if (t === undefined) touchTask(state, r.taskId, "evidence", r.seq);
      else touched(state, r.taskId, t, r.seq);
      break;
    }
    case "decision": {
      if (!state.windowed && typeof r.input === "object" && r.input !== null && !Array.isArray(r.input) && r.input["taskClaim"] !== undefined) state.windowed = true;
      const nonce = claimedNonce(r.input, state.windowed);
      if (nonce !== undefined) {
        state.consumedNonces.set(nonce, r.seq);
        push(state, state.retire.nonces, r.seq, nonce);
      }
      const had = state.tasks.get(r.taskId);
      // A deny never replaces a recorded allow: after an allow, the task's own story goes on in
      // outcome records (a stop before executing is a failed outcome), so a later deny for the
      // same task id is a duplicate submission's. Letting it win would hide an allow still
      // waiting for its outcome from crash recovery (gateway.ts #recoverAndTrust).
      if (r.decision.verdict === "deny" && had !== undefined && hadAllow(had)) {
        touched(state, r.taskId, had, r.seq);
        break;
      }
      const t = touchTask(state, r.taskId, r.decision.verdict === "allow" ? "allowed" : "denied", r.seq);
      t.decisionSeq = r.seq;
      break;
    }
    case "outcome":
      touchTask(state, r.taskId, r.status, r.seq);
      break;
    case "checkpoint":
      state.lastCheckpoint = r.checkpoint.payload;
      break;
    default:
      assertNever(r, "record type");
  }
  if (tick) state.entries += 1;
  state.size = r.seq + 1;
  return state;
}

/** fold(records) → state, from the empty state or from a given one (not mutated). */
export function fold(records: Iterable<AuditRecord>, from?: AuditState): AuditState {
  const state = from === undefined ? emptyState() : cloneState(from);
  for (const r of records) applyRecord(state, r);
  return state;
}
