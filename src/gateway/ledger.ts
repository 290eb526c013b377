// The gateway's write-ahead view of its audit log. The store folds a record only once its
// batch is durable, but a decision must be made against the state *at its own position in
// the log*, or replay would see it ignore a revocation that precedes it. So every append
// goes through here: the entry is folded into a projected state in the same tick as it is
// queued, and decisions snapshot that projection in the same tick as they queue themselves.
// The store preserves call order, so projection and log agree record for record.
import { applyRecord, taskDecided, type AuditState } from "../audit/fold.ts";
import { entryShapeProblem, prepareEntry, recordOf, type AuditEntry, type PreparedEntry } from "../audit/records.ts";
import { AuditStoreError, type AppendReceipt, type AuditStore } from "../audit/store.ts";
import { TrustViewCache } from "../audit/trust-view.ts";
import type { TrustSnapshot } from "../core/types.ts";

export class Ledger {
  readonly #store: AuditStore;
  readonly #projected: AuditState;
  /** Set once any append failed: the gateway reports "audit not writable" from then on. */
  #failure: unknown = undefined;
  readonly #trustView = new TrustViewCache();

  constructor(store: AuditStore) {
    this.#store = store;
    // The store's fold as of open, taken over: from here on only this projection folds.
    this.#projected = store.handOffState();
  }

  get store(): AuditStore {
    return this.#store;
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
    applyRecord(this.#projected, recordOf(prepared.entry, this.#projected.size, "", 0));
    const p = this.#store.appendPrepared(prepared);
    p.catch((e: unknown) => {
      // Only a failed or refused write means the log can no longer be trusted to keep up.
      if (e instanceof AuditStoreError && e.code !== "AUDIT_INVALID_ENTRY") this.#failure ??= e;
    });
    return p;
  }

  /** The trust snapshot at the current end of the projected log (shared and frozen; see trust-view.ts). */
  trustSnapshot(): TrustSnapshot {
    return this.#trustView.of(this.#projected);
  }

  nonceConsumed(key: string): boolean {
    return this.#projected.consumedNonces.has(key);
  }

  /** An allow for this task id is already in the (projected) log. */
  taskDecided(taskId: string): boolean {
    return taskDecided(this.#projected, taskId);
  }
}
