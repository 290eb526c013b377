// Making the signed objects of DESIGN §1. These run at the edges (authorities, agents,
// gateways); a caller mistake (a widening delegation, a bad key) is a TypeError/RangeError,
// while verification of what others made happens only in decide().
import { canonicalBytes, type JsonValue } from "../canonical/jcs.ts";
import { toB64u } from "../crypto/base64url.ts";
import { sha256 } from "../crypto/hash.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { contentId, signPayload } from "../crypto/signing.ts";
import { check, signedArtifactSchema } from "./schema.ts";
import { wideningReason } from "./scope.ts";
import {
  ARTIFACT_KIND,
  HEARTBEAT_KIND,
  LINEAGE_KIND,
  REQUEST_KIND,
  REVOCATION_KIND,
  type ArtifactBindings,
  type ArtifactPayload,
  type ArtifactScope,
  type Attribution,
  type RevocationTarget,
  type SignedArtifact,
  type HeartbeatPayload,
  type SignedHeartbeat,
  type SignedLineage,
  type SignedRequest,
  type SignedRevocation,
  type Validity,
} from "./types.ts";

export interface IssueOptions {
  holder: string;
  scope: ArtifactScope;
  bindings?: ArtifactBindings;
  validity: Validity;
  nonce: string;
  policy: { id: string; digest: string };
  attribution: Attribution;
  metadata?: Record<string, JsonValue>;
}

/** Artifact id: SHA-256 of the canonical payload (never of signature bytes). */
export function artifactId(a: SignedArtifact | ArtifactPayload): string {
  return contentId("payload" in a ? a.payload : a);
}

/**
 * An artifact every gateway would refuse as MALFORMED (a nonce that is not 16 to 128 base64url
 * characters, a key id that is not one, an empty scope, a validity that ends before it starts…)
 * is a caller mistake: refused here, with the schema's reason, before anyone relies on it.
 */
function checkedArtifact(where: string, a: SignedArtifact): SignedArtifact {
  const c = check(signedArtifactSchema, a);
  if (!c.ok) throw new TypeError(`${where}: gateways would refuse this artifact as MALFORMED (${c.error})`);
  return a;
}

/**
 * A root artifact, signed by a policy authority. Throws TypeError for one every gateway would
 * refuse as MALFORMED (see the artifact schema, core/schema.ts).
 */
export function issueArtifact(authority: KeyPair, o: IssueOptions): SignedArtifact {
  const payload: ArtifactPayload = {
    kind: ARTIFACT_KIND,
    issuer: authority.keyId,
    holder: o.holder,
    scope: o.scope,
    bindings: o.bindings ?? {},
    validity: o.validity,
    nonce: o.nonce,
    policy: o.policy,
    depth: 0,
    attribution: o.attribution,
    metadata: o.metadata ?? {},
  };
  return checkedArtifact("issueArtifact", signPayload("artifact", payload, authority));
}

/**
 * A delegation's terms. `bindings` and `validity` default to the parent's (the same restriction
 * and window: never a widening); give them to narrow further. The policy is always the parent's.
 */
export type DelegateOptions = Omit<IssueOptions, "policy" | "validity"> & { validity?: Validity };

/**
 * A delegated artifact, signed by the holder of `parent`. Refuses (TypeError) to make one that
 * widens its parent, or that every gateway would refuse as MALFORMED: the verifier would deny it
 * anyway, and failing here tells the caller why.
 */
export function delegateArtifact(parent: SignedArtifact, holderKey: KeyPair, o: DelegateOptions): SignedArtifact {
  if (holderKey.keyId !== parent.payload.holder) throw new TypeError("delegate: signer is not the parent's holder");
  const payload: ArtifactPayload = {
    kind: ARTIFACT_KIND,
    issuer: holderKey.keyId,
    holder: o.holder,
    scope: o.scope,
    bindings: o.bindings ?? parent.payload.bindings,
    validity: o.validity ?? parent.payload.validity,
    nonce: o.nonce,
    policy: parent.payload.policy,
    parent: artifactId(parent),
    depth: parent.payload.depth + 1,
    attribution: o.attribution,
    metadata: o.metadata ?? {},
  };
  const why = wideningReason(parent.payload, payload);
  if (why !== undefined) throw new TypeError(`delegate: ${why}`);
  return checkedArtifact("delegate", signPayload("artifact", payload, holderKey));
}

