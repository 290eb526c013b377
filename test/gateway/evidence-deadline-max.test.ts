// Found by review (2097bd2, Gateway.start's timeout validation). start() refused any duration a
// timer cannot honour (over 2^31 − 1 ms, which Node fires at once), and accepted
// evidenceDeadlineMs up to exactly 2^31 − 1. But the task machine's evidence timer is armed with
// evidenceDeadlineMs + 500, so any value in (2^31 − 501, 2^31 − 1] overflowed that timer: it
// fired after ~1 ms, and every task whose artifact was not already in the gateway's evidence
// index was denied NO_ARTIFACT at once. Now the largest evidenceDeadlineMs accepted is
// 2^31 − 501, and that one still waits for a late artifact.
import { jetstream } from "@nats-io/jetstream";
import { afterEach, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
const gatewayKeys = new Set([namedKey("gateway-1").keyId]);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MAX_TIMER_MS = 2 ** 31 - 1;
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("evidenceDeadlineMs 2^31 − 1 is refused at the start: the machine's timer, 500 ms past it, could not be armed", async () => {
  h = await startHarness({ gateways: 0 });
  await expect(h.startGateway({ evidenceDeadlineMs: MAX_TIMER_MS })).rejects.toThrow(new RegExp(`^evidenceDeadlineMs must be a number of ms above 0 up to ${MAX_TIMER_MS - 500} `));
}, 60_000);

for (const evidenceDeadlineMs of [MAX_TIMER_MS - 500]) {
  it(`evidenceDeadlineMs ${evidenceDeadlineMs}, the largest start() accepts, still waits for an artifact that arrives 400 ms after the request`, async () => {
    h = await startHarness({ gateway: { evidenceDeadlineMs } });
    const hh = h;
    const gw = hh.gateways[0]!;
    let runs = 0;
    gw.registerAction("transfer", () => (runs++, { ok: true }));
    const taskId = newTaskId();
    const now = Date.now();
    const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`deadline-max-${taskId}`), attribution: { initiator: "t", reason: "deadline max" } });
    const args = { amount: 1 };
    const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: now, notAfter: now + 10_000 });
    // The request goes first (its origin lineage is already on the stream); the artifact a little later.
    const outcome = submitTask(hh.runtime.nc, { request, args, chain: [], timeoutMs: 10_000, gatewayKeys });
    await sleep(400);
    await jetstream(hh.runtime.nc).publish(SUBJECTS.artifact(taskId), JSON.stringify(artifact));
    const out = await outcome;
    expect({ status: out.status, codes: out.codes, runs }, JSON.stringify(out.detail)).toEqual({ status: "succeeded", codes: [], runs: 1 });
  }, 60_000);
}
