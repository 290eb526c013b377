// Entry bundles: BUNDLE_SIZE consecutive records in one LevelDB value (keys.ts has the key
// layout). Value format, version BUNDLE_TAG:
//
//   u8      BUNDLE_TAG
//   u8      n, the records it holds (1..BUNDLE_SIZE; fewer than BUNDLE_SIZE only in the last one)
//   n×u32le end of slot i, counted from the start of the slot area (slot i starts where i−1
//           ends, slot 0 at 0): slot lookup is O(1), and appending to a bundle keeps every
//           earlier offset, so extending the partial bundle is one copy of its old slot area
//   slots   slot i is record bundle·BUNDLE_SIZE + i:
//             u8      k, the tree nodes appending it completed (keys.ts: nodesCompletedBy)
//             k×32    those nodes, the leaf hash first
//             …       the record's canonical JSON
//
// A slot carries its own node count, so a slot is readable wherever it sits: a slot moved or
// dropped by an attacker reads as the record it is, at the position it was found — replay
// then reports the seq mismatch rather than garbage.
import type { AuditBackend, KvOp } from "./backend.ts";
import { BUNDLE_SIZE, bundleKey, bundleKeyFor, nodesCompletedBy } from "./keys.ts";
import { HASH_SIZE, type MerkleFrontier } from "./merkle.ts";
import { sha256 } from "../crypto/hash.ts";

export const BUNDLE_TAG = 0x01;
const FIXED_HEADER = 2;
const OFFSET_BYTES = 4;

const u32At = (v: Uint8Array, o: number): number => (v[o]! | (v[o + 1]! << 8) | (v[o + 2]! << 16) | (v[o + 3]! << 24)) >>> 0;

function setU32(v: Uint8Array, o: number, x: number): void {
  v[o] = x & 0xff;
  v[o + 1] = (x >>> 8) & 0xff;
  v[o + 2] = (x >>> 16) & 0xff;
  v[o + 3] = (x >>> 24) & 0xff;
}

const slotAreaStart = (count: number): number => FIXED_HEADER + OFFSET_BYTES * count;

/** Records the bundle holds per its header, or undefined when the header is unreadable. */
export function bundleCount(value: Uint8Array): number | undefined {
  if (value.length < FIXED_HEADER || value[0] !== BUNDLE_TAG) return undefined;
  const n = value[1]!;
  if (n < 1 || n > BUNDLE_SIZE || value.length < slotAreaStart(n)) return undefined;
  return n;
}

/** True when the header is readable and the slots exactly fill the value (what the store writes). */
export function isExactBundle(value: Uint8Array): boolean {
  const n = bundleCount(value);
  if (n === undefined) return false;
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const end = u32At(value, FIXED_HEADER + OFFSET_BYTES * i);
    if (end < prev) return false;
    prev = end;
  }
  return slotAreaStart(n) + prev === value.length;
}

/** Slot `slot` of a bundle of `count` records (a view), or undefined when out of bounds. */
export function slotBytes(value: Uint8Array, count: number, slot: number): Uint8Array | undefined {
  if (slot < 0 || slot >= count) return undefined;
  const base = slotAreaStart(count);
  const start = slot === 0 ? 0 : u32At(value, FIXED_HEADER + OFFSET_BYTES * (slot - 1));
  const end = u32At(value, FIXED_HEADER + OFFSET_BYTES * slot);
  if (start > end || base + end > value.length) return undefined;
  return value.subarray(base + start, base + end);
}

/** Nodes stored in a slot, or undefined when the slot is too short for the count it claims. */
export function slotNodeCount(slot: Uint8Array): number | undefined {
  if (slot.length < 1) return undefined;
  const k = slot[0]!;
  return k >= 1 && slot.length >= 1 + HASH_SIZE * k ? k : undefined;
}

/** The record bytes of a slot (a view), or undefined when the slot is malformed. */
export function slotRecord(slot: Uint8Array): Uint8Array | undefined {
  const k = slotNodeCount(slot);
  return k === undefined ? undefined : slot.subarray(1 + HASH_SIZE * k);
}

/** Node `level` of a slot (a view): 0 is the record's leaf hash. */
export function slotNode(slot: Uint8Array, level: number): Uint8Array | undefined {
  const k = slotNodeCount(slot);
  return k === undefined || level >= k ? undefined : slot.subarray(1 + HASH_SIZE * level, 1 + HASH_SIZE * (level + 1));
}

/** Every slot of a bundle, in order; undefined entries for slots out of bounds. */
export function bundleSlots(value: Uint8Array): (Uint8Array | undefined)[] | undefined {
  const n = bundleCount(value);
  if (n === undefined) return undefined;
  const out: (Uint8Array | undefined)[] = [];
  for (let i = 0; i < n; i++) out.push(slotBytes(value, n, i));
  return out;
}

