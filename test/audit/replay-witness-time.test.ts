// CLOCK_BACKWARDS holds allows to the times checkpoints signed, in the log or held by a witness.
// replay.ts applies a witness's time at the top of the loop for record `size` only when its
// origin is expectedOrigin(): without an origin in the trust roots (the CLI's --gateway-key +
// --authority, the README's own example) that is unknown until the log's first checkpoint record,
// which sits at that very seq and is processed after. So the witness's copy of the log's FIRST
// checkpoint never counts: lowering its time in the log and re-signing it goes unseen.
// (Found by review, session 11. Now a witness's times met before the origin is known wait for it.)
import { afterEach, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import type { AuditRecord, CheckpointPayload } from "../../src/audit/records.ts";
import { replay, type TrustRoots } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { scenarioTrustRoots, writeTrustSetup } from "../audit/scenario.ts";
import { HOUR, T0, artifact, runTask } from "../audit/operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, memoryHarness, openStore } from "../audit/support.ts";
import { readRecords, writeForgedLog } from "../audit/tamper.ts";

let store: AuditStore;
afterEach(async () => {
  await store.close();
});

it("the first checkpoint's time lowered and re-signed in the log is caught through the witness's copy when the origin is not pinned (CLI --gateway-key/--authority)", async () => {
  const published: Signed<CheckpointPayload>[] = [];
  let clockNow = T0 + 2 * HOUR;
  store = await openStore(memoryHarness(), { checkpointEvery: 0, origin: "gw-test", clock: () => clockNow, onCheckpoint: (cp) => void published.push(cp) });
  await writeTrustSetup(store, true);
  const cp = (await store.checkpoint())!; // signed at T0 + 2h; a witness holds it
  clockNow = T0; // the operator turns its clock back two hours
  const { decision, seq } = await runTask(store, "t-rewound", artifact({ nonce: "rewound", now: T0 }), { now: T0 }); // expired at T0 + 1h
  expect(decision.verdict).toBe("allow");
  // ...and rewrites its log: the first checkpoint signs T0 (same size and root, re-signed).
  const records = await readRecords(store.backend);
  const at = records.findIndex((r) => r.type === "checkpoint" && r.checkpoint.payload.size === cp.payload.size);
  const lowered = { ...records[at]!, checkpoint: signPayload("checkpoint", { ...cp.payload, time: T0 }, GATEWAY_KEY) } as AuditRecord;
  await writeForgedLog(store.backend, records.map((r, i) => (i === at ? lowered : r)), GATEWAY_KEY);
  const found = async (roots: TrustRoots): Promise<string[]> => (await replay(backendLogSource(store.backend), roots, { checkpoints: published })).divergences.map((d) => `${d.seq}:${d.kind}`);
  // With the origin pinned, the witness's copy catches it (test/audit/replay-clock.test.ts):
  expect(await found(scenarioTrustRoots())).toEqual([`${seq}:CLOCK_BACKWARDS`]);
  // What `audit replay --gateway-key K --authority A --checkpoints witness.json` builds:
  expect(await found({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], peerGateways: [] })).toEqual([`${seq}:CLOCK_BACKWARDS`]);
});
