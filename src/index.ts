// The package's one public entry (package.json "exports"). Named re-exports only: what is not
// listed here is internal and may change without notice. The testkit is deliberately absent.

// Runtime API: connect, spawn governed tasks, delegate; authorities; the submitting client.
export { Runtime, newTaskId, newChildTaskId, type ConnectOptions, type SpawnRequest } from "./runtime/runtime.ts";
export { Authority, PolicyBucketUnreadable, type GrantOptions } from "./runtime/authority.ts";
export { BusSetupError } from "./nats/setup.ts";
export { submitTask, awaitOutcome, type AwaitOptions, type Submission } from "./runtime/client.ts";
export { systemClock, skewedClock, type Clock } from "./runtime/clock.ts";

// The execution gateway and what it reports.
export { Gateway, DEFAULT_LIMITS, type ActionContext, type ActionHandler, type ChildTask, type GatewayOptions, type SpawnedChild } from "./gateway/gateway.ts";
export type { TaskOutcome, DecisionMessage } from "./gateway/outcome.ts";
export { SpawnRefusedError, TaskRevokedError, type SpawnRefusal } from "./gateway/spawn-error.ts";
export {
  taskMachine,
  isValidAllow,
  TASK_ACTORS,
  TASK_STATES,
  TASK_MACHINE_ID,
  type TaskMachineInput,
  type TaskMachineOutput,
  type TaskContext,
  type TaskEvent,
  type TaskTag,
  type TaskFlag,
  type TaskActorName,
  type TaskStateName,
  type Evidence,
  type VerifyResult,
  type CommitResult,
  type ExecutionResult,
  type DenialInfo,
} from "./gateway/task-machine.ts";

// Signed objects: artifacts, delegation, requests, lineage, revocations.
export {
  issueArtifact,
  delegateArtifact,
  signRequest,
  revoke,
  heartbeat,
  originLineage,
  spawnLineage,
  artifactId,
  argsDigest,
  type IssueOptions,
  type DelegateOptions,
  type RequestOptions,
} from "./core/artifacts.ts";

// Child task ids: in their parent's namespace, the only ones a gateway signs a spawn lineage for.
export { childTaskId, isChildTaskIdOf, hasChildTaskIdForm, CHILD_TASK_DOMAIN, CHILD_TASK_PREFIX_LENGTH, MAX_CHILD_LABEL_LENGTH } from "./core/child-task-id.ts";

// The pure decision and its contract types.
export { decide, clearSignatureMemo, signatureMemoStats, type PolicyEvaluator } from "./core/decide.ts";
export type { SignatureMemoStats } from "./core/signature-memo.ts";
export { scopeAllows, resourceCovers, wideningReason, constraintViolation } from "./core/scope.ts";
export {
  DENIAL_CODES,
  ARTIFACT_KIND,
  REQUEST_KIND,
  LINEAGE_KIND,
  REVOCATION_KIND,
  HEARTBEAT_KIND,
  CHECKPOINT_KIND,
  CONSISTENCY_PROOF_KIND,
  type DenialCode,
  type Decision,
  type DecisionInput,
  type DecisionLimits,
  type Check,
  type CheckName,
  type Verdict,
  type ArtifactScope,
  type ArtifactBindings,
  type ArtifactPayload,
  type NumericConstraint,
  type Validity,
  type Attribution,
  type TaskRequestPayload,
  type LineagePayload,
  type RevocationTarget,
  type RevocationPayload,
  type HeartbeatPayload,
  type ConsistencyProofPayload,
  type SignedConsistencyProof,
  type SignedArtifact,
  type SignedRequest,
  type SignedLineage,
  type SignedRevocation,
  type SignedHeartbeat,
  type TrustSnapshot,
  type TrustFromLog,
  type TrustView,
  type SnapshotDecisionInput,
  type MeasuredEnvironment,
  type GovernanceHealth,
  type NonceState,
  type TaskClaimState,
} from "./core/types.ts";
export { TrustStore, TrustStoreError, assertAcceptableKey, type TrustStoreErrorCode, type TrustRole, type TrustEvent } from "./core/trust-store.ts";

// Keys, signatures, canonical JSON.
export { keyPairFromSeed, generateKeyPair, type KeyPair } from "./crypto/keys.ts";
export { verifyEd25519, checkPublicKey, type PublicKeyProblem } from "./crypto/ed25519.ts";
export { signPayload, verifySigned, contentId, DOMAIN_TAGS, type Signed, type SignedKind } from "./crypto/signing.ts";
export { canonicalize, canonicalBytes, type JsonValue, type JsonObject } from "./canonical/jcs.ts";
export { parseStrict, tryParseStrict, type ParseResult, type StrictParseOptions } from "./canonical/strict-parse.ts";
export { CanonicalError, type CanonicalErrorCode } from "./canonical/errors.ts";

// Policy.
export { PolicyEngine, type PolicyRequest, type PolicyEvaluation, type PolicyErrorCode, type PolicyEngineOptions } from "./policy/cedar.ts";
export { policyDigest, isPolicyDocument, POLICY_DOCUMENT_KIND, type PolicyDocument } from "./policy/policy-document.ts";
export { DEFAULT_POLICY } from "./policy/default-policy.ts";

// Audit log: the store, its backends, the fold and the auditor's replay.
export { AuditStore, AuditStoreError, type AuditStoreErrorCode, type AuditStoreOptions, type AppendReceipt, type InclusionProofJson } from "./audit/store.ts";
export { LevelBackend, MemoryBackend, BackendError, type AuditBackend } from "./audit/backend.ts";
export { fold, applyRecord, emptyState, FOLD_WINDOW, type AuditState, type TaskState, type TaskStatus } from "./audit/fold.ts";
export { replay, type ReplayReport, type ReplayOptions, type TrustRoots, type Divergence, type DivergenceKind } from "./audit/replay.ts";
export { backendLogSource, jsonlLogSource, exportJsonl, type AuditLogSource } from "./audit/log-source.ts";
export { buildProofBundle, verifyProofBundle, type ProofBundle, type BundleCheck } from "./audit/proof-bundle.ts";
export type { AuditEntry, AuditRecord, CheckpointPayload, RecordType, TrustChange } from "./audit/records.ts";

// The NATS wire contract (DESIGN §6): agents and witnesses written against the bus use these names.
export { SUBJECTS, STREAMS, KV_BUCKETS, POLICY_KEY, TASK_CONSUMER, TASK_ID_RE, MAX_MESSAGE_BYTES, DENIED_CLAIM_MARK, DENIED_COPIES_MARK, MAX_DENIED_COPIES, parseTaskClaim, type TaskClaimValue, submissionIdOf, taskClaimKey } from "./nats/contract.ts";

// Infrastructure: a real nats-server for local runs and tests.
export { startNatsServer, natsServerAvailable, NatsServerNotFoundError, NatsServerStartError, type NatsServerHandle } from "./infra/nats-launcher.ts";
