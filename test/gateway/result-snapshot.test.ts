// A handler's result is taken once, when it returns: one plain-data copy gives the audit
// record's resultDigest, the outcome's result and the bytes signed and sent. A result the
// handler's code changes after returning, or one with a getter read anew each time, cannot make
// the delivered result differ from the recorded digest, nor the sent bytes from the signed ones.
import { expect, it } from "vitest";
import { canonicalBytes } from "../../src/canonical/jcs.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { sha256 } from "../../src/crypto/hash.ts";
import { worldPerTest } from "./one-gateway-world.ts";

const world = worldPerTest();
const digestOf = (v: unknown): string => toB64u(sha256(canonicalBytes(v)));

it("a result changed by the handler's code after it returned: the delivered result matches the recorded resultDigest", { timeout: 60_000 }, async () => {
  const w = await world();
  w.gw.registerAction("transfer", () => {
    const state = { balance: 100 };
    setTimeout(() => (state.balance = 0), 0); // background work goes on with the same object
    return state;
  });
  const { taskId, outcome } = await w.run();
  expect(outcome.status).toBe("succeeded");
  expect(w.gw.ledger.state.tasks.get(taskId)?.status).toBe("succeeded");
  expect({ result: outcome.result, digestMatches: digestOf(outcome.result) === outcome.resultDigest }).toEqual({ result: { balance: 100 }, digestMatches: true });
});

it("a result with a getter: read once, and its success reaches spawn() (the bytes sent are the bytes signed)", { timeout: 60_000 }, async () => {
  const w = await world();
  let reads = 0;
  w.gw.registerAction("transfer", () => ({
    get reads() {
      return ++reads;
    },
  }));
  const { taskId, outcome } = await w.run();
  expect(w.gw.ledger.state.tasks.get(taskId)?.status).toBe("succeeded");
  expect({ status: outcome.status, gatewayId: outcome.gatewayId, result: outcome.result }).toEqual({ status: "succeeded", gatewayId: "gw-1", result: { reads: 1 } });
  expect(digestOf(outcome.result)).toBe(outcome.resultDigest);
  expect(reads).toBe(1);
});
