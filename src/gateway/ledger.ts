// The gateway's write-ahead view of its audit log. The store folds a record only once its
// batch is durable, but a decision must be made against the state *at its own position in
// the log*, or replay would see it ignore a revocation that precedes it. So every append
// goes through here: the entry is folded into a projected state in the same tick as it is
// queued, and decisions snapshot that projection in the same tick as they queue themselves.
// The store preserves call order, so projection and log agree record for record.
import { applyRecord, hadAllow, taskDecided, type AuditState } from "../audit/fold.ts";
import { captureState } from "../audit/fold-snapshot.ts";
import { entryShapeProblem, prepareEntry, recordOf, type AuditEntry, type AuditRecord, type PreparedEntry } from "../audit/records.ts";
import { AuditStoreError, type AppendReceipt, type AuditStore, type SnapshotInfo } from "../audit/store.ts";
import { liveTrustView } from "../audit/trust-view.ts";
import type { TrustView } from "../core/types.ts";

/** How many records past a task's remembered decisionSeq findDecision reads for its decision. */
const FIND_DECISION_SCAN = 4_096;

export class Ledger {
  readonly #store: AuditStore;
  readonly #projected: AuditState;
  /**
   * Set once the store refused or failed any entry this projection had already folded: from
   * then on the projection is not the log's fold (it must never be saved as one, nor decided
   * on), so the gateway reports "audit not writable" and denies every task.
   */
  #failure: unknown = undefined;
  // Answers from #projected as it is when asked: the fold of everything queued so far.
  readonly #trustView: TrustView = liveTrustView(() => this.#projected);
  readonly #snapshotEvery: number;
  readonly #onSnapshotError: (e: unknown) => void;
  readonly #onFailure: (e: unknown) => void;
  /** Entry count at the last snapshot queued. */
  #snapshotAt: number;
  /** Snapshots queued and not yet written. */
  #snapshotting = 0;
  /** The last snapshot queued, settled (whatever its result) once it is written or refused. */
  #lastSnapshot: Promise<unknown> = Promise.resolve();

  /**
   * `snapshotEvery`: queue a fold snapshot (store.ts queueSnapshot) every this many entries
   * (0 = only when asked). Capturing the state stops this thread for time in proportion to it
   * (about 0.1 s for a full window of a million entries on the reference machine); encoding and
   * writing it then run in slices beside the gateway's work. A periodic snapshot is not queued
   * while the previous one is still being written, so under load a crash restart may fold up
   * to `snapshotEvery` entries plus those appended during one snapshot's write.
   */
  /** `onFailure`: told once, with the error, when the ledger turns unwritable for good (below). */
  constructor(store: AuditStore, opts: { snapshotEvery?: number; onSnapshotError?: (e: unknown) => void; onFailure?: (e: unknown) => void } = {}) {
    this.#store = store;
    // The store's fold as of open, taken over: from here on only this projection folds.
    this.#projected = store.handOffState();
    this.#snapshotEvery = opts.snapshotEvery ?? 0;
    this.#onSnapshotError = opts.onSnapshotError ?? (() => undefined);
    this.#onFailure = opts.onFailure ?? (() => undefined);
    this.#snapshotAt = this.#projected.entries;
  }

  get store(): AuditStore {
    return this.#store;
  }

  /**
   * The decision record the fold names for `taskId` (its allow, or its first deny), read from the
   * log; undefined when there is none or it cannot be read. The fold's decisionSeq is the log's
   * position once the decision's write returned (appendPrepared), but one captured in a fold
   * snapshot before that, and restored from it, is the projection's: behind the log by the
   * checkpoints written earlier in that run. So the record there, and failing that the next
   * FIND_DECISION_SCAN records, are read for this task's own decision; a record of another task
   * is never taken for it.
   */
  async findDecision(taskId: string): Promise<(AuditRecord & { type: "decision" }) | undefined> {
    const t = this.#projected.tasks.get(taskId);
    const seq = t?.decisionSeq;
    if (t === undefined || seq === undefined) return undefined;
    // The fold names the task's allow once it has one (a deny of a copy may sit between).
    const wantAllow = hadAllow(t);
    const end = Math.min(seq + FIND_DECISION_SCAN, this.#store.size);
    for (let at = seq; at < end; at++) {
      const rec = await this.#store.getRecord(at).catch(() => undefined);
      if (rec === undefined) return undefined;
      if (rec.type === "decision" && rec.taskId === taskId && (!wantAllow || rec.decision.verdict === "allow")) return rec;
    }
    return undefined;
  }

  /** Why the ledger turned unwritable for good (the first entry the store refused or failed), if it did. */
  get failure(): unknown {
    return this.#failure;
  }

  get writable(): boolean {
    return this.#failure === undefined && this.#store.writable;
  }

  get state(): Readonly<AuditState> {
    return this.#projected;
  }

  /** Queue an entry; its effect on trust and nonce state is visible at once to later decisions. */
  append(entry: AuditEntry): Promise<AppendReceipt> {
    let prepared: PreparedEntry;
    try {
      prepared = this.prepare(entry);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new TypeError(String(e)));
    }
    return this.appendPrepared(prepared);
  }

