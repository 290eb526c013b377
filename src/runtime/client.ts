// The submitting side of the wire contract: publish a task's evidence, submit its request to
// the shared work queue, and wait for the outcome a gateway publishes. No gateway answer in
// time is a deny from the submitter's point of view (fail closed), never a pass.
import { jetstream, JetStreamApiError } from "@nats-io/jetstream";
import { PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import type { SignedArtifact, SignedLineage, SignedRequest } from "../core/types.ts";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, MAX_MESSAGE_BYTES, SUBJECTS, parseTaskClaim, submissionIdOf, taskClaimKey } from "../nats/contract.ts";
import { MAX_OUTCOME_BYTES, outcomeSignedBy, type TaskOutcome } from "../gateway/outcome.ts";
import { causeChain } from "../infra/error-causes.ts";
import { assertNever } from "../infra/assert-never.ts";

export interface Submission {
  request: SignedRequest;
  args: JsonValue;
  /** Artifacts to publish on the task's artifact subject (root first). */
  chain?: SignedArtifact[];
  /** Lineage events to publish on the task's lineage subject. */
  lineage?: SignedLineage[];
  timeoutMs?: number;
  /** AwaitOptions.gatewayKeys. */
  gatewayKeys?: ReadonlySet<string>;
  /** The clock skew gateways allow (their maxSkewMs); default 5 s. See awaitOutcome. */
  skewMs?: number;
  /** AwaitOptions.lateWaitMs (submitTaskTracked). */
  lateWaitMs?: number;
}

export function noAnswer(taskId: string, why: string): TaskOutcome {
  return { taskId, gatewayId: "client", verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "denied", detail: why };
}

/**
 * No answer, and no way to know from here whether a gateway allowed the task: fail closed (the
 * verdict is not an allow) without claiming that nothing ran.
 */
export function unknownOutcome(taskId: string, why: string): TaskOutcome {
  return { taskId, gatewayId: "client", verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "unknown", detail: why };
}

/** A duplicate's deny says nothing about the original that holds the task: "unknown", marked so. */
function duplicateOutcome(dup: TaskOutcome, why: string): TaskOutcome {
  return { ...unknownOutcome(dup.taskId, why), codes: ["REPLAYED"], duplicate: true, ...(dup.originalDone === true ? { originalDone: true as const } : {}), ...(dup.submissionId !== undefined ? { submissionId: dup.submissionId } : {}) };
}

/** How long a duplicate of a finished original waits for that original's own outcome. */
const ORIGINAL_DONE_GRACE_MS = 1_000;

/** Node's timers hold at most 2^31 − 1 ms; a longer delay fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface AwaitOptions {
  /**
   * The submission waited for (contract.ts submissionIdOf): outcomes that name another
   * submission for the task id (a malformed twin, another artifact's request) are ignored.
   * Without it, the first readable outcome for the task id is taken. Not authentication:
   * anyone who reads the submit subject can compute it, so NATS permissions must keep
   * `failclosed.outcome.>` to gateways.
   */
  submissionId?: string;
  /**
   * The gateways' keyIds: when given, only outcomes signed by one of them count (signOutcome);
   * an unsigned or forged one is ignored like an unreadable one. Without it an outcome is as
   * trustworthy as the NATS permissions on `failclosed.outcome.>`.
   */
  gatewayKeys?: ReadonlySet<string>;
  /**
   * The request's decision deadline, as milliseconds from now (its notAfter − the submitter's
   * clock), and the clock skew gateways are allowed (their limits' maxSkewMs; default 5 s).
   * With it, no answer is settled rather than guessed: see awaitOutcome.
   */
  deadline?: { readonly inMs: number; readonly skewMs?: number };
  /**
   * After an answer that says its handler was cut off by its timeout (`timedOut`), how long to go
   * on listening for how it ended (a `late` outcome, awaitOutcome's `late`). Default 0: not at all.
   */
  lateWaitMs?: number;
}

