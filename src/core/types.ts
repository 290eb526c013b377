// The contracts of DESIGN §1 and §3: what is signed, what a decision consumes, what it returns.
// Every type here is plain JSON so a decision's input can be recorded and replayed byte for byte.
import type { JsonValue } from "../canonical/jcs.ts";
import type { Signed } from "../crypto/signing.ts";
import type { PolicyDocument } from "../policy/policy-document.ts";

/** Stable denial codes (DESIGN §3). Auditors and scripts match on these strings. */
export const DENIAL_CODES = [
  "MALFORMED",
  "NO_ARTIFACT",
  "BAD_SIGNATURE",
  "UNTRUSTED_ISSUER",
  "EXPIRED",
  "NOT_YET_VALID",
  "POLICY_MISMATCH",
  "IDENTITY_MISMATCH",
  "ENVIRONMENT_MISMATCH",
  "REPLAYED",
  "REVOKED",
  "LINEAGE_BROKEN",
  "GOVERNANCE_UNAVAILABLE",
] as const;
export type DenialCode = (typeof DENIAL_CODES)[number];

export const ARTIFACT_KIND = "failclosed/artifact/v1";
export const REQUEST_KIND = "failclosed/request/v1";
export const LINEAGE_KIND = "failclosed/lineage/v1";
export const REVOCATION_KIND = "failclosed/revocation/v1";
export const HEARTBEAT_KIND = "failclosed/heartbeat/v1";
export const CHECKPOINT_KIND = "failclosed/checkpoint/v1";
export const CONSISTENCY_PROOF_KIND = "failclosed/consistency-proof/v1";
export const POLICY_ACTIVATION_KIND = "failclosed/policy-activation/v1";

/** Numeric bounds on a named request argument; delegation may only tighten them. */
export interface NumericConstraint {
  min?: number;
  max?: number;
}

export interface ArtifactScope {
  /** Action names this artifact authorizes, exactly. */
  actions: string[];
  /** Resource paths; "payments/" or "payments" covers "payments/transfer", never "paymentsx". */
  resources: string[];
  /** Bounds on numeric arguments, by argument name. */
  constraints: Record<string, NumericConstraint>;
}

export interface ArtifactBindings {
  /** Gateway ids allowed to execute; absent means any trusted gateway. */
  gateways?: string[];
  /** base64url SHA-256 of the agent's code, as the gateway measures it. */
  agentCodeDigest?: string;
  /** Named environment attributes that must equal the measured ones (e.g. env=staging). */
  environment?: Record<string, string>;
}

export interface Validity {
  /** Milliseconds since the Unix epoch, inclusive. */
  notBefore: number;
  /** Milliseconds since the Unix epoch, exclusive. */
  expiresAt: number;
}

export interface Attribution {
  /** Who asked (a person, service or agent id). */
  initiator: string;
  onBehalfOf?: string;
  reason: string;
}

export interface ArtifactPayload {
  kind: typeof ARTIFACT_KIND;
  /** keyId of the signer: an authority for a root, the parent's holder for a delegation. */
  issuer: string;
  /** keyId of the agent this artifact authorizes. */
  holder: string;
  scope: ArtifactScope;
  bindings: ArtifactBindings;
  validity: Validity;
  /** Single-use: the nonce is claimed cluster-wide when a task runs on this artifact. */
  nonce: string;
  policy: { id: string; digest: string };
  /** Artifact id of the parent; absent on a root. */
  parent?: string;
  depth: number;
  attribution: Attribution;
  metadata: Record<string, JsonValue>;
}

export interface TaskRequestPayload {
  kind: typeof REQUEST_KIND;
  taskId: string;
  /** keyId of the requesting agent (proof of possession: it signs this). */
  agent: string;
  action: string;
  resource: string;
  /** base64url SHA-256 of JCS(args): the approval binds to the exact arguments. */
  argsDigest: string;
  parentTaskId?: string;
  artifactId: string;
  createdAt: number;
  /**
   * The request's decision deadline: no gateway allows it once its clock reads past this (ms).
   * It lets a submitter that heard no answer know, once the deadline and the clock skew have
   * passed, that the task can no longer be allowed (runtime/client.ts), rather than guess.
   */
  notAfter?: number;
}

/**
 * Execution lineage. `origin` is signed by an authority for a root task; `spawn` by the gateway
 * that was executing the parent task when it spawned the child, naming the parent's allow decision.
 */
