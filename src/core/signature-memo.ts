// Signatures that verified, by SHA-256 of (key ‖ signature ‖ signed bytes). Ancestors of a
// chain (the root artifact, the origin lineage) recur across sibling and child tasks; a memo
// of a pure function cannot change an answer, only how fast it comes. Only successes are
// kept. Two generations keep memory flat without forgetting everything at once: a full young
// generation becomes the old one, so the newest entries survive every turnover.
import { sha256B64u } from "../crypto/hash.ts";

export interface SignatureMemoStats {
  /** Verifications answered from the memo. */
  readonly hits: number;
  /** Verifications the memo did not hold (then verified for real). */
  readonly misses: number;
  /** Entries held (both generations). */
  readonly size: number;
}

const fixedWidths = (pub: Uint8Array, sig: Uint8Array): boolean => pub.length === 32 && sig.length === 64;

export class SignatureMemo {
  readonly #generation: number;
  #young = new Set<string>();
  #old = new Set<string>();
  #hits = 0;
  #misses = 0;

  /** Holds between `generation` and 2 × `generation` entries once full. */
  constructor(generation = 8_192) {
    if (!Number.isSafeInteger(generation) || generation < 1) throw new RangeError("SignatureMemo: generation must be a positive integer");
    this.#generation = generation;
  }

  /** `verify()` unless (pub, sig, msg) verified before; a success is remembered. */
  verified(pub: Uint8Array, sig: Uint8Array, msg: Uint8Array, verify: () => boolean): boolean {
    // Policy: the key is a hash of pub ‖ sig ‖ msg, unambiguous only for a 32-byte key and a
    // 64-byte signature; anything else is verified and never remembered.
    if (!fixedWidths(pub, sig)) return verify();
    const key = sha256B64u(pub, sig, msg);
    if (this.#young.has(key) || this.#old.has(key)) {
      this.#hits++;
      return true;
    }
    this.#misses++;
    const ok = verify();
    if (ok) this.#remember(key);
    return ok;
  }

  /**
   * Record that `sig` verified under `pub` for `msg`, as verifyEd25519 found on another thread
   * (crypto/verify-pool.ts). Only a success may be recorded.
   */
  prime(pub: Uint8Array, sig: Uint8Array, msg: Uint8Array): void {
    if (fixedWidths(pub, sig)) this.#remember(sha256B64u(pub, sig, msg));
  }

  #remember(key: string): void {
    if (this.#young.size >= this.#generation) {
      this.#old = this.#young;
      this.#young = new Set();
    }
    this.#young.add(key);
  }

  clear(): void {
    this.#young = new Set();
    this.#old = new Set();
  }

  stats(): SignatureMemoStats {
    return { hits: this.#hits, misses: this.#misses, size: this.#young.size + this.#old.size };
  }
}