/** Whose claim holds the task id cluster-wide (the create-only KV key gateways make before an allow). */
async function taskClaimHolder(nc: NatsConnection, taskId: string, submissionId: string | undefined): Promise<"none" | "this" | "other" | "denied" | "unknown"> {
  try {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("timeout")), 2_000)));
    const entry = await Promise.race([new Kvm(nc).open(KV_BUCKETS.nonces).then((kv) => kv.get(taskClaimKey(taskId))), late]).finally(() => clearTimeout(timer));
    if (entry === null) return "none";
    // Policy: claims are never deleted (gateways create them for good). A delete or purge marker
    // means someone removed one: whose it was is not known, and it may have been this one's.
    if (entry.operation !== "PUT") return "unknown";
    // A claim whose owner cannot be compared with this submission says nothing either way.
    if (submissionId === undefined) return "unknown";
    const c = parseTaskClaim(entry.value);
    if (c === undefined) return "unknown";
    switch (c.kind) {
      // Spent by a deny (gateway.ts #spendTaskId): whichever submission it names, none ran.
      case "denied":
        return "denied";
      // Denies of the submissions it names: none of those ran. Any other may take it over, and
      // has not: none did.
      case "denied-copies":
        return c.submissionIds.includes(submissionId) ? "denied" : "none";
      case "held":
        return c.submissionId === submissionId ? "this" : c.submissionId !== undefined ? "other" : "unknown";
      default:
        return assertNever(c, "claim");
    }
  } catch {
    return "unknown";
  }
}

/**
 * Wait for a task's outcome message. Messages that do not parse, name another task, or answer
 * another submission are ignored, so none of them ends the wait early. A `duplicate` outcome (the
 * deny of a copy of this submission while a claim for it is held: a copy that lost the claims to
 * the original, or one redelivered to another gateway after the one running it crashed) ends it
 * only when the gateway saw the original finish; otherwise the original's own outcome is waited
 * for, and the duplicate is the answer at the timeout. A deny marked `claimsUnread` (its gateway
 * could not read the claims) is kept until the deadline, and stands only if the claim read then
 * is none or another submission's.
 *
 * No answer is never an allow, and is a "denied" only when that is known: with a `deadline`,
 * the wait runs until the deadline plus twice the allowed skew (after which no gateway's clock
 * can still allow it), then asks whose claim holds the task id. None, or another submission's:
 * denied, for good. This submission's (or a duplicate was seen, which says as much): a gateway
 * allowed it or was about to, so its outcome is waited for `timeoutMs` more, and then the status
 * is "unknown" (it may have run). Without a deadline, with one further off than `timeoutMs`,
 * when the claim cannot be read, or the bus is lost: "unknown". A duplicate whose original
 * already finished is "unknown" too, marked `duplicate`: that outcome came and went.
 *
 * This assumes the gateways' clocks are within the skew of the submitter's: a gateway whose
 * clock lags further could still allow a request the submitter was told is denied.
 */
