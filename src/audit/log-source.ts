// What replay reads. Replay trusts nothing it reads: a source only hands over raw bytes with
// the position each was stored at; seq, chain, tree and checkpoints are all re-verified.
import { parseStrict } from "../canonical/strict-parse.ts";
import type { AuditBackend } from "./backend.ts";
import { HEAD_KEY, readStoredNode, recordRange, seqOfRecordKey, unpackStored } from "./keys.ts";
import type { NodeLookup } from "./merkle.ts";

export interface StoredHead {
  readonly size: number;
  readonly last: string;
}

export interface AuditLogSource {
  /** Records in storage order with the position they are stored at (undefined: unreadable key). */
  records(): AsyncIterable<{ readonly position: number | undefined; readonly bytes: Uint8Array }>;
  /** Stored leaf hash for a position, when the source keeps a tree (LevelDB store). */
  storedLeaf?(position: number): Uint8Array | undefined;
  /** Stored tree nodes, for re-checking the proofs the store hands out. */
  nodeLookup?: NodeLookup;
  /** The store's commit point, when there is one. */
  head?(): Promise<StoredHead | undefined>;
}

export function backendLogSource(backend: AuditBackend): AuditLogSource {
  const get = (k: string): Uint8Array | undefined => backend.getSync(k);
  let lastLeaf: { position: number; leaf: Uint8Array | undefined } | undefined;
  return {
    async *records() {
      for await (const [key, value] of backend.iterate(recordRange)) {
        const position = seqOfRecordKey(key);
        // A value that does not fit its key's layout yields no record bytes: RECORD_MALFORMED.
        const parts = position === undefined ? undefined : unpackStored(position, value);
        lastLeaf = position === undefined ? undefined : { position, leaf: parts?.nodes.slice(0, 32) };
        yield { position, bytes: parts?.record ?? value };
      }
    },
    storedLeaf: (position) => (lastLeaf?.position === position ? lastLeaf.leaf : readStoredNode(get, 0, position)),
    nodeLookup: (level, index) => {
      const h = readStoredNode(get, level, index);
      // A missing node makes the proof fail verification: reported, not thrown past replay.
      return h ?? new Uint8Array(0);
    },
    async head() {
      const b = await backend.get(HEAD_KEY);
      if (b === undefined) return undefined;
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

/** Export a store's records as JSON Lines (for fixtures and third-party auditors). */
export async function exportJsonl(backend: AuditBackend): Promise<string> {
  const dec = new TextDecoder();
  const out: string[] = [];
  for await (const [key, value] of backend.iterate(recordRange)) {
    const seq = seqOfRecordKey(key);
    const parts = seq === undefined ? undefined : unpackStored(seq, value);
    out.push(dec.decode(parts?.record ?? value));
  }
  return out.map((l) => `${l}\n`).join("");
}
