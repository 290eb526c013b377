// Found by review: a late outcome too large for the bus lost its `late` mark. encodeOutcome's last
// resort (the "minimal" outcome, sent when even the outcome without its result does not fit) kept
// taskId, verdict, status, submissionId, … but not `late` (nor `timedOut`). A handler that throws
// after its timeout with a long message (its error is in the late outcome: recorded whole, the log
// takes up to 16 MiB, but over the server's max_payload on the bus) was published as a plain
// `{verdict:"allow", status:"failed"}` of the same submission: no `late` for spawn(), which waited
// out lateOutcomeWaitMs for nothing, and an answer to any other listener for that submission (a
// client that lost the first answer and waits again), though a late outcome is never the answer.
import { afterEach, expect, it } from "vitest";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { awaitOutcome } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

let w: RuntimeWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it("a late outcome too large for the bus still arrives marked late: `late` gets it, and another listener never takes it as an answer", { timeout: 60_000 }, async () => {
  w = await runtimeWorld({ handlerTimeoutMs: 300 });
  const ww = w;
  ww.rt.registerAction("transfer", async () => {
    await sleep(1_000);
    // A library's error carrying a whole response body: over the bus's 1 MiB, well under the log's limit.
    throw new Error(`bank said no: ${"x".repeat(1_500_000)}`);
  });
  const taskId = newTaskId();
  const { outcome, late } = ww.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
  const answer = await outcome;
  expect(answer).toMatchObject({ verdict: "allow", status: "failed", timedOut: true });
  // Another listener for this very submission, as a client waiting again would be.
  const again = awaitOutcome(ww.rt.nc, taskId, 4_000, { ...(answer.submissionId !== undefined ? { submissionId: answer.submissionId } : {}), gatewayKeys: new Set([ww.rt.gateway!.keyId]) });
  await again.ready;
  const end = await Promise.race([late, sleep(8_000).then(() => "still waiting" as const)]);
  expect(end).toMatchObject({ taskId, verdict: "allow", status: "failed", late: true, submissionId: answer.submissionId });
  const second: TaskOutcome = await again.outcome;
  // Not the late outcome: no answer came for it, so it is not known here.
  expect(second.late).toBeUndefined();
  expect(second).toMatchObject({ gatewayId: "client", status: "unknown" });
});
