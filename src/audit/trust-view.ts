// The trust state a decision is made on, and how a decision record refers to it.
//
// `decide` judges on the trust state: authorities, gateways, every revocation in force and the
// active policy document. All of it is already in the log (trust and revocation records), and
// the gateway decides on exactly the fold of the records before the decision (ledger.ts). So a
// decision record does not copy it: its input says `trust: {"source":"log"}`, meaning "the fold
// of this log before my position". Copying it made every decision record grow with the
// revocation list and carry the policy text, which dominated append, replay and storage cost.
// The auditor judges on its own fold at that position (replay.ts); a forged decision whose
// verdict the log's state does not support is a DECISION_MISMATCH.
//
// Older records that carry a full snapshot stay valid: replay compares that snapshot with the
// fold (TRUST_STATE on any difference), as it always did (test/fixtures/audit/scenario-v1), and
// decide judges on the snapshot.
import type { JsonValue } from "../canonical/jcs.ts";
import type { DecisionInput, TrustFromLog, TrustSnapshot, TrustView } from "../core/types.ts";
import { isTrustFromLog } from "../core/decide.ts";
import { isPolicyDocument } from "../policy/policy-document.ts";
import type { AuditState } from "./fold.ts";
import type { AuditRecord } from "./records.ts";

/** The recorded form of a decision's trust snapshot: "the log's own state before this record". */
export const TRUST_FROM_LOG: TrustFromLog = Object.freeze({ source: "log" });

export { isTrustFromLog } from "../core/decide.ts";

/** The snapshot `decide` sees for a folded state: sorted lists, a policy only if it is a document. */
export function trustSnapshotOf(s: Readonly<AuditState>): TrustSnapshot {
  return {
    authorities: [...s.authorities].sort(),
    gateways: [...s.gateways].sort(),
    revokedArtifacts: [...s.revokedArtifacts].sort(),
    revokedKeys: [...s.revokedKeys].sort(),
    policy: policyOf(s.policy),
  };
}

// How `decide` reads the trust state (core/types TrustView) without a snapshot per decision.
//
// A snapshot holds every revocation in force, so building one per trust version (sorted,
// frozen, and for replay's workers cloned across threads) cost O(revocations) each time a
// revocation landed: a log where revocations and decisions interleave took quadratic time to
// decide on the gateway and to replay (32,000 pairs: 35 s; found by review). A decision asks
// four membership questions about a handful of ids and reads the policy, so:
// - the gateway answers them from its live fold (liveTrustView): it decides synchronously on
//   the fold of everything queued before the decision's record (ledger.ts), the very state
//   replay judges it on;
// - replay answers them from a TrustHistory: every membership change stamped with the trust
//   version it made, so one growing index answers "at version v" for any v already seen, and a
//   worker is brought up to date by the changes since it was last sent, not by a copy.

type Member = 0 | 1 | 2 | 3;
const AUTHORITY: Member = 0;
const GATEWAY: Member = 1;
const REVOKED_ARTIFACT: Member = 2;
const REVOKED_KEY: Member = 3;

/** The policy `decide` sees for a folded state: only one that is a policy document. */
function policyOf(p: AuditState["policy"]): TrustSnapshot["policy"] {
  return p !== undefined && isPolicyDocument(p.document) ? { digest: p.digest, document: p.document } : null;
}

/**
 * A view of the state `state()` returns, as it is when asked: the gateway's projected fold.
 * The caller must decide synchronously on it (nothing may be folded between its questions).
 */
export function liveTrustView(state: () => Readonly<AuditState>): TrustView {
  let seen: AuditState["policy"] | null = null;
  let policy: TrustSnapshot["policy"] = null;
  return {
    get policy() {
      const p = state().policy;
      if (p !== seen) {
        seen = p;
        policy = policyOf(p);
      }
      return policy;
    },
    isAuthority: (k) => state().authorities.has(k),
    isGateway: (k) => state().gateways.has(k),
    isRevokedArtifact: (id) => state().revokedArtifacts.has(id),
    isRevokedKey: (k) => state().revokedKeys.has(k),
  };
}

/** One change to the trust state, at the trust version (AuditState.trustVersion) that made it. */
export type TrustDelta =
  | { readonly v: number; readonly member: Member; readonly id: string }
  | { readonly v: number; readonly policy: TrustSnapshot["policy"] };

