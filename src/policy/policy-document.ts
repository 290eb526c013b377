// A policy is a versioned, content-addressed document: its digest is its identity (DESIGN §1),
// so an artifact bound to a digest is bound to exactly this Cedar text.
import { createHash } from "node:crypto";
import { canonicalize } from "../canonical/jcs.ts";

export const POLICY_DOCUMENT_KIND = "failclosed/policy/v1";

export type PolicyDocument = {
  kind: typeof POLICY_DOCUMENT_KIND;
  id: string;
  version: string;
  /** Cedar policy text. */
  cedar: string;
};

const FIELDS = ["cedar", "id", "kind", "version"] as const;

/**
 * True when `value` is exactly a policy document: a plain object with the four string fields,
 * the right kind, and nothing else (an extra field would silently change the digest).
 */
export function isPolicyDocument(value: unknown): value is PolicyDocument {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const keys = Object.keys(value).sort();
  if (keys.length !== FIELDS.length || keys.some((k, i) => k !== FIELDS[i])) return false;
  const doc = value as Record<string, unknown>;
  return (
    doc["kind"] === POLICY_DOCUMENT_KIND &&
    typeof doc["id"] === "string" &&
    typeof doc["version"] === "string" &&
    typeof doc["cedar"] === "string"
  );
}

/**
 * base64url (unpadded) SHA-256 of the RFC 8785 canonical JSON of the document.
 * Throws TypeError for a value that is not a policy document and CanonicalError for one that
 * is not I-JSON (e.g. a lone surrogate in the Cedar text): both are caller mistakes.
 */
export function policyDigest(doc: PolicyDocument): string {
  if (!isPolicyDocument(doc)) throw new TypeError("policyDigest: not a failclosed/policy/v1 document");
  return createHash("sha256").update(canonicalize(doc), "utf8").digest("base64url");
}
