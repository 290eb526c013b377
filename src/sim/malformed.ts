// The bytes behind the `malformed` tamper: evidence a gateway must refuse as MALFORMED (DESIGN §2,
// §6) before any other check. Pure, so the suite can hold each form to the gateway's own readers.
import { ARTIFACT_KIND, type SignedArtifact, type SignedRequest } from "../core/types.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload } from "../crypto/signing.ts";

const flip = (sig: string): string => (sig.startsWith("A") ? "B" : "A") + sig.slice(1);

/**
 * The signed artifact's wire message with "sig" twice: a forged signature first, the genuine one
 * last. A lenient reader (JSON.parse keeps the last key) sees the genuine artifact; a strict one
 * must refuse it, or two parties could read one message two ways.
 */
export function duplicateKeyMessage(signed: SignedArtifact): string {
  return `{"payload":${JSON.stringify(signed.payload)},"sig":${JSON.stringify(flip(signed.sig))},"sig":${JSON.stringify(signed.sig)}}`;
}

/**
 * The request relabelled with the artifact kind and validly re-signed (request domain tag) by
 * `key`: the signature holds, the payload is of the wrong kind for the submit subject.
 */
export function wrongKindRequest(request: SignedRequest, key: KeyPair): SignedRequest {
  const payload = { ...request.payload, kind: ARTIFACT_KIND } as unknown as SignedRequest["payload"];
  return signPayload("request", payload, key);
}
