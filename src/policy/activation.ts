// The active policy's KV entry, signed (DESIGN §1: the authority publishes the active policy).
// The entry is `{digest, document, activation}`, where `activation` is an authority's signature
// over the digest and a version. A gateway takes an entry only when a trusted authority signed it
// and its version is above the one it last took (kept in its audit log), so someone who can write
// the bucket but holds no authority key cannot put a retired policy back into force.
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload, verifySigned, type Signed } from "../crypto/signing.ts";
import { MAX_POLICY_VERSION, check, signedPolicyActivationSchema } from "../core/schema.ts";
import { POLICY_ACTIVATION_KIND, type PolicyActivationPayload } from "../core/types.ts";
import { MAX_MESSAGE_BYTES } from "../nats/contract.ts";
import { isPolicyDocument, policyDigest, type PolicyDocument } from "./policy-document.ts";

export { MAX_POLICY_VERSION };
export type SignedPolicyActivation = Signed<PolicyActivationPayload>;

/** A policy entry as read from the bucket: the document, its digest, and who activated it. */
export interface PolicyEntry {
  readonly document: PolicyDocument;
  readonly digest: string;
  readonly activation: SignedPolicyActivation;
}

export function signActivation(key: KeyPair, doc: PolicyDocument, version: number, issuedAt: number): SignedPolicyActivation {
  if (!Number.isSafeInteger(version) || version < 1 || version > MAX_POLICY_VERSION) throw new RangeError(`policy version must be an integer in 1..${MAX_POLICY_VERSION}, got ${version}`);
  return signPayload("policy", { kind: POLICY_ACTIVATION_KIND, issuer: key.keyId, policyId: doc.id, policyDigest: policyDigest(doc), version, issuedAt }, key);
}

/** The entry's bytes as the authority puts them (JSON; gateways read it strictly). */
export function policyEntryText(doc: PolicyDocument, activation: SignedPolicyActivation): string {
  return JSON.stringify({ activation, digest: activation.payload.policyDigest, document: doc });
}

/**
 * Read an entry: exactly `{activation, digest, document}`, the document well formed with that
 * digest, the activation well formed, naming that document, and signed by the key it names.
 * Whether that key is trusted is the reader's to judge (judgeActivation). Never throws.
 */
export function readPolicyEntry(value: Uint8Array | string): { ok: true; entry: PolicyEntry } | { ok: false; why: string } {
  const parsed = tryParseStrict(value, { maxBytes: MAX_MESSAGE_BYTES });
  if (!parsed.ok) return { ok: false, why: `not strict JSON (${parsed.error.code})` };
  const v = parsed.value;
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { ok: false, why: "not a JSON object" };
  const keys = Object.keys(v).sort();
  if (keys.join(",") !== "activation,digest,document") {
    return { ok: false, why: keys.includes("activation") ? `unexpected members (${keys.join(", ")})` : "not signed: no authority activation (an entry from an older authority, or forged)" };
  }
  const doc = v["document"];
  if (!isPolicyDocument(doc)) return { ok: false, why: "not a policy document" };
  let digest: string;
  try {
    digest = policyDigest(doc);
  } catch {
    return { ok: false, why: "the document is not I-JSON" };
  }
  if (v["digest"] !== digest) return { ok: false, why: "the digest is not the document's" };
  const a = check(signedPolicyActivationSchema, v["activation"]);
  if (!a.ok) return { ok: false, why: `activation malformed: ${a.error}` };
  const p = a.value.payload;
  if (p.policyDigest !== digest || p.policyId !== doc.id) return { ok: false, why: "the activation names another document" };
  const pub = fromB64u(p.issuer, 32);
  if (pub === undefined || !verifySigned("policy", a.value, pub)) return { ok: false, why: "the activation's signature does not verify" };
  return { ok: true, entry: { document: doc, digest, activation: a.value } };
}

/** The newest activation a gateway took: its floor (AuditState.policyHigh). */
export interface PolicyHigh {
  readonly version: number;
  readonly digest: string;
}

export type ActivationJudgement =
  | { readonly take: true }
  /** Already in force: nothing to do. */
  | { readonly take: false; readonly same: true }
  | { readonly take: false; readonly same: false; readonly why: string };

/**
 * Whether a gateway takes a signed entry. Only a trusted, unrevoked authority's; only a version
 * above the newest it took (`high`), or that same activation again after a withdrawal (the bucket
 * entry deleted: a delete is unsigned, so the newest signed activation stays good). A lower
 * version is a rollback, the same version with another digest an equivocation: both refused.
 */
export function judgeActivation(
  a: PolicyActivationPayload,
  high: PolicyHigh | undefined,
  active: string | undefined,
  trust: { isAuthority: (keyId: string) => boolean; isRevokedKey: (keyId: string) => boolean },
): ActivationJudgement {
  if (!trust.isAuthority(a.issuer)) return { take: false, same: false, why: `signed by ${a.issuer}, not a trusted authority` };
  if (trust.isRevokedKey(a.issuer)) return { take: false, same: false, why: `signed by ${a.issuer}, a revoked key` };
  if (high === undefined || a.version > high.version) return { take: true };
  if (a.version === high.version && a.policyDigest === high.digest) return active === a.policyDigest ? { take: false, same: true } : { take: true };
  if (a.version === high.version) return { take: false, same: false, why: `version ${a.version} was activated for another policy (${high.digest}): two policies under one version` };
  return { take: false, same: false, why: `version ${a.version} is older than the version ${high.version} in force here: a retired policy put back` };
}

/**
 * The version an authority signs next: above every version it has seen (`seen`), and at least
 * the time in ms, so an authority that lost the bucket's history (a re-made bucket, a fresh
 * process) still counts past what gateways hold, unless its clock went back.
 */
export function nextPolicyVersion(seen: number, nowMs: number): number {
  const v = Math.max(seen + 1, Math.floor(nowMs));
  if (!Number.isSafeInteger(v) || v > MAX_POLICY_VERSION) throw new RangeError(`policy version ${v} would exceed ${MAX_POLICY_VERSION}`);
  return v;
}
