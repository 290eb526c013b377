// A small gateway simulation that writes realistic audit logs: trust setup, evidence, real
// decide() decisions over state taken from the store's fold, outcomes, revocations and
// replayed artifacts. Used by the replay tests, the fixtures and the benchmark.
import type { JsonValue } from "../../src/canonical/jcs.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { taskDecided } from "../../src/audit/fold.ts";
import type { TrustRoots } from "../../src/audit/replay.ts";
import { issueArtifact, originLineage, revoke, signRequest, artifactId } from "../../src/core/artifacts.ts";
import { decide } from "../../src/core/decide.ts";
import type { Decision, DecisionInput, SignedArtifact } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { TRUST_FROM_LOG, liveTrustView } from "../../src/audit/trust-view.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { signActivation } from "../../src/policy/activation.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, seededKey } from "./support.ts";

export const AGENT_KEY = seededKey(21);
export const POLICY_DIGEST = policyDigest(DEFAULT_POLICY);
export const GATEWAY_ID = "gw-test";

export const scenarioTrustRoots = (): TrustRoots => ({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], origin: GATEWAY_ID });

/** `signedPolicy`: the policy activation carries the authority's signature (as gateways write it since v4). */
export async function writeTrustSetup(store: AuditStore, signedPolicy = false): Promise<void> {
  await store.append({ type: "trust", change: { op: "authority.add", keyId: AUTHORITY_KEY.keyId } });
  await store.append({ type: "trust", change: { op: "gateway.add", keyId: GATEWAY_KEY.keyId } });
  const activation = signedPolicy ? { activation: signActivation(AUTHORITY_KEY, DEFAULT_POLICY, 1_700_000_000_000, 1_700_000_000_000) } : {};
  await store.append({ type: "trust", change: { op: "policy.activate", policyDigest: POLICY_DIGEST, document: DEFAULT_POLICY as unknown as JsonValue, ...activation } });
}

export function makeArtifact(i: number, now: number, agent: KeyPair = AGENT_KEY): SignedArtifact {
  return issueArtifact(AUTHORITY_KEY, {
    holder: agent.keyId,
    scope: { actions: ["read"], resources: ["docs/"], constraints: {} },
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: `nonce-${String(i).padStart(10, "0")}`,
    policy: { id: DEFAULT_POLICY.id, digest: POLICY_DIGEST },
    attribution: { initiator: "alice", reason: "audit test" },
  });
}

/**
 * The DecisionInput the gateway would build from the store's folded state. `trust`: a full
 * snapshot (older logs), or by reference to the log, decided on the store's live fold as the
 * gateway does (liveTrustView).
 */
export function buildInput(store: AuditStore, taskId: string, artifact: SignedArtifact, now: number, taskClaims = true, trust: TrustRecording = "snapshot"): DecisionInput {
  const args = { path: `docs/${taskId}` };
  const request = signRequest(AGENT_KEY, { taskId, action: "read", resource: `docs/${taskId}`, args, artifact, createdAt: now - 10 });
  const lineage = originLineage(AUTHORITY_KEY, { childTaskId: taskId, childArtifact: artifact, emittedAt: now - 20 });
  const s = store.state;
  const spent = s.consumedNonces.has(artifact.payload.nonce);
  return {
    request,
    args,
    chain: [artifact],
    lineage: [lineage],
    trust:
      trust === "reference"
        ? TRUST_FROM_LOG
        : {
            authorities: [...s.authorities],
            gateways: [...s.gateways],
            revokedArtifacts: [...s.revokedArtifacts],
            revokedKeys: [...s.revokedKeys],
            policy: s.policy === undefined ? null : { digest: s.policy.digest, document: s.policy.document as unknown as typeof DEFAULT_POLICY },
          },
    environment: { gatewayId: GATEWAY_ID, agentCodeDigest: null, attributes: {} },
    now,
    limits: { maxSkewMs: 30_000, maxDepth: 4, maxFeedAgeMs: 60_000, maxRequestAgeMs: 60_000 },
    nonce: { key: artifact.payload.nonce, local: spent ? "consumed" : "fresh", cluster: spent ? "taken" : "claimed" },
    // Every task id here is new, so the gateway's create-only claim of it wins whenever it is
    // made: once the nonce is won (a spent nonce leaves it unattempted).
    ...(taskClaims ? { taskClaim: { taskId, local: taskDecided(s, taskId) ? "decided" : "fresh", cluster: spent ? "not-attempted" : "claimed" } as const } : {}),
    health: { busConnected: true, auditWritable: true, revocationFeedAt: now - 1_000 },
    intakeErrors: [],
  };
}

/**
 * How decision records carry their trust snapshot: by reference to the log (what the gateway
 * writes now) or copied in full (the format of older logs, e.g. fixture scenario-v1).
 */
export type TrustRecording = "reference" | "snapshot";

/** Record evidence, then the decision, then (for an allow) the outcome — as a gateway does. */
export async function runTask(store: AuditStore, taskId: string, artifact: SignedArtifact, now: number, trust: TrustRecording = "reference", taskClaims = true): Promise<{ decision: Decision; seq: number }> {
  const input = buildInput(store, taskId, artifact, now, taskClaims, trust);
  await Promise.all([
    store.append({ type: "evidence", taskId, kind: "request", signed: input.request as never }),
    store.append({ type: "evidence", taskId, kind: "artifact", signed: artifact as never }),
    store.append({ type: "evidence", taskId, kind: "lineage", signed: input.lineage[0] as never }),
  ]);
  const decision = trust === "reference" ? decide(input, undefined, liveTrustView(() => store.state)) : decide(input);
  const recorded = input as unknown as JsonValue;
  const r = await store.append({ type: "decision", taskId, input: recorded, decision });
  if (decision.verdict === "allow") await store.append({ type: "outcome", taskId, status: "succeeded", resultDigest: `res-${taskId}` });
  return { decision, seq: r.seq };
}

/**
 * `tasks` tasks; every 7th reuses the previous artifact (→ REPLAYED), every 11th artifact is
 * revoked before use (→ REVOKED). Returns the verdicts in order.
 */
export async function writeScenario(store: AuditStore, tasks: number, now = 1_700_000_000_000, trust: TrustRecording = "reference", taskClaims = true, signedPolicy = false): Promise<Decision["verdict"][]> {
  await writeTrustSetup(store, signedPolicy);
  const verdicts: Decision["verdict"][] = [];
  let last: SignedArtifact | undefined;
  for (let i = 0; i < tasks; i++) {
    const artifact = i % 7 === 6 && last !== undefined ? last : makeArtifact(i, now);
    if (i % 11 === 10) await store.append({ type: "revocation", revocation: revoke(AUTHORITY_KEY, { type: "artifact", id: artifactId(artifact) }, "test", now) });
    const { decision } = await runTask(store, `task-${i}`, artifact, now + i, trust, taskClaims);
    verdicts.push(decision.verdict);
    last = artifact;
  }
  return verdicts;
}
