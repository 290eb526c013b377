// The auditor (DESIGN §5): re-verify a log from its raw bytes — positions, hash chain, Merkle
// tree, every checkpoint signature and the consistency between checkpoints — fold it, and at
// each decision re-derive the governance state and recompute `decide`. Every finding is a
// typed divergence with the seq where it shows (divergences.ts).
//
// Beyond the fold, replay holds the log to what it signs and to the trust roots the auditor
// brings: the authorities and gateway keys the log may add for itself, the gateway id it may
// decide as (its origin), the clock and limits it may decide with (clock-audit.ts), each nonce
// and task id allowed once however far apart (allow-history.ts), every execution resting on an
// allow, and every spawn attestation of this gateway resting on an allow in its own log.
import { bytesEqual, fromB64u, toB64u } from "../crypto/base64url.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import type { JsonValue } from "../canonical/jcs.ts";
import { AllowHistory, spawnClaimsOf, spawnProblem, type SpawnClaim } from "./allow-history.ts";
import { ClockAudit, type ClockRegression } from "./clock-audit.ts";
import { inlineRunner, workerRunner, type DecideJob, type DecideMismatch, type DecideRunner } from "./decide-pool.ts";
import { DivergenceLog, type DivergenceCounts, type DivergenceKind, type Divergence } from "./divergences.ts";
import { applyRecord, emptyState } from "./fold.ts";
import type { AuditLogSource } from "./log-source.ts";
import { MerkleFrontier, consistencyProof, verifyConsistency } from "./merkle.ts";
import { DENIED_BEFORE_EXECUTION, EvidenceIndex, checkDecisionClaims, lateOutcomeProblem, outcomeProblem, policyActivationProblem, revocationProblem, secondAllowProblem } from "./rederive.ts";
import { GENESIS_PREV, checkpointShapeProblem, decodeRecord, recordLeafHash, type CheckpointPayload } from "./records.ts";
import { TrustHistory, refersToLogTrust } from "./trust-view.ts";
import { TASK_ID_RE } from "../nats/contract.ts";
import { foldDifference, startSnapshotAudit, type SnapshotUnderAudit } from "./snapshot-audit.ts";
import type { DecisionLimits } from "../core/types.ts";

export type { Divergence, DivergenceCounts, DivergenceKind } from "./divergences.ts";

export interface TrustRoots {
  /** keyIds whose checkpoint signatures are accepted. */
  readonly gatewayKeys: readonly string[];
  /**
   * When set, the only authorities the log may add (UNTRUSTED_AUTHORITY otherwise). Policy: trust
   * records are the gateway's own, unsigned; without this, an authority the log adds for itself
   * is taken on the log's word (the report says so: authoritiesPinned false), and `audit replay`
   * refuses to run that way unless told to (--trust-log-authorities).
   */
  readonly authorities?: readonly string[];
  /**
   * When set, gateway keys (spawn-lineage signers) the log may add besides `gatewayKeys`: its
   * peers' (UNTRUSTED_GATEWAY otherwise). Unset: not checked (the report says gatewaysPinned false).
   */
  readonly peerGateways?: readonly string[];
  /** When set, checkpoints must name this origin and decisions this gateway id; else the log's first signed checkpoint names it. */
  readonly origin?: string;
  /** The gateway's configured decision limits: an allow recorded with looser ones is LIMITS_LOOSER (clock-audit.ts). */
  readonly limits?: Partial<DecisionLimits>;
  /** The gateway's step timeout (GatewayOptions.stepTimeoutMs) when not the default 10 s: bounds the clock checks. */
  readonly commitTimeoutMs?: number;
}

export interface ReplayOptions {
  /** Checkpoints obtained outside the log (from NATS, a witness): catch truncation and rewrites. */
  readonly checkpoints?: readonly Signed<CheckpointPayload>[];
  /** false: verify structure only (positions, chain, tree, checkpoints, signatures); skip decisions. */
  readonly rederive?: boolean;
  /** Worker threads for recomputing decisions (0 = in this thread). Default: 0. */
  readonly workers?: number;
  /**
   * With workers: this thread also recomputes chunks whenever every worker has a backlog
   * (default true). Measured on 2 cores: 1 worker + this thread ≈ 1.9× inline; 2 workers
   * without it were slower than inline, the log reader starving for a core.
   */
  readonly helpInline?: boolean;
  /** Decisions per worker message. */
  readonly chunkSize?: number;
  /** Called every `progressEvery` records (CLI progress bar). */
  readonly onProgress?: (recordsChecked: number) => void;
  readonly progressEvery?: number;
  /**
   * The fold's window in entries (fold.ts FOLD_WINDOW). For tests only: the log's writer and
   * every replay of it must use the same value, and only the default is ever assumed.
   */
  readonly foldWindow?: number;
}