/** base64url SHA-256 of JCS(args): binds an approval to the exact arguments. */
export function argsDigest(args: JsonValue): string {
  return toB64u(sha256(canonicalBytes(args)));
}

export interface RequestOptions {
  taskId: string;
  action: string;
  resource: string;
  args: JsonValue;
  artifact: SignedArtifact;
  parentTaskId?: string;
  createdAt: number;
  /** The decision deadline (TaskRequestPayload.notAfter). */
  notAfter?: number;
}

export function signRequest(agent: KeyPair, o: RequestOptions): SignedRequest {
  return signPayload(
    "request",
    {
      kind: REQUEST_KIND,
      taskId: o.taskId,
      agent: agent.keyId,
      action: o.action,
      resource: o.resource,
      argsDigest: argsDigest(o.args),
      ...(o.parentTaskId !== undefined ? { parentTaskId: o.parentTaskId } : {}),
      artifactId: artifactId(o.artifact),
      createdAt: o.createdAt,
      ...(o.notAfter !== undefined ? { notAfter: o.notAfter } : {}),
    },
    agent,
  );
}

export function revoke(authority: KeyPair, target: RevocationTarget, reason: string, issuedAt: number): SignedRevocation {
  return signPayload("revocation", { kind: REVOCATION_KIND, issuer: authority.keyId, target, reason, issuedAt }, authority);
}

/** `extra`: see HeartbeatPayload.revocations and .revokedDigest (each left out when undefined). */
export function heartbeat(authority: KeyPair, seq: number, issuedAt: number, extra: Pick<HeartbeatPayload, "revocations" | "revokedDigest" | "policyVersion"> = {}): SignedHeartbeat {
  const { revocations, revokedDigest, policyVersion } = extra;
  return signPayload(
    "heartbeat",
    {
      kind: HEARTBEAT_KIND,
      issuer: authority.keyId,
      seq,
      issuedAt,
      ...(revocations === undefined ? {} : { revocations }),
      ...(revokedDigest === undefined ? {} : { revokedDigest }),
      ...(policyVersion === undefined ? {} : { policyVersion }),
    },
    authority,
  );
}

/** Origin lineage for a root task: the authority vouches that this task starts a lineage. */
export function originLineage(authority: KeyPair, o: { childTaskId: string; childArtifact: SignedArtifact; emittedAt: number }): SignedLineage {
  return signPayload(
    "lineage",
    {
      kind: LINEAGE_KIND,
      type: "origin",
      signer: authority.keyId,
      childTaskId: o.childTaskId,
      childArtifactId: artifactId(o.childArtifact),
      emittedAt: o.emittedAt,
    },
    authority,
  );
}

/** Spawn lineage: signed by the gateway executing the parent task, naming its allow decision. */
export function spawnLineage(
  gateway: KeyPair,
  o: {
    gatewayId: string;
    childTaskId: string;
    childArtifact: SignedArtifact;
    parentTaskId: string;
    parentArtifactId: string;
    parentDecisionId: string;
    emittedAt: number;
  },
): SignedLineage {
  return signPayload(
    "lineage",
    {
      kind: LINEAGE_KIND,
      type: "spawn",
      signer: gateway.keyId,
      childTaskId: o.childTaskId,
      childArtifactId: artifactId(o.childArtifact),
      parentTaskId: o.parentTaskId,
      parentArtifactId: o.parentArtifactId,
      parentDecisionId: o.parentDecisionId,
      gatewayId: o.gatewayId,
      emittedAt: o.emittedAt,
    },
    gateway,
  );
}
