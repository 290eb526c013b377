// The one Ed25519 accept rule (DESIGN §2): strict RFC 8032 / FIPS 186-5, cofactorless.
// A signature is accepted exactly when OpenSSL (node:crypto, cofactorless) AND @noble/ed25519
// with {zip215:false} (canonical encodings, no small-order A) both accept it. The hot path
// gets there with one OpenSSL verify plus byte checks that reproduce noble's extra refusals;
// `verifyReference` runs both libraries and the differential tests prove the two agree.
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";

ed.hashes.sha512 = sha512;

export const PUBLIC_KEY_LENGTH = 32;
export const SIGNATURE_LENGTH = 64;
export const SEED_LENGTH = 32;

const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

// 2^255 - 19 and the group order L, as little-endian 32-byte strings: the encoding checks
// below compare bytes from the most significant end instead of building BigInts (they run
// on every verify; test/crypto/ed25519-encoding.test.ts checks them against BigInt arithmetic).
const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

function toLE32(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
}
const L_LE = toLE32(L);
const P_LE = toLE32(P);
const P_MINUS_1_LE = toLE32(P - 1n);

/** The 32-byte little-endian number at `offset` (top bit masked off when `maskTop`) is below `limit`. */
function belowLE(bytes: Uint8Array, offset: number, limit: Uint8Array, maskTop: boolean): boolean {
  for (let i = 31; i >= 0; i--) {
    const b = i === 31 && maskTop ? (bytes[offset + 31] ?? 0) & 0x7f : (bytes[offset + i] ?? 0);
    const l = limit[i] ?? 0;
    if (b !== l) return b < l;
  }
  return false;
}

/** The masked y at `offset` equals `value` (little-endian). */
function yEquals(bytes: Uint8Array, offset: number, value: Uint8Array): boolean {
  for (let i = 0; i < 32; i++) {
    const b = i === 31 ? (bytes[offset + 31] ?? 0) & 0x7f : (bytes[offset + i] ?? 0);
    if (b !== value[i]) return false;
  }
  return true;
}

const ONE_LE = toLE32(1n);

/** RFC 8032 §5.1.7: S < L, so no second (malleable) signature. `sig` is 64 bytes. */
export function scalarIsCanonical(sig: Uint8Array): boolean {
  return belowLE(sig, 32, L_LE, false);
}

export type PublicKeyProblem = "WRONG_LENGTH" | "NON_CANONICAL" | "NOT_ON_CURVE" | "SMALL_ORDER";

/**
 * Policy: a key enters the trust store (or is accepted as a holder key) only when its
 * encoding is canonical (y < p, no "negative zero" x) and the point is not of small order;
 * small-order keys make signatures that verify for many messages (eprint 2020/1244).
 */
export function checkPublicKey(pub: Uint8Array): { ok: true } | { ok: false; problem: PublicKeyProblem } {
  if (!(pub instanceof Uint8Array) || pub.byteLength !== PUBLIC_KEY_LENGTH) return { ok: false, problem: "WRONG_LENGTH" };
  if (!isCanonicalPointEncoding(pub, 0)) return { ok: false, problem: "NON_CANONICAL" };
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(pub, false);
  } catch {
    return { ok: false, problem: "NOT_ON_CURVE" };
  }
  if (point.isSmallOrder()) return { ok: false, problem: "SMALL_ORDER" };
  return { ok: true };
}

/** RFC 8032 §5.1.3 decoding rules that need no curve arithmetic: y < p, and x = 0 never with the sign bit. */
export function isCanonicalPointEncoding(bytes: Uint8Array, offset: number): boolean {
  if (!belowLE(bytes, offset, P_LE, true)) return false;
  // x = 0 exactly for y = 1 and y = p - 1; a set sign bit there is a second spelling.
  const sign = (bytes[offset + 31] ?? 0) & 0x80;
  if (sign !== 0 && (yEquals(bytes, offset, ONE_LE) || yEquals(bytes, offset, P_MINUS_1_LE))) return false;
  return true;
}

// Keys repeat (authorities, agents): remember the verdict and the parsed OpenSSL key.
const KEY_CACHE_MAX = 4096;
const keyCache = new Map<string, KeyObject | null>();

function openSslKey(pub: Uint8Array): KeyObject | null {
  const id = Buffer.from(pub).toString("base64");
  const hit = keyCache.get(id);
  if (hit !== undefined) return hit;
  let k: KeyObject | null = null;
  if (checkPublicKey(pub).ok) {
    try {
      k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: "der", type: "spki" });
    } catch {
      k = null;
    }
  }
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(id, k);
  return k;
}

function shapeOk(pub: unknown, msg: unknown, sig: unknown): boolean {
  return (
    pub instanceof Uint8Array &&
    msg instanceof Uint8Array &&
    sig instanceof Uint8Array &&
    pub.byteLength === PUBLIC_KEY_LENGTH &&
    sig.byteLength === SIGNATURE_LENGTH
  );
}

/** The accept rule, hot path. Never throws: attacker bytes give false (→ deny). */
export function verifyEd25519(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    if (!shapeOk(pub, msg, sig)) return false;
    // RFC 8032 §5.1.7 step 1: S < L (no malleable second signature); R canonically encoded.
    if (!scalarIsCanonical(sig)) return false;
    if (!isCanonicalPointEncoding(sig, 0)) return false;
    const key = openSslKey(pub);
    if (key === null) return false;
    return nodeVerify(null, msg, key, sig);
  } catch {
    return false;
  }
}

/** OpenSSL alone (cofactorless, lenient on encodings). Exposed for the differential tests and bench. */
export function verifyOpenSsl(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    if (!shapeOk(pub, msg, sig)) return false;
    const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: "der", type: "spki" });
    return nodeVerify(null, msg, key, sig);
  } catch {
    return false;
  }
}

/** @noble/ed25519 strict mode alone. noble throws RangeError on wrong lengths; we return false. */
export function verifyNobleStrict(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    if (!shapeOk(pub, msg, sig)) return false;
    return ed.verify(sig, msg, pub, { zip215: false });
  } catch {
    return false;
  }
}

/** The accept rule by its definition: both libraries accept. A second verifier (replay) may use it. */
export function verifyReference(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  return verifyOpenSsl(pub, msg, sig) && verifyNobleStrict(pub, msg, sig);
}

export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  if (seed.byteLength !== SEED_LENGTH) throw new RangeError("Ed25519 seed must be 32 bytes");
  const k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(k).export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.byteLength - 32));
}

const signKeyCache = new Map<string, KeyObject>();

export function signEd25519(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  if (seed.byteLength !== SEED_LENGTH) throw new RangeError("Ed25519 seed must be 32 bytes");
  const id = Buffer.from(seed).toString("base64");
  let k = signKeyCache.get(id);
  if (!k) {
    k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
    if (signKeyCache.size > 1024) signKeyCache.clear();
    signKeyCache.set(id, k);
  }
  return new Uint8Array(nodeSign(null, msg, k));
}
