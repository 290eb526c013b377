import { createHash } from "node:crypto";

// node:crypto's SHA-256 is OpenSSL's; test/crypto checks it against @noble/hashes.
export function sha256(data: Uint8Array): Uint8Array {
  const d = createHash("sha256").update(data).digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export function sha256Concat(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  const d = h.digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}
