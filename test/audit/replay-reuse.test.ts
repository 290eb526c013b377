// One single-use nonce, or one task id, allowed twice in one log is a finding however far apart
// the two allows are. The fold forgets a spent nonce and a finished task a window of entries
// after it (fold.ts FOLD_WINDOW = 2^20), and whoever writes the log decides how fast that window
// passes (any trust, revocation, decision or outcome record is an entry), while the cluster
// claim a decision records ("claimed") is the gateway's word. So replay keeps its own,
// unwindowed memory of allows (src/audit/allow-history.ts): NONCE_REUSED, TASK_REUSED. The
// window is scaled down to 16 with the test-only `foldWindow` option, used identically by the
// writer and replay, as its contract requires.
import { afterEach, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { T0, artifact, runTask } from "./operator.ts";
import { GATEWAY_KEY, memoryHarness, openStore } from "./support.ts";

const WINDOW = 16;
let store: AuditStore;
afterEach(async () => {
  await store.close();
});

const setup = async (): Promise<void> => {
  store = await openStore(memoryHarness(), { checkpointEvery: 8, origin: "gw-test", foldWindow: WINDOW });
  await writeTrustSetup(store, true);
};
const run = () => replay(backendLogSource(store.backend), scenarioTrustRoots(), { foldWindow: WINDOW });
/** Entries that let the window pass: idempotent trust records. */
const filler = async (): Promise<void> => {
  for (let i = 0; i < WINDOW + 2; i++) await store.append({ type: "trust", change: { op: "gateway.add", keyId: GATEWAY_KEY.keyId } });
};

it("within the window, a nonce allowed twice is NONCE_STATE (the claim contradicts the fold) and NONCE_REUSED", async () => {
  await setup();
  const art = artifact({ nonce: "once", now: T0 });
  const first = await runTask(store, "t-first", art, { now: T0 });
  expect(first.decision.verdict).toBe("allow");
  const second = await runTask(store, "t-second", art, { now: T0 + 1_000, nonce: { key: art.payload.nonce, local: "fresh", cluster: "claimed" } });
  expect(second.decision.verdict).toBe("allow");
  await store.checkpoint();
  const rep = await run();
  expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${second.seq}:NONCE_STATE`, `${second.seq}:NONCE_REUSED`]);
  expect(rep.divergences[1]!.detail).toBe(`nonce ${art.payload.nonce} was already spent by the allow at seq ${first.seq}`);
});

it("a single-use nonce allowed (and executed) twice a window of filler entries apart is NONCE_REUSED", async () => {
  await setup();
  const art = artifact({ nonce: "once", now: T0 }); // valid for an hour
  const first = await runTask(store, "t-first", art, { now: T0 });
  expect(first.decision.verdict).toBe("allow");
  await filler();
  // The fold forgot the nonce: the honest-looking input says local "fresh", and the operator
  // says the KV claim was won again.
  expect(store.state.consumedNonces.has(art.payload.nonce)).toBe(false);
  const second = await runTask(store, "t-second", art, { now: T0 + 1_000 });
  expect(second.decision.verdict).toBe("allow");
  await store.checkpoint();
  const rep = await run();
  expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${second.seq}:NONCE_REUSED`]);
});

it("one task id allowed and executed twice, a window of filler entries apart, is TASK_REUSED", async () => {
  await setup();
  const first = await runTask(store, "t-once", artifact({ nonce: "first-art", now: T0 }), { now: T0 });
  expect(first.decision.verdict).toBe("allow");
  await filler();
  expect(store.state.tasks.has("t-once")).toBe(false);
  const second = await runTask(store, "t-once", artifact({ nonce: "second-art", now: T0 }), { now: T0 + 1_000 });
  expect(second.decision.verdict).toBe("allow");
  await store.checkpoint();
  const rep = await run();
  expect(rep.divergences).toEqual([{ seq: second.seq, kind: "TASK_REUSED", detail: `task t-once was already allowed at seq ${first.seq}` }]);
});

it("denies do not spend: a nonce denied once and allowed later, a task id denied and then allowed, replay clean", async () => {
  await setup();
  const art = artifact({ nonce: "later", now: T0 });
  // Denied before its claims (a request from the future), so neither the nonce nor the id is spent.
  const denied = await runTask(store, "t-later", art, { now: T0 - 2 * 60_000 });
  expect(denied.decision.verdict).toBe("deny");
  await filler();
  const allowed = await runTask(store, "t-later", art, { now: T0 });
  expect(allowed.decision.verdict).toBe("allow");
  await store.checkpoint();
  expect((await run()).divergences).toEqual([]);
});
