// The submitting side of the wire contract: publish a task's evidence, submit its request to
// the shared work queue, and wait for the outcome a gateway publishes. No gateway answer in
// time is a deny from the submitter's point of view (fail closed), never a pass.
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import type { SignedArtifact, SignedLineage, SignedRequest } from "../core/types.ts";
import { SUBJECTS } from "../nats/contract.ts";
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

/** Wait for a task's outcome message; resolves with a client-side deny on timeout or bus loss. */
export function awaitOutcome(nc: NatsConnection, taskId: string, timeoutMs: number): { ready: Promise<void>; outcome: Promise<TaskOutcome> } {
  const sub = nc.subscribe(SUBJECTS.outcome(taskId), { max: 1 });
  const outcome = (async (): Promise<TaskOutcome> => {
    const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
    try {
      for await (const m of sub) {
        const p = tryParseStrict(m.data, { maxBytes: 4 * 1024 * 1024 });
        if (p.ok && typeof p.value === "object" && p.value !== null && !Array.isArray(p.value) && p.value["taskId"] === taskId) {
          return p.value as unknown as TaskOutcome;
        }
        return noAnswer(taskId, "unreadable outcome message");
      }
      return noAnswer(taskId, `no outcome within ${timeoutMs} ms`);
    } catch (e) {
      return noAnswer(taskId, `outcome wait failed: ${String(e)}`);
    } finally {
      clearTimeout(timer);
    }
  })();
  return { ready: nc.flush(), outcome };
}

export async function submitTask(nc: NatsConnection, s: Submission): Promise<TaskOutcome> {
  const taskId = s.request.payload.taskId;
  const waiter = awaitOutcome(nc, taskId, s.timeoutMs ?? 30_000);
  try {
    await waiter.ready;
    const js = jetstream(nc);
    // Evidence first: a gateway that pulls the request should find it already streaming in.
    for (const a of s.chain ?? []) await js.publish(SUBJECTS.artifact(taskId), JSON.stringify(a));
    for (const l of s.lineage ?? []) await js.publish(SUBJECTS.lineage(taskId), JSON.stringify(l));
    await js.publish(SUBJECTS.taskSubmit, JSON.stringify({ request: s.request, args: s.args }));
  } catch (e) {
    return noAnswer(taskId, `submission failed: ${String(e)}`);
  }
  return waiter.outcome;
}
