// An attacker's toolkit for the tamper tests: edit stored bytes in place, or rewrite a log
// wholesale with a recomputed chain and tree (and checkpoints re-signed with whatever key the
// attacker holds).
import { canonicalBytes } from "../../src/canonical/jcs.ts";
import type { AuditBackend, KvOp } from "../../src/audit/backend.ts";
import { HEAD_KEY, checkpointKey, packStored, recordKey, recordRange, unpackStored } from "../../src/audit/keys.ts";
import { MerkleFrontier } from "../../src/audit/merkle.ts";
import { GENESIS_PREV, decodeRecord, recordLeafHash, type AuditRecord } from "../../src/audit/records.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { signPayload } from "../../src/crypto/signing.ts";

export async function readRecords(backend: AuditBackend): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const [, value] of backend.iterate(recordRange)) {
    const d = decodeRecord(unpackStored(out.length, value)!.record);
    if (!d.ok) throw new Error(d.detail);
    out.push(d.record);
  }
  return out;
}

/** Flip one bit of the record bytes (not of the tree nodes stored beside them). */
export async function flipBit(backend: AuditBackend, seq: number, bit: number): Promise<void> {
  const value = (await backend.get(recordKey(seq)))!;
  const copy = value.slice();
  const head = copy.length - unpackStored(seq, value)!.record.length;
  const i = head + (Math.floor(bit / 8) % (copy.length - head));
  copy[i] = copy[i]! ^ (1 << (bit % 8));
  await backend.batch([{ type: "put", key: recordKey(seq), value: copy }], { sync: true });
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
    const bytes = canonicalBytes(rec);
    const leaf = recordLeafHash(bytes);
    ops.push({ type: "put", key: recordKey(seq), value: packStored(frontier.append(leaf).map((n) => n.hash), bytes) });
    prev = toB64u(leaf);
  }
  ops.push({ type: "put", key: HEAD_KEY, value: canonicalBytes({ size: frontier.size, last: prev }) });
  await backend.batch(ops, { sync: true });
}