export function awaitOutcome(
  nc: NatsConnection,
  taskId: string,
  timeoutMs: number,
  o: AwaitOptions = {},
): { ready: Promise<void>; outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined>; cancel: () => void } {
  let answer: (out: TaskOutcome) => void = () => undefined;
  const answered = new Promise<TaskOutcome>((r) => (answer = r));
  // How a timed-out handler ended: a signed `late` outcome of this submission. Kept if it comes
  // first (the gateway records and publishes it on its own), taken once the answer says timedOut.
  let settleLate: (out: TaskOutcome | undefined) => void = () => undefined;
  const late = new Promise<TaskOutcome | undefined>((r) => (settleLate = r));
  let lateSeen: TaskOutcome | undefined;
  let lateWanted = false;
  let lateTimer: NodeJS.Timeout | undefined;
  let held: TaskOutcome | undefined;
  /** A deny whose gateway could not read the claims (`claimsUnread`): settled at the deadline. */
  let unconfirmed: TaskOutcome | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  let lost: string | undefined;
  /** Outcomes of this task dropped for their signer (gatewayKeys), and a few of those signers. */
  const ignored = { count: 0, signers: new Set<string>(), more: false };
  const ignoredNote = (): string =>
    ignored.count === 0 ? "" : ` (${ignored.count} outcome(s) of this task were ignored, signed by no key in gatewayKeys: ${[...ignored.signers].map((k) => JSON.stringify(k)).join(", ")}${ignored.more ? ", and others" : ""})`;
  // Policy: the claim's bytes are not signed, and anyone who may write to the claims bucket can
  // put a value over a gateway's claim (a plain put): read alone at the deadline, a "denied" or
  // another's claim put over this submission's says "denied" for a task that ran (found by
  // review). So every write to the key is watched from before the submit:
  // one that claimed it for this submission (stored or not: a refused create looks the same here)
  // means it may have run. A watch that failed cannot tell, and settles nothing.
  const claimWatch = { sawThis: false, broken: false };
  const claimSub = nc.subscribe(`$KV.${KV_BUCKETS.nonces}.${taskClaimKey(taskId)}`, {
    callback: (err, m) => {
      if (err !== null) {
        claimWatch.broken = true;
        return;
      }
      const c = parseTaskClaim(m.data);
      if (o.submissionId !== undefined && c?.kind === "held" && c.submissionId === o.submissionId) claimWatch.sawThis = true;
    },
  });
  const sub = nc.subscribe(SUBJECTS.outcome(taskId), {
    callback: (err, m) => {
      if (err !== null) {
        lost = String(err);
        return;
      }
      const p = tryParseStrict(m.data, { maxBytes: MAX_OUTCOME_BYTES });
      if (!p.ok || typeof p.value !== "object" || p.value === null || Array.isArray(p.value) || p.value["taskId"] !== taskId) return;
      const out = p.value as unknown as TaskOutcome;
      if (o.gatewayKeys !== undefined && !outcomeSignedBy(out, o.gatewayKeys)) {
        // Ignored, and counted: an answer that never comes because its gateway's key is not in
        // gatewayKeys must not look like a dead gateway (said in the detail, if no answer comes).
        ignored.count++;
        const signer = typeof out.signer === "string" && typeof out.sig === "string" ? out.signer : "unsigned";
        const shown = signer.length > 64 ? `${signer.slice(0, 64)}…` : signer;
        if (ignored.signers.size < 3) ignored.signers.add(shown);
        else if (!ignored.signers.has(shown)) ignored.more = true;
        return;
      }
      if (o.submissionId !== undefined && out.submissionId !== o.submissionId) return;
      if (out.status === "unknown") return; // only a client says that
      if (out.late === true) {
        // Never the answer: the end of a handler already answered for as timed out.
        if (out.verdict !== "allow") return;
        if (lateWanted) finishLate(out);
        else lateSeen ??= out;
        return;
      }
      if (out.duplicate === true) {
        // A copy of this very submission lost its claims to the original, which holds the task:
        // not a verdict on it. Not done: the original's own outcome is waited for. Done: its
        // outcome came before this client listened, or is about to be published (a gateway
        // knows the original finished once its outcome is queued, a little before it sends it),
        // so it is given a moment; then what it was is not known here.
        if (out.originalDone === true && graceTimer === undefined) {
          graceTimer = setTimeout(() => answer(duplicateOutcome(out, "a byte-identical copy of this submission already ran to its end; its outcome did not reach this client: see the audit log")), ORIGINAL_DONE_GRACE_MS);
        }
        held ??= out;
        return;
      }
      if (out.verdict === "deny" && out.claimsUnread === true) {
        // The gateway could not tell whether a copy of this submission holds the task: kept, and
        // taken only once the claim is read at the deadline (none, or another's: it stands).
        unconfirmed ??= out;
        return;
      }
      answer(out);
    },
  });
  const stop = (): void => {
    try {
      sub.unsubscribe();
      claimSub.unsubscribe();
    } catch {
      // already closed with the connection
    }
  };
  function finishLate(out: TaskOutcome | undefined): void {
    clearTimeout(lateTimer);
    lateWanted = false;
    settleLate(out);
    stop();
  }
  let cancelled: () => void = () => undefined;
  const cancel = new Promise<undefined>((r) => (cancelled = () => r(undefined)));
  // The answer, or undefined once `ms` pass, the subscription closes (bus lost) or the wait is cancelled.
  const within = async (ms: number): Promise<TaskOutcome | undefined> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([answered, cancel, sub.closed.then(() => undefined), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), Math.max(0, ms))))]);
    } finally {
      clearTimeout(timer);
    }
  };
  const outcome = (async (): Promise<TaskOutcome> => {
    try {
      const d = o.deadline;
      const skew = d?.skewMs ?? 5_000;
      // Past this, no gateway clock within the skew can still allow it. A deadline further off
      // than the wait allows (and than a timer can hold) is not waited out: no answer is then
      // "unknown", never "denied".
      // A skew that is not a number ≥ 0, or a deadline that is not a number, settles nothing.
      const usable = d !== undefined && Number.isFinite(d.inMs) && Number.isFinite(skew) && skew >= 0;
      const settleAfter = usable ? Math.max(0, d.inMs) + 2 * skew : undefined;
      const settles = settleAfter !== undefined && settleAfter <= timeoutMs + 2 * skew && settleAfter <= MAX_TIMER_MS;
      const first = await within(settles ? settleAfter : timeoutMs);
      if (first !== undefined) return first;
      // A held duplicate: this submission's original holds the task, and its outcome did not come.
      const unsettled = (why0: string): TaskOutcome => {
        const why = `${why0}${ignoredNote()}`;
        return held !== undefined ? duplicateOutcome(held, `a copy of this submission holds the task; ${why}`) : unknownOutcome(taskId, why);
      };
      if (sub.isClosed()) return unsettled(`outcome wait ended: the bus connection closed${lost !== undefined ? ` (${lost})` : ""}; the task may have run`);
      if (d === undefined) return unsettled(`no outcome within ${timeoutMs} ms, and the request has no decision deadline: a gateway may still decide it`);
      if (!usable) return unsettled(`no outcome within ${timeoutMs} ms, and its decision deadline or the allowed skew is not a usable number: a gateway may still decide it`);
      if (!settles) return unsettled(`no outcome within ${timeoutMs} ms, and the request's decision deadline is still ${d.inMs - timeoutMs} ms off: a gateway may still decide it`);
      // A held duplicate: this submission holds the task id; its original may still be running.
      const read = held !== undefined ? "this" : await taskClaimHolder(nc, taskId, o.submissionId);
      const holder = read === "unknown" || read === "this" ? read : claimWatch.sawThis ? "this" : claimWatch.broken || claimSub.isClosed() ? "unknown" : read;
      // An answer (or a duplicate) that arrived while the claim was read is the better one.
      const meanwhile = await within(0);
      if (meanwhile !== undefined) return meanwhile;
      const who = held !== undefined ? "this" : holder;
      switch (who) {
        case "none":
          // A gateway's deny held for want of this read stands now: no gateway claimed the task, and none can.
          return unconfirmed ?? noAnswer(taskId, `no gateway allowed it before its decision deadline, and none can now${ignoredNote()}`);
        case "other":
          return unconfirmed ?? { ...noAnswer(taskId, "the task id is held by another submission"), codes: ["REPLAYED"] };
        case "denied":
          return unconfirmed ?? noAnswer(taskId, "a gateway denied it and spent its task id (its outcome did not arrive)");
        case "this": {
          const late = await within(timeoutMs);
          return late ?? unsettled(`a gateway claimed the task for this submission, but no outcome arrived within ${timeoutMs} ms more: it may have run`);
        }
        case "unknown":
          return unknownOutcome(taskId, `no outcome, and whose claim holds the task id could not be read: the task may have run${ignoredNote()}`);
        default:
          // Exhaustive; should a case ever be missed, the catch below answers "unknown".
          who satisfies never;
          throw new Error(`unhandled claim holder ${String(who)}`);
      }
    } catch (e) {
      return unknownOutcome(taskId, `outcome wait failed: ${String(e)}`);
    } finally {
      clearTimeout(graceTimer);
    }
  })();
  // The subscription ends with the answer, unless that answer is a timed-out handler's and a
  // late outcome is wanted: then it stays until one comes, `lateWaitMs` pass, the bus goes or
  // the wait is cancelled. The late promise always settles (undefined when none came).
  const lateWaitMs = o.lateWaitMs ?? 0;
  void outcome.then((out) => {
    if (out.timedOut !== true || out.verdict !== "allow" || !(lateWaitMs > 0) || sub.isClosed()) return finishLate(undefined);
    if (lateSeen !== undefined) return finishLate(lateSeen);
    lateWanted = true;
    lateTimer = setTimeout(() => finishLate(undefined), Math.min(lateWaitMs, MAX_TIMER_MS));
    void sub.closed.then(() => finishLate(undefined), () => finishLate(undefined));
  });
  return {
    ready: nc.flush(),
    outcome,
    late,
    cancel: () => {
      cancelled();
      finishLate(undefined);
    },
  };
}

