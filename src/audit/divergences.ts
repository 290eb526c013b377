// What replay finds, and how many of them it keeps. Every finding is a typed divergence with the
// seq where it shows; the codes are stable strings auditors and scripts match on.
//
// A log can hold as many findings as records, and the report must stay readable and bounded,
// but a cap on a first-come basis let cheap noise anywhere in the log push out the one finding
// that matters (an allow that decide() does not reproduce is only known once replay ends). So
// each kind keeps its own first few, every divergence at an allow decision (or an execution) is
// kept whatever the count, and the report says how many there were of each kind and how many
// were left out.

export type DivergenceKind =
  | "RECORD_MALFORMED" // bytes are not a canonical, well-formed record
  | "SEQ_MISMATCH" // a record missing, moved or swapped: its seq is not its position
  | "CHAIN_BROKEN" // prev is not the leaf hash of the record before
  | "LEAF_MISMATCH" // record bytes differ from the leaf hash the tree committed to
  | "TREE_NODE_MISMATCH" // a subtree hash stored beside a record differs from the one recomputed from the records
  | "HEAD_MISMATCH" // the store's commit point disagrees with the records (truncation, rewrite)
  | "TRUNCATED" // a trusted checkpoint covers more records than the log holds
  | "CHECKPOINT_SIGNATURE" // not signed by a trusted gateway key, or of another origin than the log's
  | "CHECKPOINT_ROOT" // signed root/size disagree with the log's tree
  | "CHECKPOINT_INCONSISTENT" // a consistency proof between successive checkpoints fails
  | "UNTRUSTED_AUTHORITY" // the log adds an authority the trust roots do not know
  | "UNTRUSTED_GATEWAY" // the log adds a gateway key (a spawn-lineage signer) the trust roots do not know
  | "REVOCATION_UNVERIFIED" // a revocation in force without a valid authority signature
  | "POLICY_UNVERIFIED" // a policy activated without a trusted authority's signature, or older than the one in force
  | "TRUST_STATE" // a decision's trust snapshot differs from the fold
  | "NONCE_STATE" // a decision's nonce state differs from the fold
  | "TASK_STATE" // a decision's task-claim state differs from the fold
  | "TASK_ID_MISMATCH" // a decision recorded under another task id than its signed request names
  | "EVIDENCE_MISSING" // an allow resting on evidence the log never recorded
  | "INPUT_MALFORMED" // a decision input without trust or nonce state
  | "DECISION_MISMATCH" // decide(recorded input) ≠ recorded decision
  | "OUTCOME_WITHOUT_ALLOW" // an execution's outcome for a task with no allow waiting for it (never decided, denied, or already finished)
  | "NONCE_REUSED" // an allow spending a nonce an earlier allow of this log spent (however long ago)
  | "TASK_REUSED" // an allow for a task id an earlier allow of this log ran (however long ago)
  | "GATEWAY_ID_MISMATCH" // a decision measured on another gateway id than the log's origin
  | "CLOCK_MISMATCH" // an allow whose clock reading is far from its own record's time
  | "CLOCK_BACKWARDS" // an allow on an expired artifact, or of a request past its deadline or age limit, by the time a checkpoint earlier in the log signed
  | "LIMITS_LOOSER" // an allow decided under looser limits than the trust roots pin
  | "SPAWN_UNVERIFIED" // a spawn attestation of this gateway that its own log does not bear out
  | "SNAPSHOT_INVALID" // the gateway's fold snapshot is unsigned by a trusted key, of another log, or damaged
  | "SNAPSHOT_STATE"; // the fold snapshot's state, root or chain link differ from replay's at its position

export interface Divergence {
  readonly seq: number;
  readonly kind: DivergenceKind;
  readonly detail: string;
}

/** How many divergences replay found, by kind, and how many the report leaves out. */
export interface DivergenceCounts {
  readonly total: number;
  /** Found but not listed in `divergences` (beyond the first KEPT_PER_KIND of a kind, and at no allow). */
  readonly omitted: number;
  readonly byKind: Partial<Record<DivergenceKind, number>>;
}

/** The first this many divergences of each kind are listed; the rest are counted. */
export const KEPT_PER_KIND = 1_000;

/**
 * Kinds listed whatever their number: each is a decision the log cannot justify or an execution
 * it does not authorize, and an attacker who can add findings of other kinds must not be able to
 * crowd them out. (Each is tied to a record of the log, so the list stays bounded by its size.)
 */
const ALWAYS_KEPT: ReadonlySet<DivergenceKind> = new Set(["DECISION_MISMATCH", "OUTCOME_WITHOUT_ALLOW"]);

export class DivergenceLog {
  readonly #kept: Divergence[] = [];
  readonly #byKind = new Map<DivergenceKind, number>();
  #total = 0;

  /** `atAllow`: found at an allow decision, so listed whatever the count of its kind. */
  report(seq: number, kind: DivergenceKind, detail: string, atAllow = false): void {
    const n = (this.#byKind.get(kind) ?? 0) + 1;
    this.#byKind.set(kind, n);
    this.#total++;
    if (n <= KEPT_PER_KIND || atAllow || ALWAYS_KEPT.has(kind)) this.#kept.push({ seq, kind, detail });
  }

  get total(): number {
    return this.#total;
  }

  /** The kept divergences in seq order (stable: in the order found within one seq). */
  list(): Divergence[] {
    return [...this.#kept].sort((a, b) => a.seq - b.seq);
  }

  counts(): DivergenceCounts {
    return { total: this.#total, omitted: this.#total - this.#kept.length, byKind: Object.fromEntries([...this.#byKind].sort(([a], [b]) => (a < b ? -1 : 1))) };
  }
}
