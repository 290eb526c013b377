// RFC 8785 JSON Canonicalization Scheme. Everything failclosed signs or hashes goes through
// here, so the encoder refuses anything that is not I-JSON (RFC 7493) instead of guessing.
import { CanonicalError } from "./errors.ts";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

const encoder = new TextEncoder();

// ES2024 String.prototype.isWellFormed (V8 in Node 20): a native scan, far cheaper than a JS
// loop on long strings such as policy text. The loop below is the fallback and the reference.
const nativeWellFormed = (String.prototype as { isWellFormed?: () => boolean }).isWellFormed;

/** True when `s` has no unpaired UTF-16 surrogate (RFC 7493 §2.1: I-JSON strings are valid Unicode). */
export function isWellFormedString(s: string): boolean {
  if (nativeWellFormed !== undefined) return nativeWellFormed.call(s);
  return isWellFormedLoop(s);
}

export function isWellFormedLoop(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c >= 0xdc00) return false;
    const d = s.charCodeAt(i + 1);
    if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
    i++;
  }
  return true;
}

function encodeString(s: string): string {
  if (!isWellFormedString(s)) throw new CanonicalError("LONE_SURROGATE", "string holds an unpaired surrogate");
  // RFC 8785 §3.2.2.2: JSON.stringify's escaping (ECMA-262 QuoteJSONString) is exactly JCS's.
  return JSON.stringify(s);
}

function encodeNumber(n: number, ijson: boolean): string {
  if (!Number.isFinite(n)) throw new CanonicalError("NON_FINITE", `number ${String(n)} is not finite`);
  // RFC 7493 §2.2 (DESIGN §2): what we sign must survive any I-JSON reader exactly.
  if (ijson && Number.isInteger(n) && !Number.isSafeInteger(n)) {
    throw new CanonicalError("UNSAFE_INTEGER", `integer ${String(n)} beyond ±(2^53−1)`);
  }
  // RFC 8785 §3.2.2.3: ES6 Number.prototype.toString; -0 serializes as 0.
  return Object.is(n, -0) ? "0" : String(n);
}

function encode(value: unknown, depth: number, out: string[], ijson: boolean): void {
  if (depth > 1000) throw new CanonicalError("TOO_DEEP", "nesting over 1000");
  if (value === null) {
    out.push("null");
    return;
  }
  switch (typeof value) {
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "number":
      out.push(encodeNumber(value, ijson));
      return;
    case "string":
      out.push(encodeString(value));
      return;
    case "object":
      break;
    case "bigint":
    case "undefined":
    case "function":
    case "symbol":
      throw new CanonicalError("NOT_JSON", `a ${typeof value} is not JSON`);
  }
  if (Array.isArray(value)) {
    out.push("[");
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(",");
      encode(value[i], depth + 1, out, ijson);
    }
    out.push("]");
    return;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new CanonicalError("NOT_JSON", "only plain objects and arrays are JSON");
  }
  const obj = value as Record<string, unknown>;
  // RFC 8785 §3.2.3: sort keys by UTF-16 code units, which is what the default sort compares.
  const keys = Object.keys(obj).sort();
  out.push("{");
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    // Policy: an undefined member is a caller bug, not something to drop silently from a signed payload.
    if (v === undefined) throw new CanonicalError("NOT_JSON", `member "${k}" is undefined`);
    if (!first) out.push(",");
    first = false;
    out.push(encodeString(k), ":");
    encode(v, depth + 1, out, ijson);
  }
  out.push("}");
}

export interface CanonicalizeOptions {
  /**
   * Enforce I-JSON's safe-integer range (default true). Only the RFC 8785 conformance test
   * turns it off: its vectors hold 1E30, which plain JCS allows and failclosed never signs.
   */
  ijson?: boolean;
}

/** RFC 8785 canonical form. Throws CanonicalError on anything that is not I-JSON. */
export function canonicalize(value: unknown, opts: CanonicalizeOptions = {}): string {
  const out: string[] = [];
  encode(value, 0, out, opts.ijson ?? true);
  return out.join("");
}

export function canonicalBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalize(value));
}