/**
 * Nothing of this submission reached the bus, or the server refused its submit message outright:
 * no gateway can see it, so it did not run and will not (unlike "unknown").
 */
function refusedOutcome(taskId: string, code: "MALFORMED" | "GOVERNANCE_UNAVAILABLE", why: string): TaskOutcome {
  return { taskId, gatewayId: "client", verdict: "deny", codes: [code], status: "denied", detail: why };
}

/** JetStream's "message size exceeds maximum allowed" (nats-server JSStreamMessageExceedsMaximumErr). */
const JS_MESSAGE_TOO_LARGE = 10054;

/**
 * Why the server certainly did not store a submit publish that failed with `e`, or undefined
 * when that is not certain (a timeout, a lost connection, any other refusal): the message may
 * then be in the stream, and only the deadline can tell.
 */
function submitRefusal(e: unknown): { code: "MALFORMED" | "GOVERNANCE_UNAVAILABLE"; why: string } | undefined {
  // Policy: only refusals the server makes before it stores anything. A size refusal is checked
  // against the stream's max_msg_size before the write; a publish permission violation is refused
  // by the server before the message is routed to any stream. Other API errors (a store that
  // failed, a cluster that lost its leader mid-write) could follow a partial write: "unknown".
  for (const c of causeChain(e, 4)) {
    if (c instanceof JetStreamApiError && (c.code === JS_MESSAGE_TOO_LARGE || (c.status === 400 && c.message === "message size exceeds maximum allowed"))) {
      return { code: "MALFORMED", why: `the server refused the submit message as too large (${c.message}); nothing was stored` };
    }
    if (c instanceof PermissionViolationError && c.operation === "publish" && c.subject === SUBJECTS.taskSubmit) {
      return { code: "GOVERNANCE_UNAVAILABLE", why: `this connection may not publish to ${SUBJECTS.taskSubmit} (${c.message}); nothing was stored` };
    }
  }
  return undefined;
}

