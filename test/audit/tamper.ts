// An attacker's toolkit for the tamper tests: edit stored bytes in place (a bit, a record
// dropped, two records swapped), or rewrite a log wholesale with a recomputed chain and tree
// (and checkpoints re-signed with whatever key the attacker holds).
import { canonicalBytes, canonicalize } from "../../src/canonical/jcs.ts";
import type { AuditBackend, KvOp } from "../../src/audit/backend.ts";
import { BundleWriter, bundleCount, bundleSlots, emptyTail, encodeBundle, slotBytes, slotRecord } from "../../src/audit/entry-bundle.ts";
import { FORMAT_MARKER } from "../../src/audit/format.ts";
import { BUNDLE_SIZE, FORMAT_KEY, HEAD_KEY, bundleKey, bundleKeyFor, bundleOfKey, bundleRange, checkpointKey } from "../../src/audit/keys.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { MerkleFrontier } from "../../src/audit/merkle.ts";
import { GENESIS_PREV, decodeRecord, type AuditRecord } from "../../src/audit/records.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { signPayload } from "../../src/crypto/signing.ts";

export async function readRecords(backend: AuditBackend): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const { bytes } of backendLogSource(backend).records()) {
    const d = decodeRecord(bytes);
    if (!d.ok) throw new Error(d.detail);
    out.push(d.record);
  }
  return out;
}

/** Flip one bit of a record's bytes (not of the tree nodes stored beside them). */
export async function flipBit(backend: AuditBackend, seq: number, bit: number): Promise<void> {
  const key = bundleKeyFor(seq);
  const copy = new Uint8Array((await backend.get(key))!);
  const slot = slotBytes(copy, bundleCount(copy)!, seq % BUNDLE_SIZE)!;
  const record = slotRecord(slot)!;
  const i = record.byteOffset - copy.byteOffset + (Math.floor(bit / 8) % record.length);
  copy[i] = copy[i]! ^ (1 << (bit % 8));
  await backend.batch([{ type: "put", key, value: copy }], { sync: true });
}

/** Slots of every stored bundle, by bundle index. */
async function readSlots(backend: AuditBackend): Promise<Map<number, Uint8Array[]>> {
  const out = new Map<number, Uint8Array[]>();
  for await (const [key, value] of backend.iterate(bundleRange)) {
    const slots = bundleSlots(value)!;
    out.set(bundleOfKey(key)!, slots.map((s) => new Uint8Array(s!)));
  }
  return out;
}

const putSlots = (index: number, slots: Uint8Array[]): KvOp =>
  slots.length === 0 ? { type: "del", key: bundleKey(index) } : { type: "put", key: bundleKey(index), value: encodeBundle(slots) };

/**
 * Drop records from their bundles (slot, tree nodes and all), as deleting their keys did in a
 * one-key-per-record layout: later slots of the bundle move up, an emptied bundle is deleted.
 */
export async function deleteRecords(backend: AuditBackend, seqs: readonly number[]): Promise<void> {
  const all = await readSlots(backend);
  const doomed = new Set(seqs);
  const ops: KvOp[] = [];
  for (const b of new Set(seqs.map((s) => Math.floor(s / BUNDLE_SIZE)))) {
    const kept = (all.get(b) ?? []).filter((_, i) => !doomed.has(b * BUNDLE_SIZE + i));
    ops.push(putSlots(b, kept));
  }
  await backend.batch(ops, { sync: true });
}

/** Exchange the stored slots (record and tree nodes) of two records. */
export async function swapRecords(backend: AuditBackend, a: number, b: number): Promise<void> {
  const all = await readSlots(backend);
  const [ba, bb] = [Math.floor(a / BUNDLE_SIZE), Math.floor(b / BUNDLE_SIZE)];
  const [sa, sb] = [all.get(ba)![a % BUNDLE_SIZE]!, all.get(bb)![b % BUNDLE_SIZE]!];
  all.get(ba)![a % BUNDLE_SIZE] = sb;
  all.get(bb)![b % BUNDLE_SIZE] = sa;
  await backend.batch([...new Set([ba, bb])].map((i) => putSlots(i, all.get(i)!)), { sync: true });
}

/** Entries of a log, minus the fields the store adds (so they can be re-chained). */
export type Forgeable = Omit<AuditRecord, "seq" | "prev">;

/**
 * Write `records` as a log with a valid chain, tree and head. A checkpoint whose recomputed
 * payload differs from the original is re-signed with `signer` if the attacker has a key,
 * else kept as it was (its root then disagrees with the tree).
 */
export async function writeForgedLog(backend: AuditBackend, records: readonly Forgeable[], signer?: KeyPair): Promise<void> {
  const ops: KvOp[] = [];
  for await (const [k] of backend.iterate({})) ops.push({ type: "del", key: k });
  const frontier = new MerkleFrontier();
  const bundles = new BundleWriter(emptyTail(0));
  let prev = GENESIS_PREV;
  for (const r of records) {
    const seq = frontier.size;
    let rec = { ...r, seq, prev } as AuditRecord;
    if (rec.type === "checkpoint") {
      const payload = { ...rec.checkpoint.payload, size: seq, root: toB64u(frontier.root()) };
      const same = payload.size === rec.checkpoint.payload.size && payload.root === rec.checkpoint.payload.root;
      if (!same && signer !== undefined) rec = { ...rec, checkpoint: signPayload("checkpoint", payload, signer) };
      ops.push({ type: "put", key: checkpointKey(seq), value: new TextEncoder().encode(String(seq)) });
    }
    prev = toB64u(bundles.appendRecord(canonicalize(rec), frontier));
  }
  bundles.finish(ops);
  ops.push({ type: "put", key: HEAD_KEY, value: canonicalBytes({ size: frontier.size, last: prev }) });
  ops.push({ type: "put", key: FORMAT_KEY, value: FORMAT_MARKER });
  await backend.batch(ops, { sync: true });
}
