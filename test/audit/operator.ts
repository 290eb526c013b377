// The attacker of the auditor: the gateway operator. It holds the gateway key and writes its own
// log through an ordinary AuditStore, so chain, tree and checkpoint signatures are all genuine;
// only what it chooses to record is not.
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { taskDecided } from "../../src/audit/fold.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { recordedDecisionInput, trustSnapshotOf } from "../../src/audit/trust-view.ts";
import { issueArtifact, originLineage, signRequest } from "../../src/core/artifacts.ts";
import { decide } from "../../src/core/decide.ts";
import type { ArtifactBindings, Decision, DecisionInput, SnapshotDecisionInput, SignedArtifact } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { AGENT_KEY, GATEWAY_ID, POLICY_DIGEST } from "./scenario.ts";
import { AUTHORITY_KEY } from "./support.ts";

export const T0 = 1_700_000_000_000;
export const HOUR = 3_600_000;

export function artifact(o: { nonce: string; now: number; issuer?: KeyPair; bindings?: ArtifactBindings; validMs?: number }): SignedArtifact {
  return issueArtifact(o.issuer ?? AUTHORITY_KEY, {
    holder: AGENT_KEY.keyId,
    scope: { actions: ["read"], resources: ["docs/"], constraints: {} },
    ...(o.bindings !== undefined ? { bindings: o.bindings } : {}),
    validity: { notBefore: o.now - 60_000, expiresAt: o.now + (o.validMs ?? HOUR) },
    // Artifact nonces are 16..128 base64url chars (core/schema.ts).
    nonce: `nonce-${o.nonce}`.padEnd(16, "_"), // "_": "n-1" and "n-10" stay apart
    policy: { id: DEFAULT_POLICY.id, digest: POLICY_DIGEST },
    attribution: { initiator: "alice", reason: "review" },
  });
}

export interface TaskOptions {
  /** The clock reading the decision records. */
  now: number;
  /** When the agent signed the request (default: 10 ms before `now`). */
  createdAt?: number;
  /** The request's decision deadline (default: none). */
  notAfter?: number;
  /** Who signs the origin lineage (the root artifact's authority). */
  lineageSigner?: KeyPair;
  gatewayId?: string;
  limits?: DecisionInput["limits"];
  /** Override the nonce claim (default: what an honest gateway would record from the fold, KV won). */
  nonce?: DecisionInput["nonce"];
  /** Write the outcome after an allow (default true). */
  outcome?: boolean;
}

/** The input an honest gateway would build from the store's fold (KV claims won), with the given overrides. */
export function inputFor(store: AuditStore, taskId: string, art: SignedArtifact, o: TaskOptions): SnapshotDecisionInput {
  const args = { path: `docs/${taskId}` };
  const request = signRequest(AGENT_KEY, { taskId, action: "read", resource: `docs/${taskId}`, args, artifact: art, createdAt: o.createdAt ?? o.now - 10, ...(o.notAfter !== undefined ? { notAfter: o.notAfter } : {}) });
  const lineage = originLineage(o.lineageSigner ?? AUTHORITY_KEY, { childTaskId: taskId, childArtifact: art, emittedAt: o.now - 20 });
  const s = store.state;
  const spent = s.consumedNonces.has(art.payload.nonce);
  const nonce = o.nonce ?? { key: art.payload.nonce, local: spent ? "consumed" : "fresh", cluster: spent ? "taken" : "claimed" };
  return {
    request,
    args,
    chain: [art],
    lineage: [lineage],
    trust: trustSnapshotOf(s),
    environment: { gatewayId: o.gatewayId ?? GATEWAY_ID, agentCodeDigest: null, attributes: {} },
    now: o.now,
    limits: o.limits ?? { maxSkewMs: 30_000, maxDepth: 4, maxFeedAgeMs: 60_000, maxRequestAgeMs: 60_000 },
    nonce,
    // The gateway claims the task id only once the nonce is won.
    taskClaim: { taskId, local: taskDecided(s, taskId) ? "decided" : "fresh", cluster: nonce.cluster === "claimed" ? "claimed" : "not-attempted" },
    health: { busConnected: true, auditWritable: true, revocationFeedAt: o.now - 1_000 },
    intakeErrors: [],
  };
}

/** Evidence, decision (decide() on the input, recorded by reference as a gateway does), then the outcome of an allow. */
export async function runTask(store: AuditStore, taskId: string, art: SignedArtifact, o: TaskOptions): Promise<{ decision: Decision; seq: number; leafHash: string }> {
  const input = inputFor(store, taskId, art, o);
  for (const [kind, signed] of [["request", input.request], ["artifact", art], ["lineage", input.lineage[0]]] as const) {
    await store.append({ type: "evidence", taskId, kind, signed: signed as never });
  }
  const decision = decide(input);
  const r = await store.append({ type: "decision", taskId, input: recordedDecisionInput(input), decision });
  if (decision.verdict === "allow" && o.outcome !== false) await store.append({ type: "outcome", taskId, status: "succeeded", resultDigest: `res-${taskId}` });
  return { decision, seq: r.seq, leafHash: r.leafHash };
}

export const asJson = (x: unknown): JsonValue => x as JsonValue;
