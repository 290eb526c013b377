// An outcome is published only as large as the bus takes: the server's max_payload (1 MiB by
// default) less some headroom, and at most MAX_OUTCOME_BYTES (what a client reads). A result
// between the two is left out, with a detail saying so and a warning, and the task's success
// still reaches spawn() (it would otherwise be "unknown", though the gateway knew its answer).
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { tryParseStrict } from "../../src/canonical/strict-parse.ts";
import { encodeOutcome, outcomeSignedBy, type TaskOutcome } from "../../src/gateway/outcome.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
let h: Harness | undefined;
let rt: Runtime | undefined;
afterEach(async () => {
  await rt?.close().catch(() => undefined);
  await h?.close();
  rt = undefined;
  h = undefined;
});

it("a result over the server's max_payload but under MAX_OUTCOME_BYTES: the success reaches spawn() without the result, and the gateway warns", { timeout: 90_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const warnings: string[] = [];
  rt = await Runtime.connect({
    natsUrl: h.url,
    dataDir: join(h.dir, "rt-gw"),
    gateway: { gatewayId: "rt-gw", gatewayKey: namedKey("gateway-7"), authorities: [h.authority.keyId], attributes: { name: "staging" }, onWarning: (w) => warnings.push(w) },
    outcomeTimeoutMs: 3_000,
    maxSkewMs: 300,
  });
  for (let i = 0; i < 200 && rt.gateway?.ledger.state.policy === undefined; i++) await new Promise((r) => setTimeout(r, 25));
  let ran = 0;
  rt.registerAction("transfer", () => {
    ran++;
    return { report: "x".repeat(1_500_000) };
  });
  const taskId = newTaskId();
  const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 }, nonce: namedNonce(`large-${taskId}`), attribution: { initiator: "t", reason: "outcome size" } });
  const started = Date.now();
  const o = await rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  expect(ran).toBe(1);
  expect(rt.gateway?.ledger.state.tasks.get(taskId)?.status).toBe("succeeded");
  expect(o).toMatchObject({ status: "succeeded", gatewayId: "rt-gw", detail: expect.stringMatching(/result could not be delivered: the outcome would be \d+ bytes, over the \d+ bytes the bus takes/) });
  expect(o.result).toBeUndefined();
  expect(o.resultDigest).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(Date.now() - started).toBeLessThan(3_000); // answered, not settled at the deadline
  expect(warnings.some((w) => w.includes(`outcome of ${taskId} published without its result`))).toBe(true);
});

const gw = namedKey("gateway-1");
const trusted = new Set([gw.keyId]);
const readBack = (text: string | undefined): TaskOutcome => {
  const p = tryParseStrict(text!, { maxBytes: 1 << 20 });
  expect(p.ok).toBe(true);
  const o = (p as { value: unknown }).value as TaskOutcome;
  expect(outcomeSignedBy(o, trusted)).toBe(true);
  return o;
};

it("encodeOutcome: over the limit, the result is left out (saying why) and the rest is signed as sent; the duplicate marks survive even a minimal outcome", () => {
  const base: TaskOutcome = { taskId: "t-1", gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", resultDigest: "d".repeat(43), submissionId: "S".repeat(43) };
  const e = encodeOutcome({ ...base, result: { report: "x".repeat(5_000) } }, gw, 2_000);
  expect(e?.resultDropped).toMatch(/over the 2000 bytes the bus takes/);
  expect(Buffer.byteLength(e!.text)).toBeLessThanOrEqual(2_000);
  expect(readBack(e?.text)).toMatchObject({ ...base, detail: e?.resultDropped });
  // A deny with a detail too long for the limit: the minimal outcome keeps what a client acts on.
  const deny: TaskOutcome = { taskId: "t-2", gatewayId: "gw-1", verdict: "deny", codes: ["EXPIRED"], status: "denied", submissionId: "S".repeat(43), duplicate: true, claimsUnread: true, detail: "y".repeat(5_000) };
  expect(readBack(encodeOutcome(deny, gw, 2_000)?.text)).toMatchObject({ verdict: "deny", status: "denied", duplicate: true, claimsUnread: true, submissionId: "S".repeat(43) });
});

it("encodeOutcome: a minimal outcome keeps `late` and `timedOut` (found by review: a late outcome without its mark reads as an answer)", () => {
  const late: TaskOutcome = { taskId: "t-4", gatewayId: "gw-1", verdict: "allow", codes: [], status: "failed", late: true, submissionId: "S".repeat(43), error: `after its timeout: ${"z".repeat(5_000)}` };
  const sent = readBack(encodeOutcome(late, gw, 2_000)?.text);
  expect(sent).toMatchObject({ verdict: "allow", status: "failed", late: true, submissionId: "S".repeat(43) });
  const cut: TaskOutcome = { taskId: "t-5", gatewayId: "gw-1", verdict: "allow", codes: [], status: "failed", timedOut: true, error: "w".repeat(5_000) };
  expect(readBack(encodeOutcome(cut, gw, 2_000)?.text)).toMatchObject({ status: "failed", timedOut: true });
});

it("encodeOutcome reads the outcome once: a getter in the result cannot make the sent bytes differ from the signed ones", () => {
  let reads = 0;
  const result = {
    get n() {
      return ++reads;
    },
  } as unknown as JsonValue;
  const o = readBack(encodeOutcome({ taskId: "t-3", gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", result }, gw)?.text);
  expect(o.result).toEqual({ n: 1 });
  expect(reads).toBe(1);
});