/** JSON text of `v`; throws for a value JSON.stringify leaves out (undefined, a function). */
function jsonText(v: unknown): string {
  const text = JSON.stringify(v) as string | undefined;
  if (text === undefined) throw new TypeError(`${typeof v} is not a JSON value`);
  return text;
}

type EncodedSubmission = { ok: true; body: string; evidence: { kind: "artifact" | "lineage"; data: string }[] } | { ok: false; why: string };

/** Encode every message of a submission, or say why it cannot go on the wire at all. */
function encodeSubmission(s: Submission): EncodedSubmission {
  let body: string;
  const evidence: { kind: "artifact" | "lineage"; data: string }[] = [];
  try {
    body = jsonText({ request: s.request, args: s.args });
    for (const a of s.chain ?? []) evidence.push({ kind: "artifact", data: jsonText(a) });
    for (const l of s.lineage ?? []) evidence.push({ kind: "lineage", data: jsonText(l) });
  } catch (e) {
    return { ok: false, why: `the submission does not encode as JSON (${String(e)}); nothing was published` };
  }
  // Policy: checked before anything is published, so an oversized submission leaves no evidence
  // behind and is a definitive deny here rather than a refused publish (gateways, and the streams'
  // max_msg_size, take nothing over MAX_MESSAGE_BYTES: DESIGN §6).
  const size = Buffer.byteLength(body, "utf8");
  if (size > MAX_MESSAGE_BYTES) return { ok: false, why: `the submit message (request and args) is ${size} bytes, over the ${MAX_MESSAGE_BYTES}-byte message limit; nothing was published` };
  for (const [i, m] of evidence.entries()) {
    const n = Buffer.byteLength(m.data, "utf8");
    if (n > MAX_MESSAGE_BYTES) return { ok: false, why: `evidence message ${i} (${m.kind}) is ${n} bytes, over the ${MAX_MESSAGE_BYTES}-byte message limit; nothing was published` };
  }
  return { ok: true, body, evidence };
}

