// Task ids that only ever receive evidence the index cannot take in still cost their entry and
// error strings against the byte budget, so they are dropped for space like any other.
import { expect, it } from "vitest";
import { EvidenceIndex } from "../../src/gateway/evidence-index.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";

it("malformed-only evidence for many task ids stays within the byte budget", () => {
  const ix = new EvidenceIndex(() => 0, 10_000);
  const hostile = new TextEncoder().encode(JSON.stringify({ payload: { kind: "failclosed/artifact/v1", scope: { constraints: { ["k".repeat(300)]: { min: 1 } } } }, sig: "x" }));
  for (let i = 0; i < 20_000; i++) for (let j = 0; j < 8; j++) ix.add(SUBJECTS.artifact(`t-${i}`), hostile);
  let held = 0;
  for (let i = 0; i < 20_000; i += 1000) held += ix.assemble(`t-${i}`, "x").intakeErrors.join("").length;
  expect(ix.bytes).toBeLessThanOrEqual(10_000 + 4_000);
  expect(ix.evictedForSpace).toBeGreaterThan(19_000);
  expect(ix.size, `bytes counted ${ix.bytes}, ~${held / 20} error chars held per task, budget 10000`).toBeLessThan(1_000);
});
