// What a task's submitter learns: published on failclosed.outcome.<taskId> and returned by
// spawn(). The decision itself goes on failclosed.decision.<taskId> with all its checks.
import type { JsonValue } from "../canonical/jcs.ts";
import type { Check, DenialCode } from "../core/types.ts";

export interface TaskOutcome {
  taskId: string;
  /** The gateway that decided, or "client" when no gateway answered in time. */
  gatewayId: string;
  verdict: "allow" | "deny";
  /** Denial codes; empty on allow. */
  codes: DenialCode[];
  status: "succeeded" | "failed" | "denied";
  detail?: string;
  /** Seq of the decision record in the gateway's audit log. */
  decisionSeq?: number;
  /** The submission this outcome answers (contract.ts submissionIdOf); absent if it did not parse. */
  submissionId?: string;
  /**
   * Set on a REPLAYED deny whose task id is held by an identical submission (same submission
   * id): a copy of a submission, not a verdict on it. The original's outcome is published too.
   */
  duplicate?: true;
  /** With `duplicate`: the gateway saw the original finish, so its outcome was already published. */
  originalDone?: true;
  resultDigest?: string;
  result?: JsonValue;
  error?: string;
  checks?: Check[];
}

export interface DecisionMessage {
  taskId: string;
  gatewayId: string;
  verdict: "allow" | "deny";
  reasons: DenialCode[];
  checks: Check[];
  decisionSeq?: number;
  submissionId?: string;
}
