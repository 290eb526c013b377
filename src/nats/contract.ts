// The wire contract of DESIGN §6. Agents in other languages, witnesses and auditors rely on
// these names: change them only with a version bump.
import { canonicalBytes } from "../canonical/jcs.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { toB64u } from "../crypto/base64url.ts";
import { sha256 } from "../crypto/hash.ts";

export const SUBJECT_PREFIX = "failclosed";

export const SUBJECTS = {
  taskSubmit: "failclosed.task.submit",
  evidenceAll: "failclosed.evidence.>",
  artifact: (taskId: string) => `failclosed.evidence.${taskId}.artifact`,
  lineage: (taskId: string) => `failclosed.evidence.${taskId}.lineage`,
  revocation: "failclosed.gov.revocation",
  heartbeat: "failclosed.gov.heartbeat",
  decision: (taskId: string) => `failclosed.decision.${taskId}`,
  outcome: (taskId: string) => `failclosed.outcome.${taskId}`,
  checkpoint: (gatewayId: string) => `failclosed.audit.checkpoint.${gatewayId}`,
  /**
   * Consistency proofs between two sizes of a gateway's audit log, core NATS request/reply
   * (nats/proof-service.ts). An addition to DESIGN §6's table: nothing above it changed.
   */
  proof: (gatewayId: string) => `failclosed.audit.proof.${gatewayId}`,
  /**
   * A policy activation an authority process just wrote to the bucket, signed, on core NATS,
   * addressed to the other processes holding that key (and its peers): the bucket's entry and its
   * history can be rewound by whoever has rights on it, a message in flight cannot. Another
   * addition to DESIGN §6's table.
   */
  policyActivation: (authorityKeyId: string) => `failclosed.authority.policy.${authorityKeyId}`,
  policyActivationAll: "failclosed.authority.policy.*",
} as const;

export const STREAMS = {
  tasks: "FAILCLOSED_TASKS",
  evidence: "FAILCLOSED_EVIDENCE",
  gov: "FAILCLOSED_GOV",
  checkpoints: "FAILCLOSED_CHECKPOINTS",
} as const;

/** The one durable pull consumer all gateways share on the task work queue. */
export const TASK_CONSUMER = "failclosed-gateways";

export const KV_BUCKETS = {
  policy: "failclosed_policy",
  nonces: "failclosed_nonces",
} as const;

export const POLICY_KEY = "active";

/**
 * The task-id claim's key in the nonce bucket (create-only, like a nonce's): one execution per
 * task id cluster-wide. Nonces are base64url, with no '.', so they never collide with these.
 */
export const taskClaimKey = (taskId: string): string => `task.${taskId}`;

/**
 * A task-id claim whose `outcome` is this was made by a deny, to spend the task id: no gateway
 * ran the submission it names, and none will (gateway.ts #copyMark).
 */
export const DENIED_CLAIM_MARK = "denied";

/**
 * A task-id claim whose `outcome` is this was made by denies that could not spend the task id:
 * requests anyone could make for it (no artifact by the evidence deadline, another key than the
 * holder's, an untrusted chain, a broken lineage). It names the submissions so denied
 * (`submissionIds`, at most MAX_DENIED_COPIES): none of those runs, since a copy of one finds it
 * here; any other submission for the task id takes the key over (compare-and-set on its
 * revision), so no one can spend another holder's task id this way (gateway.ts #spendTaskId).
 */
export const DENIED_COPIES_MARK = "denied-copies";

/** How many submissions one denied-copies claim names; a deny that finds it full is left for its client to settle. */
export const MAX_DENIED_COPIES = 16;

/** What a task-id claim says, read from the bucket's bytes (anyone who may write there could have put them). */
export type TaskClaimValue =
  | { readonly kind: "held"; readonly submissionId: string | undefined }
  | { readonly kind: "denied"; readonly submissionId: string | undefined }
  | { readonly kind: "denied-copies"; readonly submissionIds: readonly string[] };

/**
 * Parses a claim's value (a task id's or a nonce's: nonces only ever hold "held"). Undefined when
 * it is not one: a caller takes that as unreadable, never as free.
 */
export function parseTaskClaim(bytes: Uint8Array): TaskClaimValue | undefined {
  const v = tryParseStrict(bytes, { maxBytes: 4_096 });
  if (!v.ok || typeof v.value !== "object" || v.value === null || Array.isArray(v.value)) return undefined;
  const o = v.value;
  const sid = typeof o["submissionId"] === "string" ? o["submissionId"] : undefined;
  if (o["outcome"] === DENIED_CLAIM_MARK) return { kind: "denied", submissionId: sid };
  if (o["outcome"] === DENIED_COPIES_MARK) {
    const ids = o["submissionIds"];
    if (!Array.isArray(ids) || ids.length > MAX_DENIED_COPIES || !ids.every((x): x is string => typeof x === "string")) return undefined;
    return { kind: "denied-copies", submissionIds: ids };
  }
  return { kind: "held", submissionId: sid };
}

/**
 * A submission's fingerprint: base64url SHA-256 of the RFC 8785 form of the submit message
 * `{request, args}` (signature included). Gateways put it on the decision and outcome they
 * publish for it, so a client can tell its own submission's outcome from one for another
 * submission naming the same task id. Undefined for a value that is not I-JSON.
 */
export function submissionIdOf(submit: unknown): string | undefined {
  try {
    return toB64u(sha256(canonicalBytes(submit)));
  } catch {
    return undefined;
  }
}

/** Largest message any failclosed subject accepts; bigger is MALFORMED (and the server caps too). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

/** Task ids are subject tokens: no '.', '*', '>' or whitespace (DESIGN §6). */
export const TASK_ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

/** The task id named by an evidence subject, or undefined when the subject is not one. */
export function parseEvidenceSubject(subject: string): { taskId: string; kind: "artifact" | "lineage" } | undefined {
  const parts = subject.split(".");
  if (parts.length !== 4 || parts[0] !== "failclosed" || parts[1] !== "evidence") return undefined;
  const taskId = parts[2] ?? "";
  const kind = parts[3];
  if (!TASK_ID_RE.test(taskId) || (kind !== "artifact" && kind !== "lineage")) return undefined;
  return { taskId, kind };
}
