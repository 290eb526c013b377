// RFC 6962 / RFC 9162 Merkle tree over the audit log: hashing, an incremental frontier,
// proof generation from stored complete-subtree nodes, and proof verification.
//
// Node addressing: (level, index) names the complete subtree over leaves
// [index·2^level, (index+1)·2^level). Level 0 nodes are leaf hashes. Only complete
// subtrees are ever stored; the hash of an incomplete right-edge subtree is recomputed from
// O(log n) complete ones, so a proof touches O(log n) stored nodes whatever the log size.
//
// Sizes and indices are JS numbers: exact up to 2^53, so bit tests use `% 2` and halving
// uses Math.floor(x / 2) rather than 32-bit shift operators.
import { bytesEqual } from "../crypto/base64url.ts";
import { sha256 } from "../crypto/hash.ts";

export const HASH_SIZE = 32;

export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/** Synchronous lookup of a stored complete-subtree hash; must return 32 bytes. */
export type NodeLookup = (level: number, index: number) => Uint8Array;

export type ProofErrorCode =
  | "BAD_SIZE" // index ≥ size, size1 = 0, size1 > size2, non-integers
  | "BAD_HASH_LENGTH" // a leaf hash or proof element that is not 32 bytes
  | "PROOF_LENGTH" // too few or too many proof elements for the sizes
  | "ROOT_MISMATCH"; // the recomputed root differs from the claimed one

/** Verifiers return this union and never throw on attacker bytes. */
export type ProofResult = { readonly ok: true } | { readonly ok: false; readonly code: ProofErrorCode };

const OK: ProofResult = { ok: true };
const fail = (code: ProofErrorCode): ProofResult => ({ ok: false, code });

/** MTH({}) = SHA-256() — RFC 9162 §2.1.1. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

/** MTH({d}) = SHA-256(0x00 ‖ d) — RFC 9162 §2.1.1. The prefix separates leaves from nodes. */
export function leafHash(leaf: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + leaf.length);
  buf[0] = 0x00;
  buf.set(leaf, 1);
  return sha256(buf);
}

/** SHA-256(0x01 ‖ left ‖ right) — RFC 9162 §2.1.1. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    const buf = new Uint8Array(1 + left.length + right.length);
    buf[0] = 0x01;
    buf.set(left, 1);
    buf.set(right, 1 + left.length);
    return sha256(buf);
  }
  // The common case, on every append and every proof step: one reused buffer (sha256 copies
  // its input into OpenSSL and returns fresh bytes, so reuse cannot leak between calls).
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 1 + HASH_SIZE);
  return sha256(NODE_INPUT);
}
const NODE_INPUT = new Uint8Array(1 + 2 * HASH_SIZE).fill(0x01, 0, 1);

function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** Largest power of two strictly less than n (n ≥ 2) — the RFC 9162 §2.1.1 split point. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The set of complete subtrees that a tree of `size` leaves decomposes into, right-most last:
 * the peaks of the "compact range" [0, size). Appending touches only the right end.
 */
export class MerkleFrontier {
  #size: number;
  // One hash per set bit of size, highest level first.
  #peaks: Uint8Array[];

  constructor(size = 0, peaks: readonly Uint8Array[] = []) {
    if (!isSize(size)) throw new RangeError(`bad frontier size ${size}`);
    if (peaks.length !== popcount(size)) throw new RangeError(`frontier of size ${size} needs ${popcount(size)} peaks`);
    this.#size = size;
    this.#peaks = peaks.map((p) => p.slice());
  }

  get size(): number {
    return this.#size;
  }

