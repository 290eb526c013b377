// Regenerates the recorded replay fixtures under test/fixtures/audit/ (deterministic: seeded
// keys, a stepping clock). Run: npx tsx test/audit/make-fixtures.ts
// Regenerate only on purpose: the point of the fixtures is that old logs keep replaying.
//   scenario-v1: decision records copy the whole trust snapshot (the first format; frozen)
//   scenario-v2: decision records refer to the log's trust (src/audit/trust-view.ts)
//   scenario-v3: v2 with the task-id claim in every decision input (DecisionInput.taskClaim)
//   scenario-v4: v3 with the policy activation signed by the authority (policy/activation.ts)
// Pass the version to write: npx tsx test/audit/make-fixtures.ts v4
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { scenarioTrustRoots, writeScenario, type TrustRecording } from "./scenario.ts";
import { memoryHarness, openStore } from "./support.ts";

const dir = fileURLToPath(new URL("../fixtures/audit/", import.meta.url));
const version = process.argv[2] ?? "v4";
const formats: Record<string, { trust: TrustRecording; taskClaims: boolean; signedPolicy?: boolean }> = {
  v1: { trust: "snapshot", taskClaims: false },
  v2: { trust: "reference", taskClaims: false },
  v3: { trust: "reference", taskClaims: true },
  v4: { trust: "reference", taskClaims: true, signedPolicy: true },
};
const format = formats[version];
if (format === undefined) throw new Error(`unknown fixture version ${version}`);
const h = memoryHarness();
const store = await openStore(h, { checkpointEvery: 20 });
await writeScenario(store, 24, undefined, format.trust, format.taskClaims, format.signedPolicy ?? false);
await store.checkpoint();
writeFileSync(`${dir}scenario-${version}.jsonl`, await exportJsonl(store.backend));
writeFileSync(`${dir}scenario-${version}.trust.json`, `${JSON.stringify(scenarioTrustRoots(), null, 2)}\n`);
console.log(`wrote ${store.size} records to ${dir}scenario-${version}.jsonl`);
await store.close();
