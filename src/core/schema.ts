// Runtime schemas for everything that arrives from outside. Strict objects: an unknown key is
// MALFORMED, not ignored, because a field one reader ignores is a field another may honour.
import { z } from "zod";
import type { Signed } from "../crypto/signing.ts";
import {
  ARTIFACT_KIND,
  CONSISTENCY_PROOF_KIND,
  HEARTBEAT_KIND,
  LINEAGE_KIND,
  POLICY_ACTIVATION_KIND,
  REQUEST_KIND,
  REVOCATION_KIND,
  type ArtifactPayload,
  type ConsistencyProofPayload,
  type HeartbeatPayload,
  type LineagePayload,
  type PolicyActivationPayload,
  type RevocationPayload,
  type TaskRequestPayload,
} from "./types.ts";

const MAX_LIST = 64;
/** Policy versions stop well below 2^53: an authority refuses to count past it (activation.ts). */
export const MAX_POLICY_VERSION = 2 ** 48;
const b64u = (len: number) => z.string().regex(/^[A-Za-z0-9_-]+$/).length(len);
export const keyIdSchema = b64u(43); // 32 bytes
export const digestSchema = b64u(43); // SHA-256
const sigSchema = b64u(86); // 64 bytes
/** Subject-safe token (DESIGN §6): no '.', '*', '>' or whitespace; bounded. */
export const taskIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/);
const name = z.string().min(1).max(256);
const time = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = z.string().max(1024);
const jsonMeta = z.record(z.string().max(128), z.unknown()).refine((r) => Object.keys(r).length <= MAX_LIST, "too many keys");

const constraint = z.strictObject({ min: z.number().optional(), max: z.number().optional() });

const artifactPayload = z.strictObject({
  kind: z.literal(ARTIFACT_KIND),
  issuer: keyIdSchema,
  holder: keyIdSchema,
  scope: z.strictObject({
    actions: z.array(name).min(1).max(MAX_LIST),
    resources: z.array(name).min(1).max(MAX_LIST),
    constraints: z.record(name, constraint).refine((r) => Object.keys(r).length <= MAX_LIST, "too many constraints"),
  }),
  bindings: z.strictObject({
    gateways: z.array(name).max(MAX_LIST).optional(),
    agentCodeDigest: digestSchema.optional(),
    environment: z.record(name, z.string().max(256)).optional(),
  }),
  validity: z.strictObject({ notBefore: time, expiresAt: time }),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,128}$/),
  policy: z.strictObject({ id: name, digest: digestSchema }),
  parent: digestSchema.optional(),
  depth: z.number().int().min(0).max(64),
  attribution: z.strictObject({ initiator: name, onBehalfOf: name.optional(), reason: text }),
  metadata: jsonMeta,
});

const requestPayload = z.strictObject({
  kind: z.literal(REQUEST_KIND),
  taskId: taskIdSchema,
  agent: keyIdSchema,
  action: name,
  resource: name,
  argsDigest: digestSchema,
  parentTaskId: taskIdSchema.optional(),
  artifactId: digestSchema,
  createdAt: time,
  notAfter: time.optional(),
});

const lineagePayload = z.discriminatedUnion("type", [
  z.strictObject({
    kind: z.literal(LINEAGE_KIND),
    type: z.literal("origin"),
    signer: keyIdSchema,
    childTaskId: taskIdSchema,
    childArtifactId: digestSchema,
    emittedAt: time,
  }),
  z.strictObject({
    kind: z.literal(LINEAGE_KIND),
    type: z.literal("spawn"),
    signer: keyIdSchema,
    childTaskId: taskIdSchema,
    childArtifactId: digestSchema,
    parentTaskId: taskIdSchema,
    parentArtifactId: digestSchema,
    parentDecisionId: digestSchema,
    gatewayId: name,
    emittedAt: time,
  }),
]);

