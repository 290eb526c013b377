// What replay reads. Replay trusts nothing it reads: a source only hands over raw bytes with
// the position each was stored at; seq, chain, tree and checkpoints are all re-verified.
import { parseStrict } from "../canonical/strict-parse.ts";
import type { AuditBackend } from "./backend.ts";
import { checkFormat } from "./format.ts";
import { bundleCount, isExactBundle, readStoredNode, slotBytes, slotNode, slotNodeCount, slotRecord } from "./entry-bundle.ts";
import { BUNDLE_SIZE, HEAD_KEY, bundleOfKey, bundleRange } from "./keys.ts";
import type { NodeLookup } from "./merkle.ts";
import { readStoredSnapshot, type StoredSnapshot } from "./snapshot-audit.ts";
import { GENESIS_PREV } from "./records.ts";

export interface StoredHead {
  readonly size: number;
  readonly last: string;
}

export interface AuditLogSource {
  /** Records in storage order with the position they are stored at (undefined: unreadable key). */
  records(): AsyncIterable<{ readonly position: number | undefined; readonly bytes: Uint8Array; readonly problem?: string }>;
  /** Stored leaf hash for a position, when the source keeps a tree (LevelDB store). */
  storedLeaf?(position: number): Uint8Array | undefined;
  /**
   * The tree nodes stored beside the record at a position (its leaf hash first, then each
   * subtree appending it completed), when the source keeps a tree; undefined when unreadable.
   */
  storedNodes?(position: number): Uint8Array[] | undefined;
  /** Stored tree nodes, for re-checking the proofs the store hands out. */
  nodeLookup?: NodeLookup;
  /** The store's commit point, when there is one. */
  head?(): Promise<StoredHead | undefined>;
  /** The gateway's fold snapshot as stored (unchecked), when there is one. */
  snapshot?(): Promise<StoredSnapshot | undefined>;
}

const NO_BYTES = new Uint8Array(0);

/**
 * The records of a store's bundles, each at position bundle·BUNDLE_SIZE + slot. Attacker
 * bytes never throw here: a slot that cannot be read yields empty bytes at its position
 * (replay: RECORD_MALFORMED), a bundle whose header cannot be read yields BUNDLE_SIZE of them
 * (so the positions of later bundles still line up), and a key that names no bundle yields
 * its value at position undefined (replay: SEQ_MISMATCH).
 */
export function backendLogSource(backend: AuditBackend): AuditLogSource {
  const get = (k: string): Uint8Array | undefined => backend.getSync(k);
  // The bundle being iterated: replay asks for each record's stored leaf right after reading it.
  let current: { index: number; count: number; value: Uint8Array } | undefined;
  return {
    async *records() {
      for await (const [key, value] of backend.iterate(bundleRange)) {
        const index = bundleOfKey(key);
        const count = bundleCount(value);
        current = index === undefined || count === undefined ? undefined : { index, count, value };
        if (index === undefined) {
          yield { position: undefined, bytes: value };
          continue;
        }
        const first = index * BUNDLE_SIZE;
        if (count === undefined) {
          for (let i = 0; i < BUNDLE_SIZE; i++) yield { position: first + i, bytes: NO_BYTES };
          continue;
        }
        const slots = Array.from({ length: count }, (_, i) => slotBytes(value, count, i));
        // Every slot readable, yet the value is not exactly them (bytes beyond the last): nothing
        // the store writes, and the store refuses to open it; named at the bundle's last record.
        // (A slot that cannot be read is reported at its own position instead.)
        const problem = slots.every((x) => x !== undefined) && !isExactBundle(value) ? `bundle ${key} holds bytes beyond its slots` : undefined;
        for (let i = 0; i < count; i++) {
          const slot = slots[i];
          const bytes = slot === undefined ? NO_BYTES : (slotRecord(slot) ?? slot);
          yield i === count - 1 && problem !== undefined ? { position: first + i, bytes, problem } : { position: first + i, bytes };
        }
      }
    },
    storedLeaf: (position) => {
      const c = current;
      if (c === undefined || Math.floor(position / BUNDLE_SIZE) !== c.index) return readStoredNode(get, 0, position);
      const slot = slotBytes(c.value, c.count, position % BUNDLE_SIZE);
      return slot === undefined ? undefined : slotNode(slot, 0);
    },
    storedNodes: (position) => {
      const c = current;
      if (c === undefined || Math.floor(position / BUNDLE_SIZE) !== c.index) return undefined;
      const slot = slotBytes(c.value, c.count, position % BUNDLE_SIZE);
      const k = slot === undefined ? undefined : slotNodeCount(slot);
      if (slot === undefined || k === undefined) return undefined;
      return Array.from({ length: k }, (_, level) => slotNode(slot, level)!);
    },
    nodeLookup: (level, index) => {
      const h = readStoredNode(get, level, index);
      // A missing node makes the proof fail verification: reported, not thrown past replay.
      return h ?? new Uint8Array(0);
    },
    snapshot: () => readStoredSnapshot(backend),
    async head() {
      const b = await backend.get(HEAD_KEY);
      // No head is an empty log's, as the store reads it (store.ts parseHead): a log with records
      // and its head deleted is not clean (found by a hostile-log review: it replayed ok).
      if (b === undefined) return { size: 0, last: GENESIS_PREV };
      try {
        const v = parseStrict(b) as { size?: unknown; last?: unknown };
        return typeof v.size === "number" && typeof v.last === "string" ? { size: v.size, last: v.last } : { size: -1, last: "" };
      } catch {
        return { size: -1, last: "" };
      }
    },
  };
}

/** A recorded log as JSON Lines: one canonical record per line (the committed fixtures). */
export function jsonlLogSource(text: string): AuditLogSource {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const enc = new TextEncoder();
  return {
    async *records() {
      for (const [i, line] of lines.entries()) yield await Promise.resolve({ position: i, bytes: enc.encode(line) });
    },
  };
}

/**
 * Export a store's records as JSON Lines (for fixtures and third-party auditors), read as
 * replay reads them. Refuses (AUDIT_FORMAT) a log stored in a layout this version does not know.
 */
export async function exportJsonl(backend: AuditBackend): Promise<string> {
  await checkFormat(backend);
  const dec = new TextDecoder();
  const out: string[] = [];
  for await (const { bytes } of backendLogSource(backend).records()) out.push(`${dec.decode(bytes)}\n`);
  return out.join("");
}
