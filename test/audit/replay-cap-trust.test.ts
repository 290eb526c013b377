// divergences.ts keeps every divergence "at an allow or an execution" and the first 1,000 of
// each other kind. An allow resting on an authority the trust roots do not know re-derives
// perfectly (the fold takes the log's authority.add): its only finding is UNTRUSTED_AUTHORITY at
// the trust record, a kind capped at 1,000. So 1,000 cheap junk authority.add records ahead of
// the rogue one push it (the one every unauthorized execution rests on) out of the report, and
// no divergence anywhere names the allows it let through.
// (Found by review, session 11. Now trust-record findings are always listed.)
import { afterEach, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { KEPT_PER_KIND } from "../../src/audit/divergences.ts";
import { replay } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { scenarioTrustRoots, writeTrustSetup } from "../audit/scenario.ts";
import { T0, artifact, runTask } from "../audit/operator.ts";
import { ROGUE_KEY, memoryHarness, openStore } from "../audit/support.ts";

let store: AuditStore;
afterEach(async () => {
  await store.close();
});

it("a rogue authority the log's allows rest on stays in the report whatever junk precedes it", { timeout: 60_000 }, async () => {
  store = await openStore(memoryHarness(), { checkpointEvery: 1000, origin: "gw-test", maxBatch: 4096 });
  await writeTrustSetup(store, true);
  // Noise: KEPT_PER_KIND authorities nobody uses (same kind: UNTRUSTED_AUTHORITY).
  const junk = [];
  for (let i = 0; i < KEPT_PER_KIND; i++) junk.push(store.append({ type: "trust", change: { op: "authority.add", keyId: `junk-authority-${i}` } }));
  await Promise.all(junk);
  const rogue = await store.append({ type: "trust", change: { op: "authority.add", keyId: ROGUE_KEY.keyId } });
  const r = await runTask(store, "t-rogue", artifact({ nonce: "rogue", now: T0, issuer: ROGUE_KEY }), { now: T0, lineageSigner: ROGUE_KEY });
  expect(r.decision.verdict).toBe("allow"); // executed, on the rogue authority's artifact
  await store.checkpoint();
  const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots());
  expect(rep.ok).toBe(false);
  const listed = rep.divergences.filter((d) => d.seq === rogue.seq || d.seq === r.seq).map((d) => `${d.seq}:${d.kind}`);
  // The finding that explains the execution: at the rogue authority's record, or at the allow.
  expect(listed.length).toBeGreaterThan(0);
});