export interface ReplayReport {
  readonly ok: boolean;
  readonly recordsChecked: number;
  readonly decisionsRederived: number;
  readonly checkpointsVerified: number;
  readonly size: number;
  readonly root: string;
  /** Records after the last verified checkpoint: not yet witnessed by anyone. */
  readonly uncheckpointedTail: number;
  /** The gateway's fold snapshot, when the log holds one (snapshot-audit.ts). */
  readonly snapshot?: { readonly at: number; readonly result: "matches" | "differs" | "invalid" | "not compared"; readonly detail?: string };
  /**
   * Whether the authorities the log adds were held to the trust roots (TrustRoots.authorities).
   * false: every authority the log names was taken on its own word. (Always set by replay.)
   */
  readonly authoritiesPinned?: boolean;
  /** Whether the gateway keys the log adds were held to the trust roots (TrustRoots.peerGateways). (Always set by replay.) */
  readonly gatewaysPinned?: boolean;
  /**
   * The furthest the log's clock readings ran back behind a time a checkpoint had signed, beyond
   * one gateway's clock noise: a clock that was turned back, or one that ran fast and was set
   * right. Not a divergence by itself (clock-audit.ts); an allow it let through is CLOCK_BACKWARDS.
   */
  readonly clockRegression?: ClockRegression;
  /** How many divergences there were, by kind, and how many `divergences` leaves out. (Always set by replay.) */
  readonly divergenceCounts?: DivergenceCounts;
  /** The first KEPT_PER_KIND of each kind, and every one at an allow or an execution (divergences.ts). */
  readonly divergences: readonly Divergence[];
}

const isObj = (v: unknown): v is Record<string, JsonValue> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The gateway id a decision input says it was measured on, if it says. */
function measuredGatewayId(input: JsonValue): string | undefined {
  const env = isObj(input) ? input["environment"] : undefined;
  return isObj(env) && typeof env["gatewayId"] === "string" ? env["gatewayId"] : undefined;
}