  /**
   * Check and encode an entry without queueing it: throws (TypeError for a bad shape,
   * CanonicalError for anything not I-JSON), so a caller can still choose what to record. The
   * encoding is the one the store writes; the entry must not change after this.
   */
  prepare(entry: AuditEntry): PreparedEntry {
    // Refuse a bad entry before projecting it, or projection and log would part ways.
    const problem = entryShapeProblem(entry);
    if (problem !== undefined) throw new TypeError(`ledger: bad ${problem}`);
    return prepareEntry(entry);
  }

  /** Queue a prepared entry (see append). */
  appendPrepared(prepared: PreparedEntry): Promise<AppendReceipt> {
    const projectedSeq = this.#projected.size;
    const e = prepared.entry;
    // Whether this entry sets its task's decisionSeq, as the fold decides it (fold.ts: a deny
    // after an allow does not); asked before folding, since the numbers alone are ambiguous.
    const had = e.type === "decision" ? this.#projected.tasks.get(e.taskId) : undefined;
    const setsDecisionSeq = e.type === "decision" && !(e.decision.verdict === "deny" && had !== undefined && hadAllow(had));
    applyRecord(this.#projected, recordOf(prepared.entry, projectedSeq, "", 0));
    const p = this.#store.appendPrepared(prepared);
    // The projection numbers entries only (the store's checkpoints are not folded into it), so
    // its seqs fall behind the log's once a checkpoint is written. A task's decisionSeq is read
    // as a log position (gateway.ts #allowedSubmission): take the log's from the receipt. Only a
    // decision that set it (a deny after an allow does not: fold.ts), on that task's own entry:
    // compared later, an allow already moved to its log seq could equal a later entry's
    // projected one (found by review).
    const t = setsDecisionSeq ? this.#projected.tasks.get(e.taskId) : undefined;
    if (t !== undefined && t.decisionSeq === projectedSeq) {
      p.then(
        (r) => {
          if (t.decisionSeq === projectedSeq) t.decisionSeq = r.seq;
        },
        () => undefined,
      );
    }
    // Policy: whatever the reason (a failed write, AUDIT_INVALID_ENTRY from an entry prepare()
    // accepted, AUDIT_CLOSED), the entry is folded here and not in the log, and a fold cannot be
    // undone: every later decision would be made against a state the log does not give, so the
    // ledger turns unwritable for good. (A snapshot queued in the same tick, before this
    // arrives, the store refuses itself: AUDIT_SNAPSHOT_DIVERGED.)
    p.catch((e: unknown) => {
      if (this.#failure !== undefined) return;
      this.#failure = e ?? new Error("audit append rejected");
      // Told once, at the first refusal: from here on every decision is a deny, and the owner
      // must be able to say why (a hook that throws changes nothing: the ledger is unwritable).
      try {
        this.#onFailure(this.#failure);
      } catch {
        // the ledger is unwritable either way
      }
    });
    if (this.#snapshotEvery > 0 && this.#snapshotting === 0 && this.#projected.entries - this.#snapshotAt >= this.#snapshotEvery && this.writable) {
      this.snapshot().catch(this.#onSnapshotError);
    }
    return p;
  }

  /**
   * Snapshot the projection as it stands now: it is the fold of everything queued so far, and
   * the store writes it once that is durable, so the next open folds only what follows.
   */
  async snapshot(): Promise<SnapshotInfo> {
    this.#snapshotAt = this.#projected.entries;
    if (!this.writable) throw new AuditStoreError("AUDIT_UNWRITABLE", "no snapshot: the log failed or refused an entry this projection had folded, or is closing", { cause: this.#failure });
    this.#snapshotting++;
    try {
      const written = this.#store.queueSnapshot(captureState(this.#projected));
      this.#lastSnapshot = written.catch(() => undefined);
      return await written;
    } finally {
      this.#snapshotting--;
    }
  }

  /** Resolves once the last snapshot queued is written or refused (never rejects). */
  snapshotSettled(): Promise<void> {
    return this.#lastSnapshot.then(() => undefined);
  }

  /**
   * The trust state at the current end of the projected log, as decide reads it (trust-view.ts):
   * answers for the fold as it is when asked, so decide on it synchronously, before queueing.
   */
  trustView(): TrustView {
    return this.#trustView;
  }

  nonceConsumed(key: string): boolean {
    return this.#projected.consumedNonces.has(key);
  }

  /** An allow for this task id is already in the (projected) log. */
  taskDecided(taskId: string): boolean {
    return taskDecided(this.#projected, taskId);
  }
}
