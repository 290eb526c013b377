// What a task's submitter learns: published on failclosed.outcome.<taskId> and returned by
// spawn(). The decision itself goes on failclosed.decision.<taskId> with all its checks.
import { canonicalMembers, canonicalize, mergeCanonicalMembers, utf8Bytes, type JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { PUBLIC_KEY_LENGTH, signEd25519 } from "../crypto/ed25519.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload, signingInputFromCanonical, verifySigned } from "../crypto/signing.ts";
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
   * Set on a deny of a copy of a submission that some gateway claimed for (its task id, or its
   * nonce, is held under this very submission id): whatever the copy was denied for (REPLAYED,
   * or EXPIRED, ENVIRONMENT_MISMATCH, … for a copy redelivered to another gateway after the one
   * running it crashed), it is not a verdict on the submission, which may have run. The
   * original's outcome is published too, if its gateway lives to publish it.
   */
  duplicate?: true;
  /** With `duplicate`: the gateway saw the original finish, so its outcome was already published. */
  originalDone?: true;
  /**
   * Set on a deny when the gateway could not read whether a copy of this submission holds the
   * task's claims (the claims bucket did not answer): the deny may be a copy's, so a client does
   * not take it as final before the decision deadline, and then reads the task id's claim itself
   * (runtime/client.ts awaitOutcome): spawn() returns such a deny only once it found no claim for
   * this submission then, or another submission's.
   */
  claimsUnread?: true;
  /**
   * Set on a "failed" outcome whose handler was cut off by its timeout: it was told to stop
   * (ctx.signal) but may still be running, and what it does may still take effect. If it ends
   * while its gateway runs, a `late` outcome follows on the same subject. Not set when the failed
   * outcome could not be recorded (no late one can follow it); the error still says it may run.
   */
  timedOut?: true;
  /**
   * How a handler cut off by its timeout ended after all ("succeeded", with its result, or
   * "failed"), recorded in the audit log after its failed outcome (an outcome record with
   * `late`). Never the answer to a submission: Runtime.spawn() hands it out as `late`.
   */
  late?: true;
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
 * The signed outcome as canonical JSON text, the object read once: its members are encoded one
 * time, the signature is over exactly those bytes and the message is those same members plus
 * `sig`, so nothing read twice (a getter, a toJSON, an object changed meanwhile) can make the
 * sent JSON differ from the signed. Throws CanonicalError when `o` is not I-JSON.
 */
function signedOutcomeText(o: TaskOutcome, key: KeyPair): string {
  const { sig: _drop, ...rest } = o;
  const members = canonicalMembers({ ...rest, signer: key.keyId });
  const payloadText = mergeCanonicalMembers(members, []);
  const sig = toB64u(signEd25519(key.seed, signingInputFromCanonical("outcome", utf8Bytes(payloadText))));
  return mergeCanonicalMembers(members, [["sig", `"sig":${canonicalize(sig)}`]]);
}

/** An outcome encoded for the bus (encodeOutcome). */
export interface EncodedOutcome {
  /** The message: the signed outcome in canonical form. */
  text: string;
  /** Set when `o` had a result that was left out of `text`: why (also in the sent `detail`). */
  resultDropped?: string;
}

/**
 * The bytes a gateway publishes for an outcome: the signed outcome in canonical form, so the
 * client parses exactly the values that were signed, and only if it is at most `maxBytes` (the
 * bus's limit: MAX_OUTCOME_BYTES, or less when the server's max_payload is smaller) and the
 * client's own parser (size, depth, forbidden keys) reads it back. A `result` that fails either
 * way is left out and `detail` says why; its status and resultDigest stay, as the audit log
 * records them. If even that cannot be signed, a minimal outcome; undefined if not even that
 * (the client then waits for its deadline). Never throws.
 */
export function encodeOutcome(o: TaskOutcome, key: KeyPair, maxBytes: number = MAX_OUTCOME_BYTES): EncodedOutcome | undefined {
  const limit = Math.min(maxBytes, MAX_OUTCOME_BYTES);
  let tooLarge: number | undefined;
  const attempt = (x: TaskOutcome): string | undefined => {
    try {
      const text = signedOutcomeText(x, key);
      const size = Buffer.byteLength(text, "utf8");
      if (size > limit) {
        tooLarge ??= size;
        return undefined;
      }
      return tryParseStrict(text, { maxBytes: limit }).ok ? text : undefined;
    } catch {
      return undefined;
    }
  };
  const whole = attempt(o);
  if (whole !== undefined) return { text: whole };
  const { result: _dropped, ...rest } = o;
  const why =
    tooLarge !== undefined
      ? `the result could not be delivered: the outcome would be ${tooLarge} bytes, over the ${limit} bytes the bus takes (see the audit log's resultDigest)`
      : "the result could not be delivered: it is not I-JSON a client can read (see the audit log's resultDigest)";
  const withoutResult = attempt({ ...rest, detail: o.detail !== undefined ? `${o.detail}; ${why}` : why });
  const dropped = o.result !== undefined ? { resultDropped: why } : {};
  if (withoutResult !== undefined) return { text: withoutResult, ...dropped };
  const minimal: TaskOutcome = {
    taskId: o.taskId,
    gatewayId: o.gatewayId,
    verdict: o.verdict,
    codes: o.codes,
    status: o.status,
    ...(o.submissionId !== undefined ? { submissionId: o.submissionId } : {}),
    ...(o.decisionSeq !== undefined ? { decisionSeq: o.decisionSeq } : {}),
    ...(o.duplicate !== undefined ? { duplicate: o.duplicate } : {}),
    ...(o.originalDone !== undefined ? { originalDone: o.originalDone } : {}),
    ...(o.claimsUnread !== undefined ? { claimsUnread: o.claimsUnread } : {}),
    // Policy: what the outcome is (an answer cut off by its timeout, or no answer at all but how
    // such a handler ended) survives as long as anything is sent: a late outcome without `late`
    // reads as an answer to its submission (found by review).
    ...(o.timedOut !== undefined ? { timedOut: o.timedOut } : {}),
    ...(o.late !== undefined ? { late: o.late } : {}),
    ...(o.resultDigest !== undefined ? { resultDigest: o.resultDigest } : {}),
    detail: "the outcome could not be delivered whole: see the audit log",
  };
  const text = attempt(minimal);
  return text !== undefined ? { text, ...dropped } : undefined;
}

/** encodeOutcome's text, at most MAX_OUTCOME_BYTES. */
export function outcomeMessage(o: TaskOutcome, key: KeyPair): string | undefined {
  return encodeOutcome(o, key)?.text;
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