export type LineagePayload =
  | {
      kind: typeof LINEAGE_KIND;
      type: "origin";
      signer: string;
      childTaskId: string;
      childArtifactId: string;
      emittedAt: number;
    }
  | {
      kind: typeof LINEAGE_KIND;
      type: "spawn";
      signer: string;
      childTaskId: string;
      childArtifactId: string;
      parentTaskId: string;
      parentArtifactId: string;
      /** Id of the parent's allow decision; the signing gateway attests the parent was executing. */
      parentDecisionId: string;
      gatewayId: string;
      emittedAt: number;
    };

export type RevocationTarget = { type: "artifact"; id: string } | { type: "key"; keyId: string };

export interface RevocationPayload {
  kind: typeof REVOCATION_KIND;
  issuer: string;
  target: RevocationTarget;
  reason: string;
  issuedAt: number;
}

export interface HeartbeatPayload {
  kind: typeof HEARTBEAT_KIND;
  issuer: string;
  seq: number;
  issuedAt: number;
  /**
   * How many distinct targets (artifacts, keys) this authority has revoked and published to the
   * feed so far. A gateway that has seen fewer of its revocations than that is missing some
   * (purged, or diverted to another stream) and denies until they arrive: a heartbeat vouches
   * for the revocations before it, not just for the time. Absent from older authorities.
   */
  revocations?: number;
  /**
   * SHA-256 (base64url) of those targets' names, sorted (governance-feed.ts revokedSetDigest):
   * with the count, a gateway that has seen as many revocations of this authority as it
   * announces, but other ones (one deleted, another of its revocations published in its place),
   * finds they differ and denies too.
   */
  revokedDigest?: string;
  /**
   * The version of the newest policy activation this authority has written to the policy bucket
   * (PolicyActivationPayload.version). A gateway holding an older one (a retired entry put back
   * before it first read the bucket, or a newer one not delivered) withdraws its policy and
   * denies until it reads that version or a later one. Absent from older authorities, and from
   * one that has written none.
   */
  policyVersion?: number;
}

/**
 * An authority's signed word that a policy is the active one (policy/activation.ts). The KV
 * entry carries it beside the document: an entry no trusted authority signed is refused, and so
 * is one whose version is not above the one a gateway holds, so a retired policy put back into
 * the bucket never comes back into force where a newer one was seen.
 */
export interface PolicyActivationPayload {
  kind: typeof POLICY_ACTIVATION_KIND;
  issuer: string;
  /** The document's id (for people; the digest is what binds). */
  policyId: string;
  policyDigest: string;
  /** Above every version activated before it on this bus (1, 2, …; at most MAX_POLICY_VERSION). */
  version: number;
  issuedAt: number;
}

/**
 * A gateway's signed answer to a witness asking how its log of size1 grew into its log of size2
 * (nats/proof-service.ts). Signed with the key that signs its checkpoints, and binding the two
 * roots the proof is for: a witness accuses a gateway only on a proof the gateway itself signed.
 */
export interface ConsistencyProofPayload {
  kind: typeof CONSISTENCY_PROOF_KIND;
  /** The gateway id: the log's origin, as its checkpoints name it. */
  origin: string;
  /** The gateway key that signed this (base64url Ed25519 public key). */
  signer: string;
  size1: number;
  size2: number;
  /** base64url RFC 6962 roots of the log at size1 and at size2. */
  root1: string;
  root2: string;
  /** RFC 9162 §2.1.4 consistency proof from size1 to size2, base64url SHA-256 nodes. */
  proof: string[];
}

export type SignedArtifact = Signed<ArtifactPayload>;
export type SignedRequest = Signed<TaskRequestPayload>;
export type SignedLineage = Signed<LineagePayload>;
export type SignedRevocation = Signed<RevocationPayload>;
export type SignedHeartbeat = Signed<HeartbeatPayload>;
export type SignedConsistencyProof = Signed<ConsistencyProofPayload>;

/** What the gateway trusts at the moment of a decision (a fold of `trust` and `revocation` records). */
export interface TrustSnapshot {
  /** Authority keyIds (base64url Ed25519 public keys) that may sign roots, origins, revocations. */
  authorities: string[];
  /** Gateway keyIds that may sign spawn lineage and checkpoints. */
  gateways: string[];
  revokedArtifacts: string[];
  revokedKeys: string[];
  /** The active policy; null when unknown (→ GOVERNANCE_UNAVAILABLE). */
  policy: { digest: string; document: PolicyDocument } | null;
}

