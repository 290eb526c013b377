// An artifact's binding to gateways (`bindings.gateways`) is judged by decide() against the
// gateway id the decision records as measured (input.environment.gatewayId), a value the
// gateway writes itself. A gateway's log is one origin, and every honest decision names it
// (gateway.ts #environment: this.id, the store's origin), so replay holds every decision to
// the origin: the trust roots', else the one the log's first trusted checkpoint names. A log
// whose checkpoints name two origins is reported too.
import { afterEach, describe, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import type { AuditRecord } from "../../src/audit/records.ts";
import { replay } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { GATEWAY_ID, scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { T0, artifact, runTask } from "./operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, memoryHarness, openStore } from "./support.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";

describe("replay and the gateway id a decision was measured on", () => {
  let store: AuditStore;
  afterEach(async () => {
    await store.close();
  });

  const build = async (recordedGatewayId: string, checkpointEvery = 4): Promise<{ seq: number; verdict: string }> => {
    store = await openStore(memoryHarness(), { checkpointEvery, origin: GATEWAY_ID });
    await writeTrustSetup(store, true);
    const bound = artifact({ nonce: "bound", now: T0, bindings: { gateways: ["gw-payments"] } });
    const { decision, seq } = await runTask(store, "t-bound", bound, { now: T0, gatewayId: recordedGatewayId });
    await store.checkpoint();
    return { seq, verdict: decision.verdict };
  };

  it("the honest gw-test denies an artifact bound to gw-payments (ENVIRONMENT_MISMATCH), and replay agrees", async () => {
    const { verdict } = await build(GATEWAY_ID);
    expect(verdict).toBe("deny");
    expect((await replay(backendLogSource(store.backend), scenarioTrustRoots())).divergences).toEqual([]);
  });

  it("gw-test's log deciding as gw-payments is GATEWAY_ID_MISMATCH, with the origin pinned", async () => {
    const { seq, verdict } = await build("gw-payments");
    expect(verdict).toBe("allow");
    const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots());
    expect(rep.divergences).toEqual([{ seq, kind: "GATEWAY_ID_MISMATCH", detail: 'decision measured on gateway "gw-payments"; this log is "gw-test"\'s' }]);
  });

  it("without an origin in the trust roots, the log's checkpoints name it: decisions before the first checkpoint are held to it too", async () => {
    const { seq } = await build("gw-payments", 0); // the only checkpoint comes after the decision
    const rep = await replay(backendLogSource(store.backend), { gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId] });
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${seq}:GATEWAY_ID_MISMATCH`]);
  });

  it("a log whose checkpoints name another origin than its first is CHECKPOINT_SIGNATURE at the stray one", async () => {
    await build(GATEWAY_ID);
    const records = await readRecords(store.backend);
    const checkpoints = records.filter((r): r is AuditRecord & { type: "checkpoint" } => r.type === "checkpoint");
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    const stray = checkpoints[1]!;
    const resigned = { ...stray, checkpoint: signPayload("checkpoint", { ...stray.checkpoint.payload, origin: "gw-payments" }, GATEWAY_KEY) };
    await writeForgedLog(store.backend, records.map((r) => (r.seq === stray.seq ? resigned : r)), GATEWAY_KEY);
    const rep = await replay(backendLogSource(store.backend), { gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId] });
    expect(rep.divergences).toEqual([{ seq: stray.seq, kind: "CHECKPOINT_SIGNATURE", detail: "checkpoint names origin gw-payments; this log's checkpoints name gw-test" }]);
  });
});
