// The evidence index takes a whole chain of the deepest depth the schema allows (64) with one
// lineage event per artifact: its per-task cap must not turn a legitimate chain into a deny.
import { expect, it } from "vitest";
import { artifactId, delegateArtifact, issueArtifact, originLineage, spawnLineage } from "../../src/core/artifacts.ts";
import { EvidenceIndex } from "../../src/gateway/evidence-index.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import type { SignedArtifact, SignedLineage } from "../../src/core/types.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

it("a depth-64 chain with its lineage is taken whole", () => {
  const authority = namedKey("authority");
  const agent = namedKey("agent-0");
  const gw = namedKey("gateway-1");
  const validity = { notBefore: 0, expiresAt: 10_000_000 };
  const attribution = { initiator: "t", reason: "deep" };
  const chain: SignedArtifact[] = [issueArtifact(authority, { holder: agent.keyId, scope: DEFAULT_SCOPE, validity, nonce: namedNonce("deep-0"), policy: { id: "p", digest: "A".repeat(43) }, attribution })];
  for (let d = 1; d <= 64; d++) chain.push(delegateArtifact(chain[d - 1]!, agent, { holder: agent.keyId, scope: DEFAULT_SCOPE, validity, nonce: namedNonce(`deep-${d}`), attribution }));
  const tasks = chain.map((_, i) => `task-${i}`);
  const lineage: SignedLineage[] = [originLineage(authority, { childTaskId: tasks[0]!, childArtifact: chain[0]!, emittedAt: 1 })];
  for (let i = 1; i < chain.length; i++) {
    lineage.push(spawnLineage(gw, { gatewayId: "gw-1", childTaskId: tasks[i]!, childArtifact: chain[i]!, parentTaskId: tasks[i - 1]!, parentArtifactId: artifactId(chain[i - 1]!), parentDecisionId: "D".repeat(43), emittedAt: 1 + i }));
  }
  const ix = new EvidenceIndex(() => 0);
  const leafTask = tasks.at(-1)!;
  for (const a of chain) ix.add(SUBJECTS.artifact(leafTask), new TextEncoder().encode(JSON.stringify(a)));
  for (const l of lineage) ix.add(SUBJECTS.lineage(leafTask), new TextEncoder().encode(JSON.stringify(l)));
  const got = ix.assemble(leafTask, artifactId(chain.at(-1)!));
  expect(got.intakeErrors, `chain ${got.chain.length}/${chain.length}, lineage ${got.lineage.length}/${lineage.length}`).toEqual([]);
  expect(got.complete).toBe(true);
  expect(got.chain.length).toBe(65);
});
