// The gateway's write-ahead view of its audit log. The store folds a record only once its
// batch is durable, but a decision must be made against the state *at its own position in
// the log*, or replay would see it ignore a revocation that precedes it. So every append
// goes through here: the entry is folded into a projected state in the same tick as it is
// queued, and decisions snapshot that projection in the same tick as they queue themselves.
// The store preserves call order, so projection and log agree record for record.
import type { JsonValue } from "../canonical/jcs.ts";
import { applyRecord, cloneState, type AuditState } from "../audit/fold.ts";
import { canonicalize } from "../canonical/jcs.ts";
import { entryShapeProblem, type AuditEntry, type AuditRecord } from "../audit/records.ts";
import { AuditStoreError, type AppendReceipt, type AuditStore } from "../audit/store.ts";
import { isPolicyDocument } from "../policy/policy-document.ts";
import type { TrustSnapshot } from "../core/types.ts";

export class Ledger {
  readonly #store: AuditStore;
  readonly #projected: AuditState;
  /** Set once any append failed: the gateway reports "audit not writable" from then on. */
  #failure: unknown = undefined;

  constructor(store: AuditStore) {
    this.#store = store;
    this.#projected = cloneState(store.state);
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
    // Refuse a bad entry before projecting it, or projection and log would part ways.
    const problem = entryShapeProblem(entry);
    if (problem !== undefined) return Promise.reject(new TypeError(`ledger: bad ${problem}`));
    try {
      canonicalize(entry);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new TypeError(String(e)));
    }
    const pseudo = { ...entry, v: 1, seq: this.#projected.size, prev: "", time: 0 } as AuditRecord;
    applyRecord(this.#projected, pseudo);
    const p = this.#store.append(entry);
    p.catch((e: unknown) => {
      // Only a failed or refused write means the log can no longer be trusted to keep up.
      if (e instanceof AuditStoreError && e.code !== "AUDIT_INVALID_ENTRY") this.#failure ??= e;
    });
    return p;
  }

  trustSnapshot(): TrustSnapshot {
    const s = this.#projected;
    const doc: JsonValue | undefined = s.policy?.document;
    return {
      authorities: [...s.authorities].sort(),
      gateways: [...s.gateways].sort(),
      revokedArtifacts: [...s.revokedArtifacts].sort(),
      revokedKeys: [...s.revokedKeys].sort(),
      policy: s.policy !== undefined && isPolicyDocument(doc) ? { digest: s.policy.digest, document: doc } : null,
    };
  }

  nonceConsumed(key: string): boolean {
    return this.#projected.consumedNonces.has(key);
  }
}
