// Event sourcing (DESIGN §5): the governance state at any point of the log is the fold of
// the records before it. Pure: no I/O, no clock. The store folds as it appends; replay folds
// independently and compares what each decision claimed against this state.
import type { JsonValue } from "../canonical/jcs.ts";
import type { AuditRecord, CheckpointPayload } from "./records.ts";

export type TaskStatus = "evidence" | "allowed" | "denied" | "succeeded" | "failed";

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
  revokedArtifacts: Set<string>;
  revokedKeys: Set<string>;
  consumedNonces: Set<string>;
  tasks: Map<string, TaskState>;
  lastCheckpoint: CheckpointPayload | undefined;
  /** Bumped by every trust and revocation record: a cache key for derived trust views. */
  trustVersion: number;
}

export function emptyState(): AuditState {
  return {
    size: 0,
    authorities: new Set(),
    gateways: new Set(),
    policy: undefined,
    revokedArtifacts: new Set(),
    revokedKeys: new Set(),
    consumedNonces: new Set(),
    tasks: new Map(),
    lastCheckpoint: undefined,
    trustVersion: 0,
  };
}

export function cloneState(s: AuditState): AuditState {
  return {
    size: s.size,
    authorities: new Set(s.authorities),
    gateways: new Set(s.gateways),
    policy: s.policy,
    revokedArtifacts: new Set(s.revokedArtifacts),
    revokedKeys: new Set(s.revokedKeys),
    consumedNonces: new Set(s.consumedNonces),
    tasks: new Map([...s.tasks].map(([k, v]) => [k, { ...v }])),
    lastCheckpoint: s.lastCheckpoint,
    trustVersion: s.trustVersion,
  };
}

function assertNever(x: never): never {
  throw new TypeError(`unhandled record type ${JSON.stringify(x)}`);
}

/** Statuses only an allow leads to: allowed, then an outcome. */
function hadAllow(t: TaskState): boolean {
  switch (t.status) {
    case "allowed":
    case "succeeded":
    case "failed":
      return true;
    case "evidence":
    case "denied":
      return false;
    default:
      return assertNever(t.status);
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

function touchTask(state: AuditState, taskId: string, status: TaskStatus, seq: number): TaskState {
  const t = state.tasks.get(taskId) ?? { status, lastSeq: seq };
  t.status = status;
  t.lastSeq = seq;
  state.tasks.set(taskId, t);
  return t;
}

/**
 * The nonce a decision spent: its DecisionInput.nonce (core/types NonceState) when the cluster
 * claim succeeded ("claimed") or showed another gateway had spent it ("taken"). From then on
 * the gateway's local nonce state must say "consumed" for that key.
 */
export function claimedNonce(input: JsonValue): string | undefined {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined;
  const n = input["nonce"];
  if (typeof n !== "object" || n === null || Array.isArray(n)) return undefined;
  const key = n["key"];
  return typeof key === "string" && (n["cluster"] === "claimed" || n["cluster"] === "taken") ? key : undefined;
}

/** Apply one record in place (the caller owns `state`). Records must come in seq order. */
export function applyRecord(state: AuditState, r: AuditRecord): AuditState {
  if (r.seq !== state.size) throw new RangeError(`fold expects seq ${state.size}, got ${r.seq}`);
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
          break;
        case "policy.withdraw":
          state.policy = undefined;
          break;
        default:
          assertNever(c);
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
      else t.lastSeq = r.seq;
      break;
    }
    case "decision": {
      const nonce = claimedNonce(r.input);
      if (nonce !== undefined) state.consumedNonces.add(nonce);
      const had = state.tasks.get(r.taskId);
      // A deny never replaces a recorded allow: after an allow, the task's own story goes on in
      // outcome records (a stop before executing is a failed outcome), so a later deny for the
      // same task id is a duplicate submission's. Letting it win would hide an allow still
      // waiting for its outcome from crash recovery (gateway.ts #recoverAndTrust).
      if (r.decision.verdict === "deny" && had !== undefined && hadAllow(had)) {
        had.lastSeq = r.seq;
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
      assertNever(r);
  }
  state.size = r.seq + 1;
  return state;
}

/** fold(records) → state, from the empty state or from a given one (not mutated). */
export function fold(records: Iterable<AuditRecord>, from?: AuditState): AuditState {
  const state = from === undefined ? emptyState() : cloneState(from);
  for (const r of records) applyRecord(state, r);
  return state;
}