/**
 * A decision input's trust "by reference": the fold of the audit log before the decision's own
 * record (audit/trust-view.ts). `decide` is then given the state itself as a TrustView.
 */
// A type, not an interface, so that it is a JsonValue (recorded as is).
export type TrustFromLog = { readonly source: "log" };

/**
 * What `decide` reads of the trust state: four membership questions and the active policy. The
 * gateway and the auditor answer them from their fold (a live view, or the fold as it stood at a
 * version) instead of copying every revocation into a snapshot per decision, which made a log
 * whose revocations and decisions interleave quadratic to decide and to replay.
 */
export interface TrustView {
  readonly policy: TrustSnapshot["policy"];
  isAuthority(keyId: string): boolean;
  isGateway(keyId: string): boolean;
  isRevokedArtifact(artifactId: string): boolean;
  isRevokedKey(keyId: string): boolean;
}

export interface MeasuredEnvironment {
  gatewayId: string;
  agentCodeDigest: string | null;
  attributes: Record<string, string>;
}

export interface GovernanceHealth {
  busConnected: boolean;
  auditWritable: boolean;
  /** issuedAt of the newest verified authority heartbeat, or null if none yet. */
  revocationFeedAt: number | null;
  /**
   * Revocations that authority heartbeats say were published and this gateway has not seen
   * (HeartbeatPayload.revocations); above 0 → GOVERNANCE_UNAVAILABLE. Absent means 0, as in
   * logs recorded before it existed.
   */
  revocationsMissing?: number;
}

/**
 * The nonce-claim result. `not-attempted` lets the gateway run every other check before it
 * spends a nonce, so a forged request cannot burn someone else's artifact.
 */
export interface NonceState {
  key: string;
  local: "fresh" | "consumed";
  cluster: "claimed" | "taken" | "unavailable" | "not-attempted";
}

/**
 * The task-id claim: a task id names one execution, cluster-wide and across restarts, whatever
 * artifacts are presented for it. `local` is this gateway's log (an allow already recorded for
 * the id, executed or interrupted); `cluster` is the create-only KV claim, made once the
 * nonce's is won and only when everything else passed. Absent in logs recorded before the claim
 * existed, which replay as they were decided.
 */
export interface TaskClaimState {
  taskId: string;
  local: "fresh" | "decided";
  cluster: "claimed" | "taken" | "unavailable" | "not-attempted";
}

export interface DecisionLimits {
  maxSkewMs: number;
  maxDepth: number;
  maxFeedAgeMs: number;
  /** How old a request's createdAt may be. */
  maxRequestAgeMs: number;
}

/** Everything decide() reads. Raw (unvalidated) where it comes off the wire. */
export interface DecisionInput {
  request: unknown;
  args: unknown;
  /** Artifact chain, root first. Empty when none arrived before the evidence deadline. */
  chain: unknown[];
  /** Lineage events, origin first, one per artifact in the chain. */
  lineage: unknown[];
  /** A snapshot (older logs, tests), or the log's own trust, which `decide` must then be given as a TrustView. */
  trust: TrustSnapshot | TrustFromLog;
  environment: MeasuredEnvironment;
  now: number;
  limits: DecisionLimits;
  nonce: NonceState;
  /** Always set by the gateway; optional only so that older recorded logs still replay. */
  taskClaim?: TaskClaimState;
  health: GovernanceHealth;
  /** Problems the gateway met while gathering evidence (oversized or unparseable messages). */
  intakeErrors: string[];
}

/** A DecisionInput that carries its trust snapshot (older logs, tests, tools). */
export type SnapshotDecisionInput = DecisionInput & { trust: TrustSnapshot };

export type CheckName =
  | "schema"
  | "governance"
  | "evidence"
  | "request-signature"
  | "chain-signatures"
  | "lineage-signatures"
  | "issuer"
  | "identity"
  | "validity"
  | "delegation"
  | "lineage"
  | "revocation"
  | "environment"
  | "policy"
  | "task"
  | "nonce";

export interface Check {
  check: CheckName;
  ok: boolean;
  code?: DenialCode;
  detail?: string;
}

export type Verdict = "allow" | "deny";

export interface Decision {
  verdict: Verdict;
  checks: Check[];
  /** The distinct codes of the failed checks, in check order; empty iff allow. */
  reasons: DenialCode[];
}
