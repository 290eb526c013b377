// Key layout in the backend. Fixed-width lowercase hex keeps LevelDB's byte order equal to
// numeric order, so ordered iteration walks records by seq.
//   r/<seq>            tree nodes completed by appending this record, then the record bytes
//                      (canonical JSON). Appending leaf `seq` completes 1 + t nodes, t = the
//                      trailing 1-bits of seq: the leaf hash (level 0) and each merge up to
//                      level t — RFC 9162 §2.1.1. Keeping them in the record's value makes an
//                      append exactly one LevelDB put (a separate key per node halves the
//                      synced write rate), and node (level, index) is found without an index:
//                      it was completed by leaf (index+1)·2^level − 1, at offset 32·level.
//   c/<size>           seq of the checkpoint record that signs the tree of that size
//   m/head             {size, last} written in every batch: the commit point
export const RECORD_PREFIX = "r/";
export const CHECKPOINT_PREFIX = "c/";
export const HEAD_KEY = "m/head";

const hex = (n: number, width: number): string => n.toString(16).padStart(width, "0");

export const recordKey = (seq: number): string => `${RECORD_PREFIX}${hex(seq, 14)}`;
export const checkpointKey = (size: number): string => `${CHECKPOINT_PREFIX}${hex(size, 14)}`;

/** The seq named by a record key, or undefined for a malformed key. */
export function seqOfRecordKey(key: string): number | undefined {
  if (!key.startsWith(RECORD_PREFIX)) return undefined;
  const h = key.slice(RECORD_PREFIX.length);
  if (!/^[0-9a-f]{14}$/.test(h)) return undefined;
  return parseInt(h, 16);
}

export const recordRange = { gte: RECORD_PREFIX, lt: "r0" } as const; // '0' follows '/'
export const checkpointRange = { gte: CHECKPOINT_PREFIX, lt: "c0" } as const;

const NODE_BYTES = 32;

/** How many tree nodes appending leaf `seq` completes: 1 + its trailing 1-bits. */
export function nodesCompletedBy(seq: number): number {
  let n = 1;
  for (let x = seq; x % 2 === 1; x = Math.floor(x / 2)) n++;
  return n;
}

export function packStored(nodes: readonly Uint8Array[], record: Uint8Array): Uint8Array {
  const out = new Uint8Array(nodes.length * NODE_BYTES + record.length);
  nodes.forEach((n, i) => out.set(n, i * NODE_BYTES));
  out.set(record, nodes.length * NODE_BYTES);
  return out;
}

/** Split a stored value into its node hashes and record bytes; undefined if too short. */
export function unpackStored(seq: number, value: Uint8Array): { nodes: Uint8Array; record: Uint8Array } | undefined {
  const head = nodesCompletedBy(seq) * NODE_BYTES;
  if (value.length < head) return undefined;
  return { nodes: value.subarray(0, head), record: value.subarray(head) };
}

/** Node (level, index) from stored values; undefined when absent or malformed. */
export function readStoredNode(getSync: (key: string) => Uint8Array | undefined, level: number, index: number): Uint8Array | undefined {
  const seq = (index + 1) * 2 ** level - 1;
  const v = getSync(recordKey(seq));
  if (v === undefined || level >= nodesCompletedBy(seq) || v.length < (level + 1) * NODE_BYTES) return undefined;
  return v.slice(level * NODE_BYTES, (level + 1) * NODE_BYTES);
}
