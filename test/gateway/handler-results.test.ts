// What a handler returns never changes whether it ran: a void handler (undefined) succeeded with
// a null result; one whose result is not I-JSON succeeded, the result left out of the log and the
// outcome, which says why. Reporting "failed" after the side effects invited a second run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { readRecords } from "../audit/tamper.ts";

const agent = namedKey("agent-0");
let h: Harness;
let returns: () => unknown = () => null;
const ran: string[] = [];
beforeAll(async () => {
  h = await startHarness();
  h.gateways[0]!.registerAction("transfer", ({ taskId }) => {
    ran.push(taskId);
    return returns() as JsonValue;
  });
});
afterAll(async () => {
  await h.close();
});

async function run() {
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`results-${taskId}`), attribution: { initiator: "t", reason: "results" } });
  return { taskId, outcome: await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome };
}

async function outcomeRecord(taskId: string) {
  await new Promise((r) => setTimeout(r, 100)); // the outcome record is written as the outcome is sent
  return (await readRecords(h.gateways[0]!.ledger.store.backend)).find((r) => r.type === "outcome" && r.taskId === taskId);
}

describe("handler results", () => {
  it("undefined (a void handler) is a success with a null result", async () => {
    returns = () => undefined;
    const { taskId, outcome } = await run();
    expect(ran).toContain(taskId);
    expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded", result: null });
    expect(outcome.resultDigest).toEqual(expect.any(String));
    expect(await outcomeRecord(taskId)).toMatchObject({ status: "succeeded", resultDigest: outcome.resultDigest });
  });

  for (const [name, value] of [
    ["a Date", new Date(0)],
    ["a BigInt", 10n],
    ["an object with a cycle", (() => {
      const o: Record<string, unknown> = {};
      o["self"] = o;
      return o;
    })()],
  ] as const) {
    it(`${name}: succeeded, the result not recorded, and the outcome says why`, async () => {
      returns = () => value;
      const { taskId, outcome } = await run();
      expect(ran).toContain(taskId);
      expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
      expect(outcome.result).toBeUndefined();
      expect(outcome.resultDigest).toBeUndefined();
      expect(outcome.detail).toMatch(/not I-JSON and was not recorded/);
      const rec = await outcomeRecord(taskId);
      expect(rec).toMatchObject({ status: "succeeded" });
      expect(rec).not.toHaveProperty("resultDigest");
    });
  }

  it("the log replays clean", async () => {
    expect((await replayGateway(h.gateways[0]!)).ok).toBe(true);
  });
});
