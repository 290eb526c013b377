// A delegated (child) task runs on a spawn lineage event: the signed word of the gateway that
// was executing the parent task, naming the parent's allow decision (its leaf hash in that
// gateway's log, gateway.ts #spawnEvent). decide() can only check the signature. When the
// spawn names this very log's gateway, the log says whether it is true: replay requires the
// parent task's allow earlier in this log, with that leaf hash and that leaf artifact, and a
// spawn signed with this log's own key may not name another gateway (SPAWN_UNVERIFIED).
import { afterEach, describe, expect, it } from "vitest";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay, type TrustRoots } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { recordedDecisionInput, trustSnapshotOf } from "../../src/audit/trust-view.ts";
import { artifactId, delegateArtifact, originLineage, signRequest, spawnLineage } from "../../src/core/artifacts.ts";
import { decide } from "../../src/core/decide.ts";
import type { DecisionInput, SignedArtifact } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { AGENT_KEY, GATEWAY_ID, scenarioTrustRoots, writeTrustSetup } from "./scenario.ts";
import { HOUR, T0, artifact, runTask } from "./operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, memoryHarness, openStore, seededKey } from "./support.ts";

const CHILD_AGENT = seededKey(31);
const PEER_KEY = seededKey(32);

interface Spawn {
  signer: KeyPair;
  gatewayId: string;
  parentTaskId: string;
  parentDecisionId: string;
  parentArtifactId: string;
}