export async function replay(log: AuditLogSource, trustRoots: TrustRoots, opts: ReplayOptions = {}): Promise<ReplayReport> {
  const divergences = new DivergenceLog();
  /** `atAllow`: found at an allow decision or an execution, so listed whatever the count of its kind. */
  const report = (seq: number, kind: DivergenceKind, detail: string, atAllow = false): void => divergences.report(seq, kind, detail, atAllow);
  const gatewayKeys = new Map(trustRoots.gatewayKeys.map((k) => [k, fromB64u(k, 32)]));
  const pinnedAuthorities = trustRoots.authorities === undefined ? undefined : new Set(trustRoots.authorities);
  const pinnedGateways = trustRoots.peerGateways === undefined ? undefined : new Set([...trustRoots.gatewayKeys, ...trustRoots.peerGateways]);
  const clock = new ClockAudit({ ...(trustRoots.limits !== undefined ? { limits: trustRoots.limits } : {}), ...(trustRoots.commitTimeoutMs !== undefined ? { commitTimeoutMs: trustRoots.commitTimeoutMs } : {}) });
  // Every trust change in the log, stamped with its version: decisions that refer to the log's
  // trust are recomputed on it as it stood at their version (trust-view.ts).
  const trustHistory = new TrustHistory();
  const runner: DecideRunner = (opts.workers ?? 0) > 0 ? workerRunner(trustHistory, opts.workers, opts.helpInline ?? true) : inlineRunner(trustHistory);
  const chunkSize = opts.chunkSize ?? 64;
  const pendingRuns: Promise<DecideMismatch[]>[] = [];
  let chunk: DecideJob[] = [];
  const flush = (): void => {
    const run = runner.submit(chunk);
    // Marked handled now: a chunk that fails before Promise.all below is reached must fail the
    // replay there (an error, exit 2), not crash the process as an unhandled rejection.
    run.catch(() => undefined);
    pendingRuns.push(run);
    chunk = [];
  };

  const state = emptyState(opts.foldWindow);
  // The gateway's fold snapshot: checked now as far as it can be, compared when the fold gets there.
  let snapshotResult: ReplayReport["snapshot"];
  let underAudit: SnapshotUnderAudit | undefined;
  const storedSnapshot = await log.snapshot?.();
  if (storedSnapshot !== undefined) {
    const start = startSnapshotAudit(storedSnapshot, trustRoots.gatewayKeys, trustRoots.origin, state.window);
    switch (start.kind) {
      case "check":
        underAudit = start.snapshot;
        break;
      case "note":
        snapshotResult = { at: start.at, result: "not compared", detail: start.note };
        break;
      case "problem":
        report(start.seq, "SNAPSHOT_INVALID", start.detail);
        snapshotResult = { at: start.seq, result: "invalid", detail: start.detail };
        break;
      default:
        start satisfies never;
    }
  }
  const compareSnapshot = (at: number, root: string, chainPrev: string): void => {
    const s = underAudit;
    if (s === undefined || s.size !== at) return;
    underAudit = undefined;
    const problem = s.root !== root ? "its root is not the log's root there" : s.prev !== chainPrev ? "its chain link is not the log's" : foldDifference(s.state, state);
    if (problem === undefined) snapshotResult = { at, result: "matches" };
    else {
      report(at, "SNAPSHOT_STATE", `fold snapshot at ${at} differs from the log's fold: ${problem}`);
      snapshotResult = { at, result: "differs", detail: problem };
    }
  };
  const evidence = new EvidenceIndex();
  const history = new AllowHistory();
  /**
   * Tasks whose execution ended `failed` and has not had its late outcome (records.ts `late`): a
   * late one is taken only for these, whatever the fold holds of the task id since (its window may
   * have let the task go, or a copy's deny put it back as denied). Unwindowed: one entry per
   * failed execution, dropped at its late outcome.
   */
  const awaitingLate = new Set<string>();
  /**
   * CLOCK_MISMATCH at an allow, held until the task's next outcome: an allow whose commit outlasted
   * the gateway's step timeout was denied before it ran ("denied before execution"), and its
   * clock readings say nothing then. Reported at any other outcome, and at the end.
   */
  const clockHeld = new Map<string, { seq: number; detail: string }>();
  const frontier = new MerkleFrontier();
  const rootsAtSize = new Map<number, string>(); // roots wanted by external checkpoints
  const wanted = new Set((opts.checkpoints ?? []).filter((c) => checkpointShapeProblem(c) === undefined).map((c) => c.payload.size));
  let prev = GENESIS_PREV;
  let decisions = 0;
  /** No record so far was missing, moved or altered: stored tree nodes are compared while so. */
  let treeWhole = true;
  let lastWitnessable = -1; // last record a checkpoint could cover (checkpoints cannot cover themselves)
  let position = 0;
  /** The origin this log's first trusted checkpoint names (for external ones, and decisions, when the trust roots name none). */
  let logOrigin: string | undefined;
  /** Gateway keys that signed this log's own checkpoints: they are its gateway's keys. */
  const ownKeys = new Set<string>();
  /** Verified checkpoints (size, root), for the successive-consistency check. */
  const verified: { seq: number; size: number; root: string }[] = [];

  /** Why a checkpoint does not count as this log's, if it does not; else the key that signed it. */
  const checkSignature = (cp: Signed<CheckpointPayload>): { bad: string } | { key: string } => {
    if (trustRoots.origin !== undefined && cp.payload.origin !== trustRoots.origin) return { bad: `origin ${cp.payload.origin} is not ${trustRoots.origin}` };
    for (const [key, pub] of gatewayKeys) if (pub !== undefined && verifySigned("checkpoint", cp, pub)) return { key };
    return { bad: "checkpoint not signed by a trusted gateway key" };
  };
  // Checkpoints a witness holds, signed by a trusted key: the times they sign hold for every
  // record after their size (their roots are checked after the log is read).
  const externalTimes = new Map<number, { time: number; origin: string }[]>();
  /** A witness's times met before the log's origin is known (its first checkpoint is read after them): applied once it is. */
  const timesBeforeOrigin: { time: number; origin: string; seq: number }[] = [];
  for (const cp of opts.checkpoints ?? []) {
    if (checkpointShapeProblem(cp) !== undefined || "bad" in checkSignature(cp)) continue;
    const at = externalTimes.get(cp.payload.size) ?? [];
    at.push({ time: cp.payload.time, origin: cp.payload.origin });
    externalTimes.set(cp.payload.size, at);
  }

  // Origin checks: a decision's measured gateway id and the spawn attestations of this gateway
  // are held to the log's origin. Without one in the trust roots it is known from the first
  // trusted checkpoint: what comes before that waits here (a checkpoint every 1,000 records by
  // default, so this holds little; a log with no checkpoint at all holds one entry per decision).
  const expectedOrigin = (): string | undefined => trustRoots.origin ?? logOrigin;
  const waitingIds: { seq: number; gatewayId: string; allow: boolean }[] = [];
  const waitingSpawns: { seq: number; claim: SpawnClaim }[] = [];
  /**
   * Spawns naming another gateway, signed by a trusted gateway key that has signed none of this
   * log's checkpoints yet: a finding if it turns out to be this log's key (it signs a later one).
   * One small entry per such child allow (a peer's spawns, in a cluster) until the log is read.
   */
  const foreignSpawns: { seq: number; claim: SpawnClaim }[] = [];
  const foreignSpawn = (seq: number, claim: SpawnClaim): void =>
    report(seq, "SPAWN_UNVERIFIED", `lineage[${claim.index}] is signed with this log's gateway key but names gateway ${JSON.stringify(claim.gatewayId)}`, true);
  const checkGatewayId = (seq: number, gatewayId: string, allow: boolean, origin: string): void => {
    if (gatewayId !== origin) report(seq, "GATEWAY_ID_MISMATCH", `decision measured on gateway ${JSON.stringify(gatewayId)}; this log is ${JSON.stringify(origin)}'s`, allow);
  };
  const checkSpawn = (seq: number, claim: SpawnClaim, origin: string): void => {
    if (claim.gatewayId === origin) {
      const why = spawnProblem(claim, seq, history);
      if (why !== undefined) report(seq, "SPAWN_UNVERIFIED", why, true);
    } else if (claim.signer !== undefined && ownKeys.has(claim.signer)) {
      foreignSpawn(seq, claim);
    } else if (claim.signer !== undefined && gatewayKeys.has(claim.signer)) {
      foreignSpawns.push({ seq, claim });
    }
  };
  const originKnown = (origin: string): void => {
    for (const e of timesBeforeOrigin.splice(0)) if (e.origin === origin) clock.signed(e.time, e.seq);
    for (const w of waitingIds.splice(0)) checkGatewayId(w.seq, w.gatewayId, w.allow, origin);
    for (const w of waitingSpawns.splice(0)) checkSpawn(w.seq, w.claim, origin);
  };

  try {
    for await (const { position: stored, bytes, problem } of log.records()) {
      const seq = position++;
      if (wanted.has(frontier.size)) rootsAtSize.set(frontier.size, toB64u(frontier.root()));
      if (underAudit?.size === seq) compareSnapshot(seq, toB64u(frontier.root()), prev);
      for (const e of externalTimes.get(seq) ?? []) {
        const origin = expectedOrigin();
        if (origin === undefined) timesBeforeOrigin.push({ ...e, seq });
        else if (e.origin === origin) clock.signed(e.time, seq);
      }
      const leaf = recordLeafHash(bytes);
      const leafB64 = toB64u(leaf);
      // Positions: a deleted or swapped record shows as a key that is not the next seq.
      if (stored !== seq) report(seq, "SEQ_MISMATCH", `record stored at position ${String(stored)}, expected ${seq}`);
      const storedLeaf = log.storedLeaf?.(seq);
      if (storedLeaf !== undefined && toB64u(storedLeaf) !== leafB64) report(seq, "LEAF_MISMATCH", "record bytes differ from the leaf the tree committed to");
      const d = decodeRecord(bytes);
      // A checkpoint record signs the tree of every record before it: take that root first.
      const rootBefore = d.ok && d.record.type === "checkpoint" ? toB64u(frontier.root()) : "";
      const created = frontier.append(leaf);
      if (problem !== undefined) report(seq, "RECORD_MALFORMED", problem);
      const chainPrev = prev;
      prev = leafB64;
      if (opts.onProgress !== undefined && seq % (opts.progressEvery ?? 10_000) === 0) opts.onProgress(seq);
      if (!d.ok) {
        report(seq, "RECORD_MALFORMED", d.detail);
        state.size = seq + 1; // keep folding what follows
        continue;
      }
      const r = d.record;
      if (r.type !== "checkpoint") lastWitnessable = seq;
      if (r.seq !== seq) report(seq, "SEQ_MISMATCH", `record says seq ${r.seq} at position ${seq}`);
      if (r.prev !== chainPrev) report(seq, "CHAIN_BROKEN", "prev is not the leaf hash of the previous record");
      // The subtree hashes stored beside each record (proofs are served from them, the store
      // builds new ones on them) must be those the records make. Checked while the log is whole
      // up to here: once a record is missing, moved or altered (reported above), every later
      // node differs for that reason alone.
      const whole = stored === seq && r.seq === seq && r.prev === chainPrev && problem === undefined && (storedLeaf === undefined || bytesEqual(storedLeaf, leaf));
      treeWhole &&= whole;
      const nodes = treeWhole ? log.storedNodes?.(seq) : undefined;
      if (nodes !== undefined) {
        const k = nodes.length !== created.length ? 0 : created.findIndex((c, level) => level > 0 && !bytesEqual(c.hash, nodes[level]!));
        if (k === 0) report(seq, "TREE_NODE_MISMATCH", `the slot stores ${nodes.length} tree nodes; appending this record completes ${created.length}`);
        else if (k > 0) report(seq, "TREE_NODE_MISMATCH", `stored tree node ${k}/${created[k]!.id.index} differs from the one recomputed from the records`);
      }
      // Fold by position so one bad seq does not stop replay (spread, then assign: see ledger.ts).
      const rec = { ...r } as typeof r & { seq: number };
      rec.seq = seq;
      switch (rec.type) {
        case "checkpoint": {
          const cp = rec.checkpoint;
          const signed = checkSignature(cp);
          // Policy: one log, one origin. Without one pinned, the first trusted checkpoint names it.
          const bad =
            "bad" in signed ? signed.bad : logOrigin !== undefined && cp.payload.origin !== logOrigin ? `checkpoint names origin ${cp.payload.origin}; this log's checkpoints name ${logOrigin}` : undefined;
          if (bad !== undefined) report(seq, "CHECKPOINT_SIGNATURE", bad);
          else if ("key" in signed) {
            ownKeys.add(signed.key);
            if (logOrigin === undefined) {
              logOrigin = cp.payload.origin;
              if (trustRoots.origin === undefined) originKnown(logOrigin);
            }
          }
          clock.observe(seq, cp.payload.time);
          const root = rootBefore;
          if (cp.payload.size !== seq || cp.payload.root !== root) {
            report(seq, "CHECKPOINT_ROOT", `checkpoint signs size ${cp.payload.size}, root ${cp.payload.root}; log has ${seq}, ${root}`);
          } else if (bad === undefined) {
            verified.push({ seq, size: seq, root });
            clock.signed(cp.payload.time, seq);
          }
          break;
        }
        case "trust": {
          const c = rec.change;
          if (pinnedAuthorities !== undefined && c.op === "authority.add" && !pinnedAuthorities.has(c.keyId)) {
            report(seq, "UNTRUSTED_AUTHORITY", `authority ${c.keyId} is not in the trust roots`, true);
          }
          // A trusted gateway key signs spawn lineage (decide's "lineage" check): one the log
          // adds for itself could attest any parent.
          if (pinnedGateways !== undefined && c.op === "gateway.add" && !pinnedGateways.has(c.keyId)) {
            report(seq, "UNTRUSTED_GATEWAY", `gateway key ${c.keyId} is neither a checkpoint key nor a peer in the trust roots`, true);
          }
          if (c.op === "policy.activate") {
            const why = policyActivationProblem(c, state);
            if (why !== undefined) report(seq, "POLICY_UNVERIFIED", why, true);
          }
          break;
        }
        case "revocation": {
          const why = revocationProblem(rec, state);
          if (why !== undefined) report(seq, "REVOCATION_UNVERIFIED", why);
          break;
        }
        case "evidence":
          evidence.add(rec.taskId, rec.signed);
          break;
        case "decision": {
          if (opts.rederive === false) break;
          decisions++;
          const allow = rec.decision.verdict === "allow";
          // The task id the fold keys the decision by must be the one its request signs: else an
          // allow filed under another id would let the request's own task id run again.
          const named = (rec.input as { request?: { payload?: { taskId?: unknown } } } | null)?.request?.payload?.taskId;
          if (typeof named === "string" && named !== rec.taskId && (allow || TASK_ID_RE.test(named))) {
            report(seq, "TASK_ID_MISMATCH", `decision recorded for task ${JSON.stringify(rec.taskId)}; its request names ${JSON.stringify(named)}`, allow);
          }
          for (const p of checkDecisionClaims(rec.input, state)) report(seq, p.kind, p.detail, allow);
          // decide() judges an artifact's gateway binding on the gateway id the record says it
          // measured: that must be the gateway whose log this is.
          const gatewayId = measuredGatewayId(rec.input);
          const origin = expectedOrigin();
          if (gatewayId !== undefined) {
            if (origin !== undefined) checkGatewayId(seq, gatewayId, allow, origin);
            else waitingIds.push({ seq, gatewayId, allow });
          }
          if (allow) {
            for (const p of evidence.checkAllow(rec.taskId, rec.input)) report(seq, p.kind, p.detail, true);
            const p = secondAllowProblem(rec.taskId, rec.input, state);
            if (p !== undefined) report(seq, p.kind, p.detail, true);
            for (const q of history.problems(rec.taskId, rec.input)) report(seq, q.kind, q.detail, true);
            for (const q of clock.allow(seq, rec.time, rec.input)) {
              if (q.kind === "CLOCK_MISMATCH") clockHeld.set(rec.taskId, { seq, detail: q.detail });
              else report(seq, q.kind, q.detail, true);
            }
            for (const claim of spawnClaimsOf(rec.input)) {
              if (origin !== undefined) checkSpawn(seq, claim, origin);
              else waitingSpawns.push({ seq, claim });
            }
            history.add(seq, rec.taskId, leafB64, rec.input);
          }
          evidence.forget(rec.taskId);
          const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
          if (refersToLogTrust(rec.input)) {
            // The recorded input refers to the log's trust: recompute on the fold as it stands here.
            chunk.push({ seq, record: text, trustVersion: state.trustVersion });
          } else {
            chunk.push({ seq, record: text });
          }
          if (chunk.length >= chunkSize) flush();
          break;
        }
        case "outcome": {
          if (opts.rederive === false) break;
          // An execution must rest on an allow waiting for its outcome (DESIGN §4); a late
          // outcome tells the rest of a timed-out one, once.
          const why = rec.late === true ? lateOutcomeProblem(rec.taskId, awaitingLate) : outcomeProblem(rec.taskId, state);
          if (why !== undefined) report(seq, "OUTCOME_WITHOUT_ALLOW", why, true);
          if (rec.late === true) awaitingLate.delete(rec.taskId);
          else if (why === undefined && rec.status === "failed") awaitingLate.add(rec.taskId);
          const held = clockHeld.get(rec.taskId);
          if (held !== undefined && rec.late !== true) {
            clockHeld.delete(rec.taskId);
            if (!(rec.status === "failed" && rec.error?.startsWith(DENIED_BEFORE_EXECUTION) === true)) report(held.seq, "CLOCK_MISMATCH", held.detail, true);
          }
          break;
        }
        default:
          rec satisfies never;
      }
      applyRecord(state, rec);
      if (rec.type === "trust" || rec.type === "revocation") trustHistory.note(rec, state);
    }
    if (chunk.length > 0) flush();
    // An allow with no outcome yet (still executing, or the gateway died): its clock finding stands.
    for (const held of clockHeld.values()) report(held.seq, "CLOCK_MISMATCH", held.detail, true);
    for (const mismatches of await Promise.all(pendingRuns)) {
      for (const m of mismatches) report(m.seq, "DECISION_MISMATCH", `decide(recorded input) gives ${m.recomputed}`);
    }
  } finally {
    await runner.close();
  }

  // What waited for the origin: with none known (no trusted checkpoint, none pinned) the gateway
  // ids and spawn attestations cannot be held to it, and the checkpoints are reported anyway.
  const origin = expectedOrigin();
  if (origin !== undefined) originKnown(origin);
  // A spawn naming another gateway, signed by a key that signs this log's checkpoints: this
  // gateway attesting for another. Keys are tied to a gateway only that way; a trusted key that
  // signs none of this log's checkpoints (a peer's) could be any gateway's, and is not judged.
  for (const { seq, claim } of foreignSpawns) if (claim.signer !== undefined && ownKeys.has(claim.signer)) foreignSpawn(seq, claim);

  const size = position;
  if (wanted.has(size)) rootsAtSize.set(size, toB64u(frontier.root()));
  if (underAudit !== undefined) {
    if (underAudit.size === size) compareSnapshot(size, toB64u(frontier.root()), prev);
    else {
      report(size, "SNAPSHOT_INVALID", `fold snapshot at ${underAudit.size} is past the end of the log (${size} records)`);
      snapshotResult = { at: underAudit.size, result: "invalid", detail: "past the end of the log" };
    }
  }
  const head = await log.head?.();
  if (head !== undefined && (head.size !== size || head.last !== prev)) {
    report(Math.min(size, Math.max(head.size, 0)), head.size > size ? "TRUNCATED" : "HEAD_MISMATCH", `store head says ${head.size} records ending ${head.last}; log has ${size} ending ${prev}`);
  }

  // External checkpoints: a witness's copy pins sizes and roots the log must still reproduce.
  for (const [i, cp] of (opts.checkpoints ?? []).entries()) {
    const shape = checkpointShapeProblem(cp);
    if (shape !== undefined) {
      report(0, "CHECKPOINT_SIGNATURE", `external checkpoint #${i} is not a signed checkpoint (${shape})`);
      continue;
    }
    // Without an origin in the trust roots, the log names its own: another log's checkpoints
    // (a witness file of another gateway sharing a key) are reported as such, not as a fork.
    if (trustRoots.origin === undefined && logOrigin !== undefined && cp.payload.origin !== logOrigin) {
      report(cp.payload.size, "CHECKPOINT_SIGNATURE", `external checkpoint #${i} is of origin ${cp.payload.origin}; this log's checkpoints name ${logOrigin}`);
      continue;
    }
    const signed = checkSignature(cp);
    if ("bad" in signed) {
      report(cp.payload.size, "CHECKPOINT_SIGNATURE", `external checkpoint: ${signed.bad}`);
      continue;
    }
    if (cp.payload.size > size) {
      report(size, "TRUNCATED", `a trusted checkpoint covers ${cp.payload.size} records; the log holds ${size}`);
      continue;
    }
    const root = rootsAtSize.get(cp.payload.size);
    if (root !== cp.payload.root) {
      report(cp.payload.size, "CHECKPOINT_ROOT", `external checkpoint root for size ${cp.payload.size} differs from the log's (fork or rewrite)`);
      continue;
    }
    verified.push({ seq: cp.payload.size, size: cp.payload.size, root });
  }

  // Consistency between successive checkpoints, with proofs built from the stored tree: the
  // proofs a third party receives must hold, not just the roots replay recomputed.
  const lookup = log.nodeLookup;
  if (lookup !== undefined) {
    const bySize = [...new Map(verified.filter((v) => v.size > 0).map((v) => [v.size, v])).values()].sort((a, b) => a.size - b.size);
    for (let i = 1; i < bySize.length; i++) {
      const [a, b] = [bySize[i - 1]!, bySize[i]!];
      let ok = false;
      try {
        const proof = consistencyProof(a.size, b.size, lookup);
        ok = verifyConsistency(a.size, b.size, proof, fromB64u(a.root, 32) ?? new Uint8Array(0), fromB64u(b.root, 32) ?? new Uint8Array(0)).ok;
      } catch {
        ok = false;
      }
      if (!ok) report(b.seq, "CHECKPOINT_INCONSISTENT", `stored tree gives no valid consistency proof from ${a.size} to ${b.size}`);
    }
  }

  const lastVerified = verified.reduce((m, v) => Math.max(m, v.size), 0);
  return {
    ok: divergences.total === 0,
    recordsChecked: size,
    decisionsRederived: decisions,
    checkpointsVerified: verified.length,
    size,
    root: toB64u(frontier.root()),
    uncheckpointedTail: Math.max(0, lastWitnessable + 1 - lastVerified),
    ...(snapshotResult !== undefined ? { snapshot: snapshotResult } : {}),
    ...(clock.regression !== undefined ? { clockRegression: clock.regression } : {}),
    authoritiesPinned: pinnedAuthorities !== undefined,
    gatewaysPinned: pinnedGateways !== undefined,
    divergenceCounts: divergences.counts(),
    divergences: divergences.list(),
  };
}
