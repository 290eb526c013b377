// Key layout in the backend (on-disk format FORMAT, recorded under FORMAT_KEY). Fixed-width
// lowercase hex keeps LevelDB's byte order equal to numeric order, so ordered iteration walks
// the log by seq.
//   b/<bundle>         entry bundle `bundle`: records [bundle·B, (bundle+1)·B), B = BUNDLE_SIZE,
//                      as Trillian Tessera / C2SP tlog-tiles store "entry bundles". A group
//                      commit rewrites the partial bundle it extends and adds the new ones, so a
//                      commit is a handful of puts whatever its record count (one put per record
//                      made LevelDB's per-operation cost the append bottleneck). Value format:
//                      entry-bundle.ts. Each record slot carries the tree nodes that appending it
//                      completed: 1 + t nodes, t = the trailing 1-bits of seq — the leaf hash
//                      (level 0) and each merge up to level t (RFC 9162 §2.1.1). So node
//                      (level, index) needs no index of its own: it was completed by leaf
//                      (index+1)·2^level − 1, one synchronous read of that leaf's bundle.
//   c/<size>           seq of the checkpoint record that signs the tree of that size
//   m/format           FORMAT: which layout the other keys follow; written by the first commit
//   m/head             {size, last} written in every batch: the commit point
//   s/manifest         the fold snapshot's signed manifest (fold-snapshot.ts; store.ts): a cache,
//   s/p<part>          never part of the log, and its parts in one of two slots (s/p: slot 0, s/q:
//   s/q<part>          slot 1; the manifest names its slot, none means 0). A new snapshot is
//                      written into the other slot and made current by one synced batch that
//                      writes the manifest and deletes the old slot's parts, so a crash
//                      part-way leaves the current snapshot whole
//   r/<seq>            (earlier layout, one key per record: never written, only recognised so
//                      that such a log is refused instead of being read as an empty one)

/** Records per entry bundle: a power of two, and part of the on-disk format (see FORMAT). */
export const BUNDLE_SIZE = 16;

/** The on-disk format this code reads and writes; a log recorded in another is refused. */
export const FORMAT = `failclosed/audit-log/entry-bundles/v1;bundle=${BUNDLE_SIZE}`;

export const BUNDLE_PREFIX = "b/";
export const CHECKPOINT_PREFIX = "c/";
export const HEAD_KEY = "m/head";
export const FORMAT_KEY = "m/format";
export const LEGACY_RECORD_PREFIX = "r/";
export const SNAPSHOT_MANIFEST_KEY = "s/manifest";

const HEX_WIDTH = 14;
const hex = (n: number): string => n.toString(16).padStart(HEX_WIDTH, "0");

export const bundleKey = (bundle: number): string => `${BUNDLE_PREFIX}${hex(bundle)}`;
/** Key of the bundle that holds record `seq`. */
export const bundleKeyFor = (seq: number): string => bundleKey(Math.floor(seq / BUNDLE_SIZE));
export const checkpointKey = (size: number): string => `${CHECKPOINT_PREFIX}${hex(size)}`;
export type SnapshotSlot = 0 | 1;
export const snapshotPartKey = (part: number, slot: SnapshotSlot = 0): string => `${slot === 0 ? "s/p" : "s/q"}${hex(part)}`;

const HEX_KEY = /^[0-9a-f]{14}$/;

/** The bundle index named by a bundle key, or undefined for a malformed key. */
export function bundleOfKey(key: string): number | undefined {
  if (!key.startsWith(BUNDLE_PREFIX)) return undefined;
  const h = key.slice(BUNDLE_PREFIX.length);
  return HEX_KEY.test(h) ? parseInt(h, 16) : undefined;
}

// '0' follows '/', so [p/, p0) is exactly the keys under prefix p/.
export const bundleRange = { gte: BUNDLE_PREFIX, lt: "b0" } as const;
export const checkpointRange = { gte: CHECKPOINT_PREFIX, lt: "c0" } as const;
export const snapshotPartRanges = [
  { gte: "s/p", lt: "s/q" },
  { gte: "s/q", lt: "s/r" },
] as const;
export const legacyRecordRange = { gte: LEGACY_RECORD_PREFIX, lt: "r0" } as const;

/** How many tree nodes appending leaf `seq` completes: 1 + its trailing 1-bits. */
export function nodesCompletedBy(seq: number): number {
  let n = 1;
  for (let x = seq; x % 2 === 1; x = Math.floor(x / 2)) n++;
  return n;
}