const revocationPayload = z.strictObject({
  kind: z.literal(REVOCATION_KIND),
  issuer: keyIdSchema,
  target: z.discriminatedUnion("type", [
    z.strictObject({ type: z.literal("artifact"), id: digestSchema }),
    z.strictObject({ type: z.literal("key"), keyId: keyIdSchema }),
  ]),
  reason: text,
  issuedAt: time,
});

const heartbeatPayload = z.strictObject({
  kind: z.literal(HEARTBEAT_KIND),
  issuer: keyIdSchema,
  seq: time,
  issuedAt: time,
  revocations: time.optional(),
  revokedDigest: digestSchema.optional(),
  policyVersion: z.number().int().min(1).max(MAX_POLICY_VERSION).optional(),
});

const policyActivationPayload = z.strictObject({
  kind: z.literal(POLICY_ACTIVATION_KIND),
  issuer: keyIdSchema,
  policyId: z.string().max(256),
  policyDigest: digestSchema,
  version: z.number().int().min(1).max(MAX_POLICY_VERSION),
  issuedAt: time,
});

/** A consistency proof has at most about 2·log2(n) nodes; 128 covers any safe integer size. */
export const MAX_CONSISTENCY_PROOF_NODES = 128;
const treeSize = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const consistencyProofPayload = z.strictObject({
  kind: z.literal(CONSISTENCY_PROOF_KIND),
  origin: taskIdSchema, // a gateway id is a subject token (failclosed.audit.proof.<id>)
  signer: keyIdSchema,
  size1: treeSize,
  size2: treeSize,
  root1: digestSchema,
  root2: digestSchema,
  proof: z.array(digestSchema).max(MAX_CONSISTENCY_PROOF_NODES),
});

const signed = <T extends z.ZodType>(payload: T) => z.strictObject({ payload, sig: sigSchema });

export const signedArtifactSchema = signed(artifactPayload) as unknown as z.ZodType<Signed<ArtifactPayload>>;
export const signedRequestSchema = signed(requestPayload) as unknown as z.ZodType<Signed<TaskRequestPayload>>;
export const signedLineageSchema = signed(lineagePayload);
export const signedRevocationSchema = signed(revocationPayload);
export const signedHeartbeatSchema = signed(heartbeatPayload) as unknown as z.ZodType<Signed<HeartbeatPayload>>;
export const signedConsistencyProofSchema = signed(consistencyProofPayload);
export const signedPolicyActivationSchema = signed(policyActivationPayload);

// The schemas and the hand-written types in types.ts must describe the same shapes.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// (zod types optional keys as `T | undefined`, so the request compares after normalising that;
// the artifact's nested optionals defeat this check, test/core/schema.test.ts covers it instead.)
type Defined<T> = { [K in keyof T]: Exclude<T[K], undefined> };
const _requestMatches: Same<Defined<z.infer<typeof requestPayload>>, TaskRequestPayload> = true;
const _lineageMatches: Same<z.infer<typeof lineagePayload>, LineagePayload> = true;
const _revocationMatches: Same<z.infer<typeof revocationPayload>, RevocationPayload> = true;
const _heartbeatMatches: Same<Defined<z.infer<typeof heartbeatPayload>>, HeartbeatPayload> = true;
const _consistencyProofMatches: Same<z.infer<typeof consistencyProofPayload>, ConsistencyProofPayload> = true;
const _policyActivationMatches: Same<z.infer<typeof policyActivationPayload>, PolicyActivationPayload> = true;
void [_requestMatches, _lineageMatches, _revocationMatches, _heartbeatMatches, _consistencyProofMatches, _policyActivationMatches];

export type SchemaResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function check<T>(schema: z.ZodType<T>, value: unknown): SchemaResult<T> {
  const r = schema.safeParse(value);
  if (r.success) return { ok: true, value: r.data };
  const issue = r.error.issues[0];
  return { ok: false, error: issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "invalid" };
}
