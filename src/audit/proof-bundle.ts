// A self-contained inclusion proof that a third party checks with nothing but the gateway's
// public key: the record bytes, an RFC 9162 inclusion path, and the signed checkpoint whose
// root the path leads to.
import { canonicalize } from "../canonical/jcs.ts";
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import type { AuditBackend } from "./backend.ts";
import { readStoredNode, readStoredRecord } from "./entry-bundle.ts";
import { checkpointRange } from "./keys.ts";
import { inclusionProof, verifyInclusion, type NodeLookup } from "./merkle.ts";
import { RECORD_LIMITS, decodeRecord, recordLeafHash, type CheckpointPayload } from "./records.ts";

export interface ProofBundle {
  readonly kind: "failclosed/inclusion-proof/v1";
  readonly seq: number;
  /** The record's canonical JSON, verbatim. */
  readonly record: string;
  readonly leafHash: string;
  /** RFC 9162 §2.1.3 inclusion path, base64url, leaf side first. */
  readonly proof: string[];
  readonly checkpoint: Signed<CheckpointPayload>;
}

export type BundleProblem = "NO_CHECKPOINT" | "NOT_FOUND";

/** The bundle for `seq` against the first checkpoint covering it, or a problem. */
export async function buildProofBundle(backend: AuditBackend, seq: number): Promise<ProofBundle | BundleProblem> {
  const bytes = await readStoredRecord(backend, seq);
  if (bytes === undefined) return "NOT_FOUND";
  for await (const [, v] of backend.iterate({ ...checkpointRange })) {
    const cpSeq = Number(new TextDecoder().decode(v));
    const cpBytes = await readStoredRecord(backend, cpSeq);
    if (cpBytes === undefined) continue;
    const d = decodeRecord(cpBytes);
    if (!d.ok || d.record.type !== "checkpoint" || d.record.checkpoint.payload.size <= seq) continue;
    const cp = d.record.checkpoint;
    const lookup: NodeLookup = (level, index) => readStoredNode((k) => backend.getSync(k), level, index) ?? new Uint8Array(0);
    return {
      kind: "failclosed/inclusion-proof/v1",
      seq,
      record: new TextDecoder().decode(bytes),
      leafHash: toB64u(recordLeafHash(bytes)),
      proof: inclusionProof(seq, cp.payload.size, lookup).map(toB64u),
      checkpoint: cp,
    };
  }
  return "NO_CHECKPOINT";
}

export type BundleCheck = { ok: true } | { ok: false; reason: "MALFORMED" | "CHECKPOINT_SIGNATURE" | "LEAF_MISMATCH" | "PROOF" };

/** Third-party check of a bundle (parsed JSON). Never throws on hostile input. */
export function verifyProofBundle(bundle: unknown, trustedGatewayKeys: readonly string[]): BundleCheck {
  try {
    const b = bundle as ProofBundle;
    if (b.kind !== "failclosed/inclusion-proof/v1" || typeof b.record !== "string" || !Array.isArray(b.proof)) return { ok: false, reason: "MALFORMED" };
    const signed = trustedGatewayKeys.some((k) => {
      const pub = fromB64u(k, 32);
      return pub !== undefined && verifySigned("checkpoint", b.checkpoint, pub);
    });
    if (!signed) return { ok: false, reason: "CHECKPOINT_SIGNATURE" };
    return proofCheck(b);
  } catch {
    return { ok: false, reason: "MALFORMED" };
  }
}

/**
 * The bundle's record, leaf and path against its checkpoint's root, without the signature:
 * what `audit prove` checks before printing one (a damaged stored tree yields a path that
 * cannot verify). Never throws.
 */
export function selfCheckProofBundle(b: ProofBundle): BundleCheck {
  try {
    return proofCheck(b);
  } catch {
    return { ok: false, reason: "MALFORMED" };
  }
}

function proofCheck(b: ProofBundle): BundleCheck {
  const p = b.checkpoint.payload;
  // Hash the record as canonical bytes: the only spelling the log ever commits to. Read with the
  // log's own limits (a stored record nests deeper than the message it came in).
  const canonical = canonicalize(parseStrict(b.record, { maxBytes: RECORD_LIMITS.maxBytes, maxDepth: RECORD_LIMITS.maxDepth }));
  const leaf = recordLeafHash(new TextEncoder().encode(canonical));
  if (canonical !== b.record || toB64u(leaf) !== b.leafHash) return { ok: false, reason: "LEAF_MISMATCH" };
  const proof = b.proof.map((x) => fromB64u(x, 32) ?? new Uint8Array(0));
  const root = fromB64u(p.root, 32) ?? new Uint8Array(0);
  return verifyInclusion(b.seq, p.size, leaf, proof, root).ok ? { ok: true } : { ok: false, reason: "PROOF" };
}
