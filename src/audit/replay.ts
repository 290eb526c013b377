// The auditor (DESIGN §5): re-verify a log from its raw bytes — positions, hash chain, Merkle
// tree, every checkpoint signature and the consistency between checkpoints — fold it, and at
// each decision re-derive the governance state and recompute `decide`. Every finding is a
// typed divergence with the seq where it shows.
import { bytesEqual, fromB64u, toB64u } from "../crypto/base64url.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import { inlineRunner, workerRunner, type DecideJob, type DecideMismatch, type DecideRunner } from "./decide-pool.ts";
import { applyRecord, emptyState } from "./fold.ts";
import type { AuditLogSource } from "./log-source.ts";
import { MerkleFrontier, consistencyProof, verifyConsistency } from "./merkle.ts";
import { EvidenceIndex, checkDecisionClaims, policyActivationProblem, revocationProblem, secondAllowProblem } from "./rederive.ts";
import { GENESIS_PREV, checkpointShapeProblem, decodeRecord, recordLeafHash, type CheckpointPayload } from "./records.ts";
import { TrustViewCache, refersToLogTrust } from "./trust-view.ts";
import { TASK_ID_RE } from "../nats/contract.ts";
import { foldDifference, startSnapshotAudit, type SnapshotUnderAudit } from "./snapshot-audit.ts";
import type { TrustSnapshot } from "../core/types.ts";


export type DivergenceKind =
  | "RECORD_MALFORMED" // bytes are not a canonical, well-formed record
  | "SEQ_MISMATCH" // a record missing, moved or swapped: its seq is not its position
  | "CHAIN_BROKEN" // prev is not the leaf hash of the record before
  | "LEAF_MISMATCH" // record bytes differ from the leaf hash the tree committed to
  | "TREE_NODE_MISMATCH" // a subtree hash stored beside a record differs from the one recomputed from the records
  | "HEAD_MISMATCH" // the store's commit point disagrees with the records (truncation, rewrite)
  | "TRUNCATED" // a trusted checkpoint covers more records than the log holds
  | "CHECKPOINT_SIGNATURE" // not signed by a trusted gateway key (or wrong origin)
  | "CHECKPOINT_ROOT" // signed root/size disagree with the log's tree
  | "CHECKPOINT_INCONSISTENT" // a consistency proof between successive checkpoints fails
  | "UNTRUSTED_AUTHORITY" // the log adds an authority the trust roots do not know
  | "REVOCATION_UNVERIFIED" // a revocation in force without a valid authority signature
  | "POLICY_UNVERIFIED" // a policy activated without a trusted authority's signature, or older than the one in force
  | "TRUST_STATE" // a decision's trust snapshot differs from the fold
  | "NONCE_STATE" // a decision's nonce state differs from the fold
  | "TASK_STATE" // a decision's task-claim state differs from the fold
  | "TASK_ID_MISMATCH" // a decision recorded under another task id than its signed request names
  | "EVIDENCE_MISSING" // an allow resting on evidence the log never recorded
  | "INPUT_MALFORMED" // a decision input without trust or nonce state
  | "DECISION_MISMATCH" // decide(recorded input) ≠ recorded decision
  | "SNAPSHOT_INVALID" // the gateway's fold snapshot is unsigned by a trusted key, of another log, or damaged
  | "SNAPSHOT_STATE"; // the fold snapshot's state, root or chain link differ from replay's at its position

export interface Divergence {
  readonly seq: number;
  readonly kind: DivergenceKind;
  readonly detail: string;
}

export interface TrustRoots {
  /** keyIds whose checkpoint signatures are accepted. */
  readonly gatewayKeys: readonly string[];
  /** When set, the only authorities the log may add. */
  readonly authorities?: readonly string[];
  /** When set, checkpoints must name this origin. */
  readonly origin?: string;
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
  readonly divergences: readonly Divergence[];
}

const MAX_DIVERGENCES = 10_000;

