// What a task's submitter learns: published on failclosed.outcome.<taskId> and returned by
// spawn(). The decision itself goes on failclosed.decision.<taskId> with all its checks.
import { canonicalize, type JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { PUBLIC_KEY_LENGTH } from "../crypto/ed25519.ts";
import { fromB64u } from "../crypto/base64url.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload, verifySigned } from "../crypto/signing.ts";
import type { Check, DenialCode } from "../core/types.ts";

export interface TaskOutcome {
  taskId: string;
  /** The gateway that decided, or "client" when no gateway answered in time. */
  gatewayId: string;
  verdict: "allow" | "deny";
  /** Denial codes; empty on allow. */
  codes: DenialCode[];
  /**
   * "denied": it did not run and will not. "unknown" (only ever said by a client, never by a
   * gateway): no answer came and none can be inferred; it may have run. Treat it as not done,
   * and do not re-authorize the same action before the audit log says what happened.
   */
  status: "succeeded" | "failed" | "denied" | "unknown";
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
  /**
   * The deciding gateway's keyId and its signature over every other field (domain tag
   * failclosed/outcome/v1, JCS of the outcome without `sig`). Absent on a client-side deny.
   * A client that knows the gateways' keys (Runtime ConnectOptions.gatewayKeys) takes only
   * outcomes signed by one of them.
   */
  signer?: string;
  sig?: string;
}

/** The outcome as published: signed by the gateway key over all its other fields. */
export function signOutcome(o: TaskOutcome, key: KeyPair): TaskOutcome {
  const { sig: _drop, ...rest } = o;
  const signed = signPayload("outcome", { ...rest, signer: key.keyId }, key);
  return { ...signed.payload, sig: signed.sig };
}

/** How large an outcome message a client reads (runtime/client.ts awaitOutcome). */
export const MAX_OUTCOME_BYTES = 4 * 1024 * 1024;

/**
 * The bytes a gateway publishes for an outcome: the signed outcome in canonical form, so the
 * client parses exactly the values that were signed (no toJSON or getter can make the sent
 * JSON differ), and only if the client's own parser (size, depth, forbidden keys) reads it
 * back. A `result` that fails either way is left out and `detail` says so; its status and
 * resultDigest stay, as the audit log records them. If even that cannot be signed, a minimal
 * outcome; undefined if not even that (the client then reports a deny at its timeout). Never
 * throws.
 */
export function outcomeMessage(o: TaskOutcome, key: KeyPair): string | undefined {
  const attempt = (x: TaskOutcome): string | undefined => {
    try {
      const text = canonicalize(signOutcome(x, key));
      return tryParseStrict(text, { maxBytes: MAX_OUTCOME_BYTES }).ok ? text : undefined;
    } catch {
      return undefined;
    }
  };
  const whole = attempt(o);
  if (whole !== undefined) return whole;
  const { result: _dropped, ...rest } = o;
  const withoutResult = attempt({ ...rest, detail: "the result could not be delivered: it is not I-JSON a client can read (see the audit log's resultDigest)" });
  if (withoutResult !== undefined) return withoutResult;
  const minimal: TaskOutcome = {
    taskId: o.taskId,
    gatewayId: o.gatewayId,
    verdict: o.verdict,
    codes: o.codes,
    status: o.status,
    ...(o.submissionId !== undefined ? { submissionId: o.submissionId } : {}),
    ...(o.decisionSeq !== undefined ? { decisionSeq: o.decisionSeq } : {}),
    detail: "the outcome could not be delivered whole: see the audit log",
  };
  return attempt(minimal);
}

/** True when `o` carries a valid signature by one of `trusted` (gateway keyIds). Never throws. */
export function outcomeSignedBy(o: TaskOutcome, trusted: ReadonlySet<string>): boolean {
  try {
    const { sig, ...payload } = o;
    if (typeof sig !== "string" || typeof payload.signer !== "string" || !trusted.has(payload.signer)) return false;
    const pub = fromB64u(payload.signer, PUBLIC_KEY_LENGTH);
    return pub !== undefined && verifySigned("outcome", { payload, sig }, pub);
  } catch {
    return false;
  }
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
