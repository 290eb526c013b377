// RFC 8785 JSON Canonicalization Scheme. Everything failclosed signs or hashes goes through
// here, so the encoder refuses anything that is not I-JSON (RFC 7493) instead of guessing.
import { CanonicalError } from "./errors.ts";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

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
  /** Refuse (TOO_DEEP) more than this many nested arrays/objects, counted as parseStrict's maxDepth. */
  maxNesting?: number;
}

/**
 * The straightforward encoder, kept as the reference that the fast one below is tested
 * against (test/canonical: differential property test and every RFC 8785 vector).
 */
export function canonicalizeReference(value: unknown, opts: CanonicalizeOptions = {}): string {
  const out: string[] = [];
  encode(value, 0, out, opts.ijson ?? true);
  return out.join("");
}

// Printable ASCII other than '"' and '\\': such a string's JSON spelling is the string in quotes,
// and it cannot hold a surrogate. Most keys and values on the hot path (ids, base64url, codes).
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function fastString(s: string): string {
  if (s.length < 256 && PLAIN_ASCII.test(s)) return `"${s}"`;
  return encodeString(s);
}

/** An object's own keys in RFC 8785 order, sorted only when they are not already. */
function sortedKeys(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj);
  // Sorting by UTF-16 code units is what `<` on strings and the default sort compare.
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      keys.sort();
      break;
    }
  }
  return keys;
}

// Same output and same errors as `encode`, built by string concatenation (V8 ropes) instead of
// an array of parts: every signature, content id and audit record goes through here.
function fast(value: unknown, depth: number, ijson: boolean, nesting: number): string {
  if (depth > 1000) throw new CanonicalError("TOO_DEEP", "nesting over 1000");
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return encodeNumber(value, ijson);
    case "string":
      return fastString(value);
    case "object":
      break;
    case "bigint":
    case "undefined":
    case "function":
    case "symbol":
      throw new CanonicalError("NOT_JSON", `a ${typeof value} is not JSON`);
  }
  if (depth >= nesting) throw new CanonicalError("TOO_DEEP", `nesting over ${nesting}`);
  if (Array.isArray(value)) {
    let s = "[";
    for (let i = 0; i < value.length; i++) {
      if (i > 0) s += ",";
      s += fast(value[i], depth + 1, ijson, nesting);
    }
    return s + "]";
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new CanonicalError("NOT_JSON", "only plain objects and arrays are JSON");
  }
  const obj = value as Record<string, unknown>;
  const keys = sortedKeys(obj);
  let s = "{";
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = obj[k];
    if (v === undefined) throw new CanonicalError("NOT_JSON", `member "${k}" is undefined`);
    if (i > 0) s += ",";
    s += fastString(k) + ":" + fast(v, depth + 1, ijson, nesting);
  }
  return s + "}";
}

/**
 * The members of a plain object in RFC 8785 order, each as `[key, "key":value]`: what
 * `canonicalize` puts between the braces. Lets a caller encode an object once and later add
 * members of its own (mergeCanonicalMembers) without encoding the rest again. Same errors.
 */
export function canonicalMembers(value: object, maxNesting = Infinity): [string, string][] {
  const proto: unknown = Object.getPrototypeOf(value);
  if (Array.isArray(value) || (proto !== Object.prototype && proto !== null)) {
    throw new CanonicalError("NOT_JSON", "only plain objects have members");
  }
  const obj = value as Record<string, unknown>;
  const keys = sortedKeys(obj);
  const out: [string, string][] = [];
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) throw new CanonicalError("NOT_JSON", `member "${k}" is undefined`);
    out.push([k, fastString(k) + ":" + fast(v, 1, true, maxNesting)]);
  }
  return out;
}

/**
 * `{…}` of two sorted member lists (canonicalMembers), merged in key order. A key in both is
 * taken from `over`, as `{ ...base, ...over }` would.
 */
export function mergeCanonicalMembers(base: readonly [string, string][], over: readonly [string, string][]): string {
  let s = "{";
  let i = 0;
  let j = 0;
  let first = true;
  const add = (m: string): void => {
    if (!first) s += ",";
    s += m;
    first = false;
  };
  while (i < base.length || j < over.length) {
    const a = base[i];
    const b = over[j];
    if (b === undefined || (a !== undefined && a[0] < b[0])) {
      add(a![1]);
      i++;
    } else {
      if (a !== undefined && a[0] === b[0]) i++;
      add(b[1]);
      j++;
    }
  }
  return s + "}";
}

/** RFC 8785 canonical form. Throws CanonicalError on anything that is not I-JSON. */
export function canonicalize(value: unknown, opts: CanonicalizeOptions = {}): string {
  return fast(value, 0, opts.ijson ?? true, opts.maxNesting ?? Infinity);
}

/** UTF-8 of a string as a plain Uint8Array view (Buffer.from is far cheaper than TextEncoder.encode here). */
export function utf8Bytes(s: string): Uint8Array {
  const b = Buffer.from(s, "utf8");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function canonicalBytes(value: unknown): Uint8Array {
  return utf8Bytes(canonicalize(value));
}
