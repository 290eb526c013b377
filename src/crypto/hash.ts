import { createHash, hash } from "node:crypto";

// node:crypto's SHA-256 is OpenSSL's; test/crypto checks it against @noble/hashes. The one-shot
// `crypto.hash` (Node ≥ 20.12) skips the Hash object: about 40% cheaper on the short inputs
// that dominate here (Merkle nodes, leaves, content ids).
export function sha256(data: Uint8Array): Uint8Array {
  const d = hash("sha256", data, "buffer");
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export function sha256Concat(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  const d = h.digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}
