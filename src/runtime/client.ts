// The submitting side of the wire contract: publish a task's evidence, submit its request to
// the shared work queue, and wait for the outcome a gateway publishes. No gateway answer in
// time is a deny from the submitter's point of view (fail closed), never a pass.
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import type { SignedArtifact, SignedLineage, SignedRequest } from "../core/types.ts";
import { SUBJECTS, submissionIdOf } from "../nats/contract.ts";
import { MAX_OUTCOME_BYTES, outcomeSignedBy, type TaskOutcome } from "../gateway/outcome.ts";

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
}

export function noAnswer(taskId: string, why: string): TaskOutcome {
  return { taskId, gatewayId: "client", verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "denied", detail: why };
}

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
}

/**
 * Wait for a task's outcome message; resolves with a client-side deny on timeout or bus loss.
 * Messages that do not parse, name another task, or answer another submission are ignored, so
 * none of them ends the wait early. A `duplicate` outcome (a copy of this submission that lost
 * the claim to the original) ends it only when the gateway saw the original finish; otherwise
 * the original's own outcome is waited for, and the duplicate is the answer at the timeout.
 */
export function awaitOutcome(
  nc: NatsConnection,
  taskId: string,
  timeoutMs: number,
  o: AwaitOptions = {},
): { ready: Promise<void>; outcome: Promise<TaskOutcome>; cancel: () => void } {
  const sub = nc.subscribe(SUBJECTS.outcome(taskId));
  const stop = (): void => {
    try {
      sub.unsubscribe();
    } catch {
      // already closed with the connection
    }
  };
  const outcome = (async (): Promise<TaskOutcome> => {
    const timer = setTimeout(stop, timeoutMs);
    let held: TaskOutcome | undefined;
    try {
      for await (const m of sub) {
        const p = tryParseStrict(m.data, { maxBytes: MAX_OUTCOME_BYTES });
        if (!p.ok || typeof p.value !== "object" || p.value === null || Array.isArray(p.value) || p.value["taskId"] !== taskId) continue;
        const out = p.value as unknown as TaskOutcome;
        if (o.gatewayKeys !== undefined && !outcomeSignedBy(out, o.gatewayKeys)) continue;
        if (o.submissionId !== undefined && out.submissionId !== o.submissionId) continue;
        if (out.duplicate === true && out.originalDone !== true) {
          held ??= out;
          continue;
        }
        return out;
      }
      return held ?? noAnswer(taskId, `no outcome within ${timeoutMs} ms`);
    } catch (e) {
      return noAnswer(taskId, `outcome wait failed: ${String(e)}`);
    } finally {
      clearTimeout(timer);
      stop();
    }
  })();
  return { ready: nc.flush(), outcome, cancel: stop };
}

export async function submitTask(nc: NatsConnection, s: Submission): Promise<TaskOutcome> {
  // Read defensively: a malformed submission from plain JavaScript still gets a deny, not a throw.
  const named = (s as { request?: { payload?: { taskId?: unknown } } } | null)?.request?.payload?.taskId;
  const taskId = typeof named === "string" ? named : "unknown";
  let waiter: ReturnType<typeof awaitOutcome> | undefined;
  try {
    const body = JSON.stringify({ request: s.request, args: s.args });
    // What the gateway will fingerprint: the submit message as it parses it.
    const submissionId = submissionIdOf(JSON.parse(body));
    waiter = awaitOutcome(nc, taskId, s.timeoutMs ?? 30_000, {
      ...(submissionId !== undefined ? { submissionId } : {}),
      ...(s.gatewayKeys !== undefined ? { gatewayKeys: s.gatewayKeys } : {}),
    });
    await waiter.ready;
    const js = jetstream(nc);
    // Evidence first: a gateway that pulls the request should find it already streaming in.
    for (const a of s.chain ?? []) await js.publish(SUBJECTS.artifact(taskId), JSON.stringify(a));
    for (const l of s.lineage ?? []) await js.publish(SUBJECTS.lineage(taskId), JSON.stringify(l));
    await js.publish(SUBJECTS.taskSubmit, body);
  } catch (e) {
    waiter?.cancel();
    return noAnswer(taskId, `submission failed: ${String(e)}`);
  }
  return waiter.outcome;
}
