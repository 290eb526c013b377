// Regenerates the recorded replay fixtures under test/fixtures/audit/ (deterministic: seeded
// keys, a stepping clock). Run: npx tsx test/audit/make-fixtures.ts
// Regenerate only on purpose: the point of the fixtures is that old logs keep replaying.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { scenarioTrustRoots, writeScenario } from "./scenario.ts";
import { memoryHarness, openStore } from "./support.ts";

const dir = fileURLToPath(new URL("../fixtures/audit/", import.meta.url));
const h = memoryHarness();
const store = await openStore(h, { checkpointEvery: 20 });
await writeScenario(store, 24);
await store.checkpoint();
writeFileSync(`${dir}scenario-v1.jsonl`, await exportJsonl(store.backend));
writeFileSync(`${dir}scenario-v1.trust.json`, `${JSON.stringify(scenarioTrustRoots(), null, 2)}\n`);
console.log(`wrote ${store.size} records to ${dir}scenario-v1.jsonl`);
await store.close();