/**
 * Node (level, index) from the stored bundles; undefined when absent or malformed. One
 * synchronous read: the node was completed by leaf (index+1)·2^level − 1. A leaf hash (level
 * 0) is whatever the slot at that position stores beside its record; a higher node is only
 * taken from a slot holding exactly the nodes that leaf completes, else it could be another
 * subtree's.
 */
export function readStoredNode(getSync: (key: string) => Uint8Array | undefined, level: number, index: number): Uint8Array | undefined {
  const seq = (index + 1) * 2 ** level - 1;
  const value = getSync(bundleKeyFor(seq));
  if (value === undefined) return undefined;
  const n = bundleCount(value);
  const slot = n === undefined ? undefined : slotBytes(value, n, seq % BUNDLE_SIZE);
  if (slot === undefined || (level > 0 && slotNodeCount(slot) !== nodesCompletedBy(seq))) return undefined;
  const node = slotNode(slot, level);
  return node === undefined ? undefined : new Uint8Array(node);
}

/** The record bytes stored for `seq` in its bundle value (a copy); undefined when absent or malformed. */
export function recordInBundle(value: Uint8Array | undefined, seq: number): Uint8Array | undefined {
  if (value === undefined) return undefined;
  const n = bundleCount(value);
  const slot = n === undefined ? undefined : slotBytes(value, n, seq % BUNDLE_SIZE);
  const record = slot === undefined ? undefined : slotRecord(slot);
  // A copy (never `.slice()`: values may be Buffers, whose slice is a view).
  return record === undefined ? undefined : new Uint8Array(record);
}

/** The record bytes stored for `seq`, without the tree nodes beside them. */
export async function readStoredRecord(backend: AuditBackend, seq: number): Promise<Uint8Array | undefined> {
  if (!Number.isSafeInteger(seq) || seq < 0) return undefined;
  return recordInBundle(await backend.get(bundleKeyFor(seq)), seq);
}

/**
 * A bundle value holding `slots` after the `count` slots of `base`: the reference encoder, for
 * tests and tools. The store writes through BundleWriter, which produces the same bytes.
 */
export function encodeBundle(slots: readonly Uint8Array[], base?: { readonly value: Uint8Array; readonly count: number }): Uint8Array {
  const baseCount = base?.count ?? 0;
  const count = baseCount + slots.length;
  if (count < 1 || count > BUNDLE_SIZE) throw new RangeError(`a bundle holds 1..${BUNDLE_SIZE} records, not ${count}`);
  const baseArea = base === undefined ? new Uint8Array(0) : base.value.subarray(slotAreaStart(baseCount));
  let total = slotAreaStart(count) + baseArea.length;
  for (const s of slots) total += s.length;
  if (total > 0xffffffff) throw new RangeError("bundle over 4 GiB");
  const out = new Uint8Array(total);
  out[0] = BUNDLE_TAG;
  out[1] = count;
  if (base !== undefined) out.set(base.value.subarray(FIXED_HEADER, slotAreaStart(baseCount)), FIXED_HEADER);
  let end = baseArea.length;
  let at = slotAreaStart(count);
  out.set(baseArea, at);
  at += baseArea.length;
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i]!;
    out.set(s, at);
    at += s.length;
    end += s.length;
    setU32(out, FIXED_HEADER + OFFSET_BYTES * (baseCount + i), end);
  }
  return out;
}

/** The stored partial bundle that the next record extends. Immutable: a commit builds a new one. */
export interface BundleTail {
  /** The bundle the next record goes into. */
  readonly index: number;
  /** Records it already holds, 0..BUNDLE_SIZE−1. */
  readonly count: number;
  /** Its stored bytes; undefined when count is 0. */
  readonly value: Uint8Array | undefined;
}

export const emptyTail = (index: number): BundleTail => ({ index, count: 0, value: undefined });

const LEAF_PREFIX = 0x00;
const SCRATCH_BYTES = 64 * 1024;
const SCRATCH_KEEP_MAX = 4 * 1024 * 1024;

// Slot scratch space, handed from one writer to the next: a commit allocates one buffer for
// all its bundles instead of one per record and per bundle (each fresh backing store costs
// more than the copy). A writer takes it for its lifetime; one that finds it taken (another
// writer alive at the same time) allocates its own.
let spareScratch: Buffer | undefined;

/**
 * Collects one group commit's records into bundle puts. The tail it starts from is not
 * modified: the caller adopts `finish()`'s tail only once the batch is durable.
 */
export class BundleWriter {
  readonly #base: BundleTail;
  #scratch: Buffer;
  #used = 0;
  /** Scratch offset where each new slot ends (slot i starts where i−1 ends). */
  readonly #ends: number[] = [];
  #finished = false;