/**
 * Publish a task's evidence and submit its request, then wait for its outcome (awaitOutcome).
 * Never throws: every failure is an outcome.
 *
 * A submission that cannot go on the wire (not JSON, or a submit or evidence message over
 * MAX_MESSAGE_BYTES) is refused before anything is published: a deny with code MALFORMED and
 * status "denied" from gatewayId "client". So is a submit message the server refuses without
 * storing it (too large for the stream); a publish permission violation on the submit subject is
 * "denied" with GOVERNANCE_UNAVAILABLE. Any other failure to submit (a timeout, a lost
 * connection) is "unknown": the submit may have reached the stream.
 */
export function submitTask(nc: NatsConnection, s: Submission): Promise<TaskOutcome> {
  return submitTaskTracked(nc, s).outcome;
}

/**
 * submitTask, and how a handler cut off by its timeout ended: `late` resolves with that signed
 * `late` outcome once its gateway records it, if it comes within `s.lateWaitMs` of an answer that
 * says `timedOut`; otherwise (any other answer, none in time, the bus lost) with undefined.
 */
export function submitTaskTracked(nc: NatsConnection, s: Submission): { outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined> } {
  let late: Promise<TaskOutcome | undefined> = Promise.resolve(undefined);
  const outcome = submitAndAwait(nc, s, (l) => {
    late = l;
  });
  return { outcome, late: outcome.then(() => late) };
}

async function submitAndAwait(nc: NatsConnection, s: Submission, lateOf: (late: Promise<TaskOutcome | undefined>) => void): Promise<TaskOutcome> {
  // Read defensively: a malformed submission from plain JavaScript still gets a deny, not a throw.
  const named = (s as { request?: { payload?: { taskId?: unknown } } } | null)?.request?.payload?.taskId;
  const taskId = typeof named === "string" ? named : "unknown";
  let waiter: ReturnType<typeof awaitOutcome> | undefined;
  let submitting = false;
  try {
    const encoded = encodeSubmission(s);
    if (!encoded.ok) return refusedOutcome(taskId, "MALFORMED", encoded.why);
    const { body } = encoded;
    // What the gateway will fingerprint: the submit message as it parses it.
    const submissionId = submissionIdOf(JSON.parse(body));
    const payload = (s.request as { payload?: { notAfter?: unknown; createdAt?: unknown } } | null)?.payload;
    const notAfter = payload?.notAfter;
    const createdAt = payload?.createdAt;
    waiter = awaitOutcome(nc, taskId, s.timeoutMs ?? 30_000, {
      ...(submissionId !== undefined ? { submissionId } : {}),
      ...(s.gatewayKeys !== undefined ? { gatewayKeys: s.gatewayKeys } : {}),
      // The deadline in the submitter's own terms: how long after signing the request it falls.
      ...(typeof notAfter === "number" && typeof createdAt === "number" ? { deadline: { inMs: notAfter - createdAt, ...(s.skewMs !== undefined ? { skewMs: s.skewMs } : {}) } } : {}),
      ...(s.lateWaitMs !== undefined ? { lateWaitMs: s.lateWaitMs } : {}),
    });
    lateOf(waiter.late);
    await waiter.ready;
    const js = jetstream(nc);
    // Evidence first: a gateway that pulls the request should find it already streaming in.
    for (const m of encoded.evidence) await js.publish(m.kind === "artifact" ? SUBJECTS.artifact(taskId) : SUBJECTS.lineage(taskId), m.data);
    submitting = true;
    await js.publish(SUBJECTS.taskSubmit, body);
  } catch (e) {
    waiter?.cancel();
    const refused = submitting ? submitRefusal(e) : undefined;
    if (refused !== undefined) return refusedOutcome(taskId, refused.code, refused.why);
    // The submit may have reached the stream before the error: only the deadline can tell.
    return unknownOutcome(taskId, `submission failed: ${String(e)}`);
  }
  return waiter.outcome;
}
