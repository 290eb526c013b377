import { createHash } from "node:crypto";

// node:crypto's SHA-256 is OpenSSL's; the tests check it against @noble/hashes on random inputs.
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest().buffer.slice(0) as ArrayBuffer);
}

export function sha256Concat(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  const d = h.digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}