  /** The peaks with their node ids, highest level first (what to persist or to seed a restore). */
  peaks(): { id: NodeId; hash: Uint8Array }[] {
    const ids = frontierNodeIds(this.#size);
    return ids.map((id, i) => ({ id, hash: this.#peaks[i]! }));
  }

  /**
   * Append one leaf hash in O(log n); returns every complete subtree that the append finished
   * (the leaf itself first), so the caller can store them for proof generation.
   */
  append(leaf: Uint8Array): { id: NodeId; hash: Uint8Array }[] {
    if (leaf.length !== HASH_SIZE) throw new RangeError("leaf hash must be 32 bytes");
    let index = this.#size;
    let hash = leaf;
    const created = [{ id: { level: 0, index }, hash }];
    let level = 0;
    // Each trailing 1-bit of the old size is a peak that now has a right sibling: merge.
    while (index % 2 === 1) {
      const left = this.#peaks.pop();
      if (left === undefined) throw new Error("frontier invariant broken");
      hash = nodeHash(left, hash);
      level += 1;
      index = Math.floor(index / 2);
      created.push({ id: { level, index }, hash });
    }
    this.#peaks.push(hash);
    this.#size += 1;
    return created;
  }

  /** MTH(D[0:size]): fold the peaks right to left — RFC 9162 §2.1.1 applied to the decomposition. */
  root(): Uint8Array {
    if (this.#size === 0) return EMPTY_ROOT;
    let acc = this.#peaks[this.#peaks.length - 1]!;
    for (let i = this.#peaks.length - 2; i >= 0; i--) acc = nodeHash(this.#peaks[i]!, acc);
    return acc;
  }

  clone(): MerkleFrontier {
    return new MerkleFrontier(this.#size, this.#peaks);
  }
}

function popcount(n: number): number {
  let c = 0;
  for (let x = n; x > 0; x = Math.floor(x / 2)) c += x % 2;
  return c;
}

/** Node ids of the frontier peaks of a tree of `size` leaves, highest level first. */
export function frontierNodeIds(size: number): NodeId[] {
  const ids: NodeId[] = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const width = 2 ** level;
    if (start + width <= size) {
      ids.push({ level, index: start / width });
      start += width;
    }
  }
  return ids;
}

/** MTH(D[start:end]) from stored complete subtrees: O(log n) lookups. */
function subtreeHash(start: number, end: number, get: NodeLookup): Uint8Array {
  const n = end - start;
  if (n === 0) return EMPTY_ROOT;
  // A complete, aligned subtree is stored as one node.
  if (isPow2(n) && start % n === 0) return get(Math.log2(n), start / n);
  const k = splitPoint(n);
  return nodeHash(subtreeHash(start, start + k, get), subtreeHash(start + k, end, get));
}

function isPow2(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** PATH(m, D[start:end]) — RFC 9162 §2.1.3.1, returned leaf-side first. */
function path(m: number, start: number, end: number, get: NodeLookup, out: Uint8Array[]): void {
  const n = end - start;
  if (n <= 1) return;
  const k = splitPoint(n);
  if (m < k) {
    path(m, start, start + k, get, out);
    out.push(subtreeHash(start + k, end, get));
  } else {
    path(m - k, start + k, end, get, out);
    out.push(subtreeHash(start, start + k, get));
  }
}

/** SUBPROOF(m, D[start:end], b) — RFC 9162 §2.1.4.1. */
function subproof(m: number, start: number, end: number, b: boolean, get: NodeLookup, out: Uint8Array[]): void {
  const n = end - start;
  if (m === n) {
    if (!b) out.push(subtreeHash(start, end, get));
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    subproof(m, start, start + k, b, get, out);
    out.push(subtreeHash(start + k, end, get));
  } else {
    subproof(m - k, start + k, end, false, get, out);
    out.push(subtreeHash(start, start + k, get));
  }
}

/** Inclusion proof for `leafIndex` in the tree of `size` leaves. Caller mistakes throw RangeError. */
export function inclusionProof(leafIndex: number, size: number, get: NodeLookup): Uint8Array[] {
  if (!isSize(size) || !isSize(leafIndex) || leafIndex >= size) {
    throw new RangeError(`no inclusion proof for index ${leafIndex} in size ${size}`);
  }
  const out: Uint8Array[] = [];
  path(leafIndex, 0, size, get, out);
  return out;
}

/** Consistency proof between sizes m and n, 0 < m ≤ n (RFC 9162 §2.1.4.1; m = n gives []). */
export function consistencyProof(m: number, n: number, get: NodeLookup): Uint8Array[] {
  if (!isSize(m) || !isSize(n) || m === 0 || m > n) {
    throw new RangeError(`no consistency proof between sizes ${m} and ${n}`);
  }
  const out: Uint8Array[] = [];
  subproof(m, 0, n, true, get, out);
  return out;
}

/** MTH of the first `size` leaves from stored nodes (for sizes other than the current one). */
export function rootAt(size: number, get: NodeLookup): Uint8Array {
  if (!isSize(size)) throw new RangeError(`bad size ${size}`);
  return subtreeHash(0, size, get);
}

/**
 * The stored nodes a proof or root will read. Run the generator once with a recording lookup,
 * fetch those nodes in one batched read (LevelDB getMany), then run it again synchronously:
 * this keeps proof generation at one storage round trip.
 */
export function nodesNeeded(run: (get: NodeLookup) => unknown): NodeId[] {
  const seen = new Map<string, NodeId>();
  const dummy = new Uint8Array(HASH_SIZE);
  run((level, index) => {
    seen.set(`${level}/${index}`, { level, index });
    return dummy;
  });
  return [...seen.values()];
}

/** Verify an inclusion proof — RFC 9162 §2.1.3.2. */
export function verifyInclusion(
  leafIndex: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): ProofResult {
  if (!isSize(size) || !isSize(leafIndex) || leafIndex >= size) return fail("BAD_SIZE");
  if (leaf.length !== HASH_SIZE) return fail("BAD_HASH_LENGTH");
  for (const p of proof) if (p.length !== HASH_SIZE) return fail("BAD_HASH_LENGTH");
  let fn = leafIndex;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return fail("PROOF_LENGTH");
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // Skip levels where this node has no right sibling (right edge of an unbalanced tree).
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return fail("PROOF_LENGTH");
  return bytesEqual(r, root) ? OK : fail("ROOT_MISMATCH");
}

/**
 * Verify a consistency proof — RFC 9162 §2.1.4.2. Conventions (those of the Go verifier and
 * the vectors): 0 < size1 ≤ size2; size1 = size2 needs an empty proof and equal roots.
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): ProofResult {
  if (!isSize(size1) || !isSize(size2) || size1 === 0 || size1 > size2) return fail("BAD_SIZE");
  if (size1 === size2) {
    if (proof.length !== 0) return fail("PROOF_LENGTH");
    return bytesEqual(root1, root2) ? OK : fail("ROOT_MISMATCH");
  }
  if (proof.length === 0) return fail("PROOF_LENGTH");
  for (const p of proof) if (p.length !== HASH_SIZE) return fail("BAD_HASH_LENGTH");
  // Step 2: when size1 is a power of two the old root is itself a node of the new tree.
  const path = isPow2(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) return fail("PROOF_LENGTH");
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) return fail("PROOF_LENGTH");
  return bytesEqual(fr, root1) && bytesEqual(sr, root2) ? OK : fail("ROOT_MISMATCH");
}