describe("replay and spawn attestations", () => {
  let store: AuditStore;
  let parentArt: SignedArtifact;
  let childArt: SignedArtifact;
  afterEach(async () => {
    await store.close();
  });

  const setup = async (): Promise<void> => {
    store = await openStore(memoryHarness(), { checkpointEvery: 4, origin: GATEWAY_ID });
    await writeTrustSetup(store, true);
    // A peer gateway this one trusts for lineage (its key signs none of this log's checkpoints).
    await store.append({ type: "trust", change: { op: "gateway.add", keyId: PEER_KEY.keyId } });
    // The parent's root artifact (held by AGENT_KEY) and a child artifact its holder delegated.
    parentArt = artifact({ nonce: "parent", now: T0, validMs: 2 * HOUR });
    childArt = delegateArtifact(parentArt, AGENT_KEY, {
      holder: CHILD_AGENT.keyId,
      scope: { actions: ["read"], resources: ["docs/"], constraints: {} },
      validity: { notBefore: T0 - 60_000, expiresAt: T0 + HOUR },
      nonce: "child-nonce-000000000",
      attribution: { initiator: "alice", reason: "child" },
    });
  };
  const roots = (): TrustRoots => ({ ...scenarioTrustRoots(), gatewayKeys: [GATEWAY_KEY.keyId, PEER_KEY.keyId], peerGateways: [] });
  const found = async (): Promise<string[]> => (await replay(backendLogSource(store.backend), roots())).divergences.map((d) => `${d.seq}:${d.kind}`);

  /** The parent allowed and executing here: its allow's leaf hash is the decision id a spawn names. */
  const runParent = async (ranOn?: SignedArtifact): Promise<Spawn> => {
    const p = await runTask(store, "t-parent", ranOn ?? parentArt, { now: T0, outcome: false });
    expect(p.decision.verdict).toBe("allow");
    return { signer: GATEWAY_KEY, gatewayId: GATEWAY_ID, parentTaskId: "t-parent", parentDecisionId: p.leafHash, parentArtifactId: artifactId(parentArt) };
  };

  /** The child "t-child" decided on a spawn event as given (evidence, decision, outcome). */
  const runChild = async (s: Spawn): Promise<number> => {
    const now = T0 + 1_000;
    const taskId = "t-child";
    const args = { path: `docs/${taskId}` };
    const request = signRequest(CHILD_AGENT, { taskId, action: "read", resource: `docs/${taskId}`, args, artifact: childArt, parentTaskId: s.parentTaskId, createdAt: now - 10 });
    const lineage = [
      originLineage(AUTHORITY_KEY, { childTaskId: s.parentTaskId, childArtifact: parentArt, emittedAt: now - 500 }),
      spawnLineage(s.signer, { gatewayId: s.gatewayId, childTaskId: taskId, childArtifact: childArt, parentTaskId: s.parentTaskId, parentArtifactId: s.parentArtifactId, parentDecisionId: s.parentDecisionId, emittedAt: now - 100 }),
    ];
    const input: DecisionInput = {
      request,
      args,
      chain: [parentArt, childArt],
      lineage,
      trust: trustSnapshotOf(store.state),
      environment: { gatewayId: GATEWAY_ID, agentCodeDigest: null, attributes: {} },
      now,
      limits: { maxSkewMs: 30_000, maxDepth: 4, maxFeedAgeMs: 60_000, maxRequestAgeMs: 60_000 },
      nonce: { key: childArt.payload.nonce, local: "fresh", cluster: "claimed" },
      taskClaim: { taskId, local: "fresh", cluster: "claimed" },
      health: { busConnected: true, auditWritable: true, revocationFeedAt: now - 1_000 },
      intakeErrors: [],
    };
    for (const [kind, signed] of [["request", request], ["artifact", parentArt], ["artifact", childArt], ["lineage", lineage[0]], ["lineage", lineage[1]]] as const) {
      await store.append({ type: "evidence", taskId, kind, signed: signed as never });
    }
    const decision = decide(input);
    expect(decision.reasons).toEqual([]);
    const { seq } = await store.append({ type: "decision", taskId, input: recordedDecisionInput(input), decision });
    await store.append({ type: "outcome", taskId, status: "succeeded", resultDigest: "r".repeat(43) });
    return seq;
  };

  it("a child spawned by a parent this log allowed, naming that allow and its artifact, replays clean", async () => {
    await setup();
    await runChild(await runParent());
    await store.append({ type: "outcome", taskId: "t-parent", status: "succeeded", resultDigest: "p".repeat(43) });
    await store.checkpoint();
    expect(await found()).toEqual([]);
  });

  it("a child allowed on this gateway's attestation for a parent this log never allowed is SPAWN_UNVERIFIED", async () => {
    await setup();
    // The parent task never ran here; the operator signs "t-parent was executing here" anyway.
    const seq = await runChild({ signer: GATEWAY_KEY, gatewayId: GATEWAY_ID, parentTaskId: "t-parent", parentDecisionId: "A".repeat(43), parentArtifactId: artifactId(parentArt) });
    await store.checkpoint();
    expect(store.state.tasks.has("t-parent")).toBe(false);
    const rep = await replay(backendLogSource(store.backend), roots());
    expect(rep.divergences).toEqual([{ seq, kind: "SPAWN_UNVERIFIED", detail: "lineage[1] (spawn attested by this gateway): parent task t-parent has no earlier allow in this log" }]);
  });

  it("an attestation naming another decision than the parent's allow is SPAWN_UNVERIFIED", async () => {
    await setup();
    const parent = await runParent();
    const seq = await runChild({ ...parent, parentDecisionId: "B".repeat(43) });
    await store.checkpoint();
    expect(await found()).toEqual([`${seq}:SPAWN_UNVERIFIED`]);
  });

  it("an attestation for a parent that ran here on another artifact than the one it names is SPAWN_UNVERIFIED", async () => {
    await setup();
    // The parent ran on a second grant of its holder's; the child's chain (and the spawn) claim the first.
    const parent = await runParent(artifact({ nonce: "parent-other", now: T0, validMs: 2 * HOUR }));
    const seq = await runChild({ ...parent, parentArtifactId: artifactId(parentArt) });
    await store.checkpoint();
    const rep = await replay(backendLogSource(store.backend), roots());
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${seq}:SPAWN_UNVERIFIED`]);
    expect(rep.divergences[0]!.detail).toContain(`names parent artifact ${artifactId(parentArt)}`);
  });

  it("a spawn signed with this log's own key naming another gateway is SPAWN_UNVERIFIED; one signed by a peer's key is that peer's to answer for", async () => {
    await setup();
    const parent = await runParent();
    const seq = await runChild({ ...parent, gatewayId: "gw-elsewhere" });
    await store.checkpoint();
    const rep = await replay(backendLogSource(store.backend), roots());
    expect(rep.divergences).toEqual([{ seq, kind: "SPAWN_UNVERIFIED", detail: 'lineage[1] is signed with this log\'s gateway key but names gateway "gw-elsewhere"' }]);

    await store.close();
    await setup();
    await runChild({ signer: PEER_KEY, gatewayId: "gw-peer", parentTaskId: "t-parent", parentDecisionId: "C".repeat(43), parentArtifactId: artifactId(parentArt) });
    await store.checkpoint();
    expect(await found()).toEqual([]);
  });
});
