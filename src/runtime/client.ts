// The submitting side of the wire contract: publish a task's evidence, submit its request to
// the shared work queue, and wait for the outcome a gateway publishes. No gateway answer in
// time is a deny from the submitter's point of view (fail closed), never a pass.
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import type { SignedArtifact, SignedLineage, SignedRequest } from "../core/types.ts";
import { SUBJECTS, submissionIdOf } from "../nats/contract.ts";
import type { TaskOutcome } from "../gateway/outcome.ts";

export interface Submission {
  request: SignedRequest;
  args: JsonValue;
  /** Artifacts to publish on the task's artifact subject (root first). */
  chain?: SignedArtifact[];
  /** Lineage events to publish on the task's lineage subject. */
  lineage?: SignedLineage[];
  timeoutMs?: number;
}

export function noAnswer(taskId: string, why: string): TaskOutcome {
  return { taskId, gatewayId: "client", verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "denied", detail: why };
}

export interface AwaitOptions {
  /**
   * The submission waited for (contract.ts submissionIdOf): outcomes for any other submission
   * naming the task id, a forged twin or someone else's, are ignored. Without it, the first
   * readable outcome for the task id is taken.
   */
  submissionId?: string;
  /**
   * How long a `duplicate` outcome (this very submission, submitted again, lost the task-id
   * claim to its original) waits for the original's own outcome before it is returned.
   * Default 2,000 ms, never past the timeout.
   */
  duplicateGraceMs?: number;
}

/**
 * Wait for a task's outcome message; resolves with a client-side deny on timeout or bus loss.
 * Messages that do not parse, name another task, or answer another submission are ignored:
 * anyone on the bus can publish them, and none may end the wait early.
 */
export function awaitOutcome(nc: NatsConnection, taskId: string, timeoutMs: number, o: AwaitOptions = {}): { ready: Promise<void>; outcome: Promise<TaskOutcome> } {
  const sub = nc.subscribe(SUBJECTS.outcome(taskId));
  const outcome = (async (): Promise<TaskOutcome> => {
    const started = performance.now();
    const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
    let grace: NodeJS.Timeout | undefined;
    let held: TaskOutcome | undefined;
    try {
      for await (const m of sub) {
        const p = tryParseStrict(m.data, { maxBytes: 4 * 1024 * 1024 });
        if (!p.ok || typeof p.value !== "object" || p.value === null || Array.isArray(p.value) || p.value["taskId"] !== taskId) continue;
        const out = p.value as unknown as TaskOutcome;
        if (o.submissionId !== undefined && out.submissionId !== o.submissionId) continue;
        if (out.duplicate === true) {
          // A copy of this submission: the original's outcome is the answer, if it comes.
          if (held === undefined) {
            held = out;
            const left = Math.max(0, timeoutMs - (performance.now() - started));
            grace = setTimeout(() => sub.unsubscribe(), Math.min(o.duplicateGraceMs ?? 2_000, left));
          }
          continue;
        }
        return out;
      }
      return held ?? noAnswer(taskId, `no outcome within ${timeoutMs} ms`);
    } catch (e) {
      return noAnswer(taskId, `outcome wait failed: ${String(e)}`);
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
      try {
        sub.unsubscribe();
      } catch {
        // already closed with the connection
      }
    }
  })();
  return { ready: nc.flush(), outcome };
}

export async function submitTask(nc: NatsConnection, s: Submission): Promise<TaskOutcome> {
  const taskId = s.request.payload.taskId;
  const body = JSON.stringify({ request: s.request, args: s.args });
  // What the gateway will fingerprint: the submit message as it parses it.
  const submissionId = submissionIdOf(JSON.parse(body));
  const waiter = awaitOutcome(nc, taskId, s.timeoutMs ?? 30_000, submissionId !== undefined ? { submissionId } : {});
  try {
    await waiter.ready;
    const js = jetstream(nc);
    // Evidence first: a gateway that pulls the request should find it already streaming in.
    for (const a of s.chain ?? []) await js.publish(SUBJECTS.artifact(taskId), JSON.stringify(a));
    for (const l of s.lineage ?? []) await js.publish(SUBJECTS.lineage(taskId), JSON.stringify(l));
    await js.publish(SUBJECTS.taskSubmit, body);
  } catch (e) {
    return noAnswer(taskId, `submission failed: ${String(e)}`);
  }
  return waiter.outcome;
}
