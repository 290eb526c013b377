import { hash } from "node:crypto";

// node:crypto's SHA-256 is OpenSSL's; test/crypto checks it against @noble/hashes. The one-shot
// `crypto.hash` (Node ≥ 20.12) skips the Hash object: about 40% cheaper on the short inputs
// that dominate here (Merkle nodes, leaves, content ids).
export function sha256(data: Uint8Array): Uint8Array {
  const d = hash("sha256", data, "buffer");
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** base64url SHA-256 of the parts in order, in one call (memo keys). */
export function sha256B64u(...parts: Uint8Array[]): string {
  return hash("sha256", Buffer.concat(parts), "base64url");
}