const isVersion = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Index of the first element of the ascending `xs` greater than `v` (= how many are ≤ v). */
function countAtMost(xs: readonly number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class TrustHistoryError extends Error {
  override readonly name = "TrustHistoryError";
}

/**
 * The trust state at every version, from the changes in order. Built by replay as it folds
 * (note), or as a worker's replica from the changes it is sent (apply). Lookups at version v see
 * exactly the changes stamped ≤ v, so a replica that runs ahead answers every earlier version
 * the same: what matters is that it holds every change up to the versions it is asked about.
 */
export class TrustHistory {
  // Per member kind: id → the versions at which its membership flipped, ascending (odd count = in).
  readonly #flips: Map<string, number[]>[] = [0, 1, 2, 3].map(() => new Map<string, number[]>());
  readonly #policyAt: number[] = [];
  readonly #policies: TrustSnapshot["policy"][] = [];
  readonly #deltas: TrustDelta[] = [];
  #lastVersion = 0;
  #lastPolicy: AuditState["policy"] = undefined;

  /** Changes held: the replica protocol's position. */
  get length(): number {
    return this.#deltas.length;
  }

  /** The changes from position `from` on. */
  since(from: number): TrustDelta[] {
    return this.#deltas.slice(from);
  }

  /**
   * After applyRecord(state, rec) of a `trust` or `revocation` record: note what it changed.
   * Reads the fold's own answer for the one id the record names, so the history holds what the
   * fold holds (a second add of a member, a second revocation of a target, change nothing).
   */
  note(rec: AuditRecord, state: Readonly<AuditState>): void {
    const v = state.trustVersion;
    switch (rec.type) {
      case "trust": {
        const c = rec.change;
        switch (c.op) {
          case "authority.add":
          case "authority.remove":
            this.#track(AUTHORITY, c.keyId, state.authorities.has(c.keyId), v);
            break;
          case "gateway.add":
          case "gateway.remove":
            this.#track(GATEWAY, c.keyId, state.gateways.has(c.keyId), v);
            break;
          case "policy.activate":
          case "policy.withdraw":
            if (state.policy !== this.#lastPolicy) {
              this.#lastPolicy = state.policy;
              this.apply({ v, policy: policyOf(state.policy) });
            }
            break;
          default:
            c satisfies never;
        }
        break;
      }
      case "revocation": {
        const t = rec.revocation.payload.target;
        if (t.type === "artifact") this.#track(REVOKED_ARTIFACT, t.id, state.revokedArtifacts.has(t.id), v);
        else this.#track(REVOKED_KEY, t.keyId, state.revokedKeys.has(t.keyId), v);
        break;
      }
      default:
        break;
    }
  }

  #track(member: Member, id: string, inNow: boolean, v: number): void {
    if (this.#member(member, id, Number.MAX_SAFE_INTEGER) !== inNow) this.apply({ v, member, id });
  }

  /** Take one change, in order. Throws TrustHistoryError on a change out of shape or out of order. */
  apply(d: TrustDelta): void {
    if (typeof d !== "object" || d === null || !isVersion(d.v) || d.v < this.#lastVersion) throw new TrustHistoryError("trust change out of order or without a version");
    if ("policy" in d) {
      this.#policyAt.push(d.v);
      this.#policies.push(d.policy);
    } else {
      const m = d.member;
      if ((m !== 0 && m !== 1 && m !== 2 && m !== 3) || typeof d.id !== "string") throw new TrustHistoryError("trust change names no member");
      const map = this.#flips[m]!;
      const flips = map.get(d.id);
      if (flips === undefined) map.set(d.id, [d.v]);
      else flips.push(d.v);
    }
    this.#lastVersion = d.v;
    this.#deltas.push(d);
  }

  /** Forget everything (a replica sent the changes from position 0 again). */
  reset(): void {
    for (const m of this.#flips) m.clear();
    this.#policyAt.length = 0;
    this.#policies.length = 0;
    this.#deltas.length = 0;
    this.#lastVersion = 0;
    this.#lastPolicy = undefined;
  }

  #member(member: Member, id: string, v: number): boolean {
    const flips = this.#flips[member]!.get(id);
    return flips !== undefined && countAtMost(flips, v) % 2 === 1;
  }

  /** The trust state as it stood at version `v`. */
  at(v: number): TrustView {
    const i = countAtMost(this.#policyAt, v);
    const policy = i === 0 ? null : (this.#policies[i - 1] ?? null);
    return {
      policy,
      isAuthority: (k) => this.#member(AUTHORITY, k, v),
      isGateway: (k) => this.#member(GATEWAY, k, v),
      isRevokedArtifact: (id) => this.#member(REVOKED_ARTIFACT, id, v),
      isRevokedKey: (k) => this.#member(REVOKED_KEY, k, v),
    };
  }
}

/** True when a recorded decision input names the log's trust instead of carrying a snapshot. */
export function refersToLogTrust(recorded: unknown): recorded is Record<string, JsonValue> {
  return typeof recorded === "object" && recorded !== null && !Array.isArray(recorded) && isTrustFromLog((recorded as Record<string, unknown>)["trust"]);
}

/** What goes into the decision record: the input with its trust snapshot by reference. */
export function recordedDecisionInput(input: DecisionInput): JsonValue {
  return { ...(input as unknown as Record<string, JsonValue>), trust: TRUST_FROM_LOG };
}

/** A recorded input with the fold's snapshot at its position put in (tools and tests that edit one). */
export function rehydrateDecisionInput(recorded: JsonValue, snapshot: TrustSnapshot): JsonValue {
  return refersToLogTrust(recorded) ? { ...recorded, trust: snapshot as unknown as JsonValue } : recorded;
}