export async function replay(log: AuditLogSource, trustRoots: TrustRoots, opts: ReplayOptions = {}): Promise<ReplayReport> {
  const divergences: Divergence[] = [];
  const report = (seq: number, kind: DivergenceKind, detail: string): void => {
    if (divergences.length < MAX_DIVERGENCES) divergences.push({ seq, kind, detail });
  };
  const gatewayKeys = new Map(trustRoots.gatewayKeys.map((k) => [k, fromB64u(k, 32)]));
  const pinnedAuthorities = trustRoots.authorities === undefined ? undefined : new Set(trustRoots.authorities);
  const runner: DecideRunner = (opts.workers ?? 0) > 0 ? workerRunner(opts.workers, opts.helpInline ?? true) : inlineRunner();
  const chunkSize = opts.chunkSize ?? 64;
  const pendingRuns: Promise<DecideMismatch[]>[] = [];
  let chunk: DecideJob[] = [];
  let chunkTrust: Record<number, TrustSnapshot> = {};
  const trustView = new TrustViewCache();
  const flush = (): void => {
    const run = runner.submit({ jobs: chunk, trust: chunkTrust });
    // Marked handled now: a chunk that fails before Promise.all below is reached must fail the
    // replay there (an error, exit 2), not crash the process as an unhandled rejection.
    run.catch(() => undefined);
    pendingRuns.push(run);
    chunk = [];
    chunkTrust = {};
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
  const frontier = new MerkleFrontier();
  const rootsAtSize = new Map<number, string>(); // roots wanted by external checkpoints
  const wanted = new Set((opts.checkpoints ?? []).filter((c) => checkpointShapeProblem(c) === undefined).map((c) => c.payload.size));
  let prev = GENESIS_PREV;
  let decisions = 0;
  /** No record so far was missing, moved or altered: stored tree nodes are compared while so. */
  let treeWhole = true;
  let lastWitnessable = -1; // last record a checkpoint could cover (checkpoints cannot cover themselves)
  let position = 0;
  /** The origin this log's own first checkpoint names (for external ones, when the trust roots name none). */
  let logOrigin: string | undefined;
  /** Verified checkpoints (size, root), for the successive-consistency check. */
  const verified: { seq: number; size: number; root: string }[] = [];

  const checkSignature = (cp: Signed<CheckpointPayload>): string | undefined => {
    if (trustRoots.origin !== undefined && cp.payload.origin !== trustRoots.origin) return `origin ${cp.payload.origin} is not ${trustRoots.origin}`;
    for (const pub of gatewayKeys.values()) if (pub !== undefined && verifySigned("checkpoint", cp, pub)) return undefined;
    return "checkpoint not signed by a trusted gateway key";
  };

  try {
    for await (const { position: stored, bytes, problem } of log.records()) {
      const seq = position++;
      if (wanted.has(frontier.size)) rootsAtSize.set(frontier.size, toB64u(frontier.root()));
      if (underAudit?.size === seq) compareSnapshot(seq, toB64u(frontier.root()), prev);
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
          logOrigin ??= cp.payload.origin;
          const bad = checkSignature(cp);
          if (bad !== undefined) report(seq, "CHECKPOINT_SIGNATURE", bad);
          const root = rootBefore;
          if (cp.payload.size !== seq || cp.payload.root !== root) {
            report(seq, "CHECKPOINT_ROOT", `checkpoint signs size ${cp.payload.size}, root ${cp.payload.root}; log has ${seq}, ${root}`);
          } else if (bad === undefined) {
            verified.push({ seq, size: seq, root });
          }
          break;
        }
        case "trust":
          if (pinnedAuthorities !== undefined && rec.change.op === "authority.add" && !pinnedAuthorities.has(rec.change.keyId)) {
            report(seq, "UNTRUSTED_AUTHORITY", `authority ${rec.change.keyId} is not in the trust roots`);
          }
          if (rec.change.op === "policy.activate") {
            const why = policyActivationProblem(rec.change, state);
            if (why !== undefined) report(seq, "POLICY_UNVERIFIED", why);
          }
          break;
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
          // The task id the fold keys the decision by must be the one its request signs: else an
          // allow filed under another id would let the request's own task id run again.
          const named = (rec.input as { request?: { payload?: { taskId?: unknown } } } | null)?.request?.payload?.taskId;
          if (typeof named === "string" && named !== rec.taskId && (rec.decision.verdict === "allow" || TASK_ID_RE.test(named))) {
            report(seq, "TASK_ID_MISMATCH", `decision recorded for task ${JSON.stringify(rec.taskId)}; its request names ${JSON.stringify(named)}`);
          }
          for (const p of checkDecisionClaims(rec.input, state)) report(seq, p.kind, p.detail);
          if (rec.decision.verdict === "allow") {
            for (const p of evidence.checkAllow(rec.taskId, rec.input)) report(seq, p.kind, p.detail);
            const p = secondAllowProblem(rec.taskId, rec.input, state);
            if (p !== undefined) report(seq, p.kind, p.detail);
          }
          evidence.forget(rec.taskId);
          const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
          if (refersToLogTrust(rec.input)) {
            // The recorded input refers to the log's trust: recompute on the fold's snapshot here.
            chunkTrust[state.trustVersion] ??= trustView.of(state);
            chunk.push({ seq, record: text, trustVersion: state.trustVersion });
          } else {
            chunk.push({ seq, record: text });
          }
          if (chunk.length >= chunkSize) flush();
          break;
        }
        case "outcome":
          break;
        default:
          rec satisfies never;
      }
      applyRecord(state, rec);
    }
    if (chunk.length > 0) flush();
    for (const mismatches of await Promise.all(pendingRuns)) {
      for (const m of mismatches) report(m.seq, "DECISION_MISMATCH", `decide(recorded input) gives ${m.recomputed}`);
    }
  } finally {
    await runner.close();
  }

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
    const bad = checkSignature(cp);
    if (bad !== undefined) {
      report(cp.payload.size, "CHECKPOINT_SIGNATURE", `external checkpoint: ${bad}`);
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

  divergences.sort((a, b) => a.seq - b.seq);
  const lastVerified = verified.reduce((m, v) => Math.max(m, v.size), 0);
  return {
    ok: divergences.length === 0,
    recordsChecked: size,
    decisionsRederived: decisions,
    checkpointsVerified: verified.length,
    size,
    root: toB64u(frontier.root()),
    uncheckpointedTail: Math.max(0, lastWitnessable + 1 - lastVerified),
    ...(snapshotResult !== undefined ? { snapshot: snapshotResult } : {}),
    divergences,
  };
}
