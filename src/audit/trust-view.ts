// The trust snapshot a decision is made on, and how a decision record refers to it.
//
// `decide` needs the whole trust snapshot: authorities, gateways, every revocation in force and
// the active policy document. All of it is already in the log (trust and revocation records),
// and the gateway decides on exactly the fold of the records before the decision (ledger.ts).
// So a decision record does not copy the snapshot: its input says `trust: {"source":"log"}`,
// meaning "the fold of this log before my position". Copying it made every decision record
// grow with the revocation list and carry the policy text, which dominated append, replay and
// storage cost. The auditor rebuilds the snapshot from its own fold (replay.ts); a forged
// decision whose verdict the log's state does not support is a DECISION_MISMATCH.
//
// Older records that carry a full snapshot stay valid: replay compares that snapshot with the
// fold (TRUST_STATE on any difference), as it always did (test/fixtures/audit/scenario-v1).
import type { JsonValue } from "../canonical/jcs.ts";
import type { DecisionInput, TrustSnapshot } from "../core/types.ts";
import { isPolicyDocument } from "../policy/policy-document.ts";
import type { AuditState } from "./fold.ts";

/** The recorded form of a decision's trust snapshot: "the log's own state before this record". */
export const TRUST_FROM_LOG: { readonly source: "log" } = Object.freeze({ source: "log" });

export function isTrustFromLog(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const keys = Object.keys(v);
  return keys.length === 1 && keys[0] === "source" && (v as { source?: unknown }).source === "log";
}

/** The snapshot `decide` sees for a folded state: sorted lists, a policy only if it is a document. */
export function trustSnapshotOf(s: Readonly<AuditState>): TrustSnapshot {
  const doc: JsonValue | undefined = s.policy?.document;
  return {
    authorities: [...s.authorities].sort(),
    gateways: [...s.gateways].sort(),
    revokedArtifacts: [...s.revokedArtifacts].sort(),
    revokedKeys: [...s.revokedKeys].sort(),
    policy: s.policy !== undefined && isPolicyDocument(doc) ? { digest: s.policy.digest, document: doc } : null,
  };
}

/**
 * trustSnapshotOf, rebuilt only when a trust or revocation record changed the state. Snapshots
 * are shared between decisions and frozen: `decide` is pure and must not (cannot) edit them.
 */
export class TrustViewCache {
  #version = -1;
  #snapshot: TrustSnapshot | undefined;

  of(s: Readonly<AuditState>): TrustSnapshot {
    if (this.#snapshot === undefined || s.trustVersion !== this.#version) {
      this.#snapshot = deepFreeze(trustSnapshotOf(s));
      this.#version = s.trustVersion;
    }
    return this.#snapshot;
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

/** The input `decide` ran on, from a recorded input and the fold's snapshot at its position. */
export function rehydrateDecisionInput(recorded: JsonValue, snapshot: TrustSnapshot): JsonValue {
  return refersToLogTrust(recorded) ? { ...recorded, trust: snapshot as unknown as JsonValue } : recorded;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
