// Domain-separated signatures (DESIGN §2): the signed bytes are tag || 0x00 || JCS(payload),
// with one tag per kind, so a signature made for one kind can never verify as another.
import { canonicalBytes, canonicalize, utf8Bytes } from "../canonical/jcs.ts";
import { fromB64u, toB64u } from "./base64url.ts";
import { signEd25519, verifyEd25519, SIGNATURE_LENGTH } from "./ed25519.ts";
import { sha256 } from "./hash.ts";
import type { KeyPair } from "./keys.ts";

export type SignedKind = "artifact" | "request" | "lineage" | "revocation" | "checkpoint" | "heartbeat" | "snapshot" | "outcome" | "consistency" | "policy";

export const DOMAIN_TAGS: Readonly<Record<SignedKind, string>> = {
  artifact: "failclosed/artifact/v1",
  request: "failclosed/request/v1",
  lineage: "failclosed/lineage/v1",
  revocation: "failclosed/revocation/v1",
  checkpoint: "failclosed/checkpoint/v1",
  heartbeat: "failclosed/heartbeat/v1",
  snapshot: "failclosed/fold-snapshot/v1",
  outcome: "failclosed/outcome/v1",
  // A gateway's answer to a witness's consistency-proof request (nats/proof-service.ts).
  consistency: "failclosed/consistency-proof/v1",
  // An authority's activation of a policy version (policy/activation.ts).
  policy: "failclosed/policy-activation/v1",
};

const encoder = new TextEncoder();
const TAG_BYTES: Readonly<Record<SignedKind, Uint8Array>> = Object.fromEntries(
  Object.entries(DOMAIN_TAGS).map(([k, t]) => [k, encoder.encode(t)]),
) as Record<SignedKind, Uint8Array>;

export interface Signed<P> {
  payload: P;
  sig: string;
}

// tag ‖ 0x00 as a string prefix: the tags are ASCII, so its UTF-8 is exactly those bytes.
const TAG_PREFIX: Readonly<Record<SignedKind, string>> = Object.fromEntries(
  Object.entries(DOMAIN_TAGS).map(([k, t]) => [k, `${t}\u0000`]),
) as Record<SignedKind, string>;

export function signingInput(kind: SignedKind, payload: unknown): Uint8Array {
  return utf8Bytes(TAG_PREFIX[kind] + canonicalize(payload));
}

/** The same bytes when the caller already holds JCS(payload) (so it hashes it once for the id too). */
export function signingInputFromCanonical(kind: SignedKind, body: Uint8Array): Uint8Array {
  const tag = TAG_BYTES[kind];
  const out = new Uint8Array(tag.byteLength + 1 + body.byteLength);
  out.set(tag, 0);
  out[tag.byteLength] = 0x00;
  out.set(body, tag.byteLength + 1);
  return out;
}

export function signPayload<P>(kind: SignedKind, payload: P, key: KeyPair): Signed<P> {
  return { payload, sig: toB64u(signEd25519(key.seed, signingInput(kind, payload))) };
}

/** Never throws: a non-canonical payload, bad base64url or wrong key gives false. */
export function verifySigned(kind: SignedKind, signed: Signed<unknown>, publicKey: Uint8Array): boolean {
  try {
    const sig = fromB64u(signed.sig, SIGNATURE_LENGTH);
    if (!sig) return false;
    return verifyEd25519(publicKey, signingInput(kind, signed.payload), sig);
  } catch {
    return false;
  }
}

/** Content address: base64url SHA-256 of the canonical payload (never of signature bytes). */
export function contentId(payload: unknown): string {
  return toB64u(sha256(canonicalBytes(payload)));
}
