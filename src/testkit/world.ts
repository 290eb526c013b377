// A small, deterministic world of keys, a policy, artifact chains, lineage and requests, for
// tests, benchmarks and scenarios. Seeds are derived from names, so runs are reproducible.
import { createHash } from "node:crypto";
import type { JsonValue } from "../canonical/jcs.ts";
import { keyPairFromSeed, type KeyPair } from "../crypto/keys.ts";
import { artifactId, delegateArtifact, issueArtifact, originLineage, signRequest, spawnLineage } from "../core/artifacts.ts";
import type { ArtifactBindings, ArtifactScope, SnapshotDecisionInput, SignedArtifact, SignedLineage, SignedRequest } from "../core/types.ts";
import { DEFAULT_POLICY } from "../policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../policy/policy-document.ts";

export function namedKey(name: string): KeyPair {
  return keyPairFromSeed(new Uint8Array(createHash("sha256").update(`failclosed-test-key:${name}`).digest()));
}

export function namedNonce(name: string): string {
  return createHash("sha256").update(`nonce:${name}`).digest("base64url");
}

export const T0 = 1_800_000_000_000; // a fixed instant: 2027-01-15
export const HOUR = 3_600_000;

export interface World {
  authority: KeyPair;
  gateway: KeyPair;
  gatewayId: string;
  agents: KeyPair[];
  policy: PolicyDocument;
  policyDigest: string;
}

export function makeWorld(opts: { agents?: number; policy?: PolicyDocument } = {}): World {
  const policy = opts.policy ?? DEFAULT_POLICY;
  return {
    authority: namedKey("authority"),
    gateway: namedKey("gateway-1"),
    gatewayId: "gw-1",
    agents: Array.from({ length: (opts.agents ?? 4) + 1 }, (_, i) => namedKey(`agent-${i}`)),
    policy,
    policyDigest: policyDigest(policy),
  };
}

export interface ChainOptions {
  depth: number;
  scope?: ArtifactScope;
  bindings?: ArtifactBindings;
  validity?: { notBefore: number; expiresAt: number };
  tag?: string;
}

export interface Built {
  chain: SignedArtifact[];
  lineage: SignedLineage[];
  taskIds: string[];
  request: SignedRequest;
  args: JsonValue;
  holder: KeyPair;
}

export const DEFAULT_SCOPE: ArtifactScope = {
  actions: ["transfer", "read"],
  resources: ["payments/"],
  constraints: { amount: { max: 5000 } },
};

/** A chain root → … → leaf of `depth` delegations, lineage for each task, and a leaf request. */
export function buildTask(
  w: World,
  o: ChainOptions & { action?: string; resource?: string; args?: JsonValue; createdAt?: number },
): Built {
  const tag = o.tag ?? "t";
  const scope = o.scope ?? DEFAULT_SCOPE;
  const validity = o.validity ?? { notBefore: T0 - HOUR, expiresAt: T0 + HOUR };
  const holders = w.agents;
  const chain: SignedArtifact[] = [];
  const lineage: SignedLineage[] = [];
  const taskIds: string[] = [];
  for (let i = 0; i <= o.depth; i++) {
    const holder = holders[i % holders.length]!;
    const taskId = `${tag}-task-${i}`;
    const common = {
      holder: holder.keyId,
      scope,
      ...(o.bindings ? { bindings: o.bindings } : {}),
      validity,
      nonce: namedNonce(`${tag}-${i}`),
      attribution: { initiator: "alice@example.com", reason: "test" },
    };
    const art =
      i === 0
        ? issueArtifact(w.authority, { ...common, policy: { id: w.policy.id, digest: w.policyDigest } })
        : delegateArtifact(chain[i - 1]!, holders[(i - 1) % holders.length]!, common);
    chain.push(art);
    lineage.push(
      i === 0
        ? originLineage(w.authority, { childTaskId: taskId, childArtifact: art, emittedAt: T0 - 1000 })
        : spawnLineage(w.gateway, {
            gatewayId: w.gatewayId,
            childTaskId: taskId,
            childArtifact: art,
            parentTaskId: taskIds[i - 1]!,
            parentArtifactId: artifactId(chain[i - 1]!),
            parentDecisionId: artifactId(chain[i - 1]!),
            emittedAt: T0 - 1000 + i,
          }),
    );
    taskIds.push(taskId);
  }
  const holder = holders[o.depth % holders.length]!;
  const args: JsonValue = o.args ?? { amount: 100, to: "acct-42" };
  const request = signRequest(holder, {
    taskId: taskIds[o.depth]!,
    action: o.action ?? "transfer",
    resource: o.resource ?? "payments/transfer",
    args,
    artifact: chain[o.depth]!,
    ...(o.depth > 0 ? { parentTaskId: taskIds[o.depth - 1]! } : {}),
    createdAt: o.createdAt ?? T0 - 10,
  });
  return { chain, lineage, taskIds, request, args, holder };
}

/** A DecisionInput that allows, for the built task, as a healthy gateway would assemble it. */
export function inputFor(w: World, b: Built, now = T0): SnapshotDecisionInput {
  return {
    request: b.request,
    args: b.args,
    chain: b.chain,
    lineage: b.lineage,
    trust: {
      authorities: [w.authority.keyId],
      gateways: [w.gateway.keyId],
      revokedArtifacts: [],
      revokedKeys: [],
      policy: { digest: w.policyDigest, document: w.policy },
    },
    environment: { gatewayId: w.gatewayId, agentCodeDigest: null, attributes: { name: "staging" } },
    now,
    limits: { maxSkewMs: 5_000, maxDepth: 4, maxFeedAgeMs: 30_000, maxRequestAgeMs: 60_000 },
    nonce: { key: b.chain[b.chain.length - 1]!.payload.nonce, local: "fresh", cluster: "claimed" },
    taskClaim: { taskId: b.request.payload.taskId, local: "fresh", cluster: "claimed" },
    health: { busConnected: true, auditWritable: true, revocationFeedAt: now - 1_000 },
    intakeErrors: [],
  };
}