  constructor(tail: BundleTail) {
    this.#base = tail;
    this.#scratch = spareScratch ?? Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    spareScratch = undefined;
  }

  /**
   * Store a record (its canonical JSON) in the next slot and append its leaf to `frontier`;
   * returns the leaf hash. The JSON is encoded once, into the slot, and hashed in place.
   */
  appendRecord(json: string, frontier: MerkleFrontier): Uint8Array {
    const seq = frontier.size;
    if (this.#finished || seq !== this.#base.index * BUNDLE_SIZE + this.#base.count + this.#ends.length) {
      throw new Error("bundle writer out of step with the tree");
    }
    const k = nodesCompletedBy(seq);
    const recordAt = 1 + HASH_SIZE * k;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: reserve that, encode once, then trim.
    this.#reserve(recordAt + 3 * json.length);
    const s = this.#scratch;
    const at = this.#used;
    const size = recordAt + s.write(json, at + recordAt, "utf8");
    // MTH({d}) = SHA-256(0x00 ‖ d) — RFC 9162 §2.1.1: borrow the byte before the record for the
    // prefix instead of copying the record; the last node overwrites it below.
    s[at + recordAt - 1] = LEAF_PREFIX;
    const leaf = sha256(new Uint8Array(s.buffer, s.byteOffset + at + recordAt - 1, size - recordAt + 1));
    const created = frontier.append(leaf);
    if (created.length !== k) throw new Error("tree completed an unexpected number of nodes");
    s[at] = k;
    for (let i = 0; i < k; i++) s.set(created[i]!.hash, at + 1 + HASH_SIZE * i);
    this.#used += size;
    this.#ends.push(this.#used);
    return leaf;
  }

  #reserve(size: number): void {
    if (this.#used + size <= this.#scratch.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(2 * this.#scratch.length, this.#used + size));
    this.#scratch.copy(grown, 0, 0, this.#used);
    this.#scratch = grown;
  }

  /**
   * Add one put per bundle the commit touched — the partial one it extended (its stored slots
   * followed by the new ones), the new full ones, the new partial one — all laid out in one
   * buffer. Returns the tail to adopt once the batch is durable. Ends the writer.
   */
  finish(ops: KvOp[]): BundleTail {
    if (this.#finished) throw new Error("bundle writer already finished");
    this.#finished = true;
    const base = this.#base;
    const ends = this.#ends;
    // The stored partial bundle's offset table and slot area, reused as they are.
    const baseTable = base.value?.subarray(FIXED_HEADER, slotAreaStart(base.count)) ?? new Uint8Array(0);
    const baseArea = base.value?.subarray(slotAreaStart(base.count)) ?? new Uint8Array(0);
    const slotStart = (i: number): number => (i === 0 ? 0 : ends[i - 1]!);
    // Bundles touched: the first continues the stored partial one, each takes new slots [first, last).
    const bundles: { index: number; extends: boolean; first: number; last: number }[] = [];
    let total = 0;
    for (let first = 0, index = base.index; first < ends.length; index++) {
      const extend = index === base.index && base.count > 0;
      const last = Math.min(ends.length, first + BUNDLE_SIZE - (extend ? base.count : 0));
      const count = (extend ? base.count : 0) + last - first;
      const area = (extend ? baseArea.length : 0) + ends[last - 1]! - slotStart(first);
      if (area > 0xffffffff) throw new RangeError("bundle over 4 GiB: its offsets are u32");
      total += slotAreaStart(count) + area;
      bundles.push({ index, extends: extend, first, last });
      first = last;
    }
    if (this.#scratch.length <= SCRATCH_KEEP_MAX) spareScratch = this.#scratch;
    if (bundles.length === 0) return base;
    let tail = base;
    const out = Buffer.allocUnsafeSlow(total);
    let at = 0;
    for (const b of bundles) {
      const baseCount = b.extends ? base.count : 0;
      const count = baseCount + b.last - b.first;
      const start = at;
      out[at] = BUNDLE_TAG;
      out[at + 1] = count;
      if (b.extends) out.set(baseTable, at + FIXED_HEADER);
      const areaBefore = b.extends ? baseArea.length : 0;
      const from = slotStart(b.first);
      for (let i = b.first; i < b.last; i++) setU32(out, at + FIXED_HEADER + OFFSET_BYTES * (baseCount + i - b.first), areaBefore + ends[i]! - from);
      at += slotAreaStart(count);
      if (b.extends) out.set(baseArea, at);
      at += areaBefore;
      at += this.#scratch.copy(out, at, from, ends[b.last - 1]);
      const value = out.subarray(start, at);
      ops.push({ type: "put", key: bundleKey(b.index), value });
      tail = count === BUNDLE_SIZE ? emptyTail(b.index + 1) : { index: b.index, count, value };
    }
    return tail;
  }
}
