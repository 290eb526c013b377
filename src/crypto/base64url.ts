// RFC 4648 §5 base64url without padding. Decoding is strict: Buffer.from(…, "base64url")
// silently skips bad characters and accepts non-zero trailing bits, which would let two
// spellings name one key or signature. We re-encode and compare to refuse those.
const B64U_RE = /^[A-Za-z0-9_-]*$/;

export function toB64u(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

/** Decode canonical unpadded base64url; undefined for anything else. Never throws. */
export function fromB64u(s: unknown, expectedLength?: number): Uint8Array | undefined {
  if (typeof s !== "string" || !B64U_RE.test(s) || s.length % 4 === 1) return undefined;
  const buf = Buffer.from(s, "base64url");
  if (buf.toString("base64url") !== s) return undefined;
  if (expectedLength !== undefined && buf.byteLength !== expectedLength) return undefined;
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new TypeError("not hex");
  return new Uint8Array(Buffer.from(hex, "hex"));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}
