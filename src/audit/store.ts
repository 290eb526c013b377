// The audit store (DESIGN §5): an append-only, hash-chained, Merkle-committed log in LevelDB
// with group commit and signed checkpoints. An append resolves only once its batch is synced:
// the gateway awaits it before letting a task execute (write-ahead).
import { canonicalBytes, canonicalize } from "../canonical/jcs.ts";
import { parseStrict } from "../canonical/strict-parse.ts";
import { bytesEqual, fromB64u, toB64u } from "../crypto/base64url.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { sha256B64u } from "../crypto/hash.ts";
import { signPayload, type Signed } from "../crypto/signing.ts";
import { LevelBackend, type AuditBackend, type KvOp } from "./backend.ts";
import { BundleWriter, bundleCount, emptyTail, isExactBundle, readStoredNode, readStoredRecord, slotBytes, slotNode, slotNodeCount, slotRecord, type BundleTail } from "./entry-bundle.ts";
import { FORMAT_MARKER, checkFormat } from "./format.ts";
import { FOLD_WINDOW, applyRecord, emptyState, type AuditState } from "./fold.ts";
import { SNAPSHOT_KIND, captureState, decodeState, encodeSteps, sealState, type CapturedState } from "./fold-snapshot.ts";
import { checkStoredSnapshot, foldDifference, manifestLocation, readStoredSnapshot, type SnapshotManifest } from "./snapshot-audit.ts";
import {
  BUNDLE_SIZE,
  FORMAT_KEY,
  HEAD_KEY,
  SNAPSHOT_MANIFEST_KEY,
  bundleKey,
  bundleOfKey,
  bundleRange,
  checkpointKey,
  checkpointRange,
  nodesCompletedBy,
  snapshotPartKey,
  snapshotPartRanges,
  type SnapshotSlot,
} from "./keys.ts";
import { MerkleFrontier, consistencyProof, frontierNodeIds, inclusionProof, rootAt, type NodeLookup } from "./merkle.ts";
import {
  GENESIS_PREV,
  RECORD_LIMITS,
  canonicalRecord,
  decodeRecord,
  entryShapeProblem,
  recordLeafHash,
  recordOf,
  recordTextProblem,
  type AuditEntry,
  type AuditRecord,
  type CheckpointPayload,
  type PreparedEntry,
} from "./records.ts";
import { AuditStoreError } from "./store-error.ts";

export { AuditStoreError, type AuditStoreErrorCode } from "./store-error.ts";
export type { SnapshotManifest } from "./snapshot-audit.ts";

export interface AuditStoreOptions {
  /** Checkpoint origin: names this log (e.g. the gateway id). */
  readonly origin: string;
  /** The gateway key that signs checkpoints. */
  readonly gatewayKey: KeyPair;
  /** Injected clock (ms). The store never reads the wall clock itself. */
  readonly clock: () => number;
  /** Checkpoint after this many records (default 1000; 0 = never by count). */
  readonly checkpointEvery?: number;
  /** Checkpoint every T ms when records arrived since the last one (default 0 = off). */
  readonly checkpointIntervalMs?: number;
  /** Publisher hook: called with each checkpoint once it is durable (the gateway puts it on NATS). */
  readonly onCheckpoint?: (cp: Signed<CheckpointPayload>) => void | Promise<void>;
  /** Where publisher failures go; they never affect the log. */
  readonly onPublishError?: (err: unknown) => void;
  /** Upper bound on appends per group commit (default 4096). */
  readonly maxBatch?: number;
  /**
   * The fold's window in entries (fold.ts FOLD_WINDOW). For tests only: the log's writer and
   * every replay of it must use the same value, and only the default is ever assumed.
   */
  readonly foldWindow?: number;
  /**
   * After opening from a fold snapshot, check the records before it in the background, as an
   * open from the first record would have, and that their fold is the snapshot's state (default
   * true; it holds a second fold of up to a window's state while it runs). If they fail, the
   * store turns unwritable (AUDIT_CORRUPT), so a gateway denies everything from then on.
   */
  readonly checkPrefix?: boolean;
  /** Bytes of fold snapshot parts per synced batch (default 1 MiB, about one part; tests make it smaller). */
  readonly snapshotBatchBytes?: number;
}

export interface AppendReceipt {
  readonly seq: number;
  /** base64url RFC 6962 leaf hash of the record. */
  readonly leafHash: string;
  readonly record: AuditRecord;
}

export interface SnapshotInfo {
  readonly size: number;
  readonly parts: number;
  readonly bytes: number;
}

/** How open() came by its state: which snapshot it used, or why it used none. */
export interface OpenedFrom {
  /** Log position folding started from: 0, or the snapshot's size. */
  readonly snapshotSize: number;
  /** Records folded from the log itself (head size − snapshotSize). */
  readonly recordsFolded: number;
  /** Set when a snapshot was stored but failed a check: the state came from the log instead. */
  readonly snapshotProblem?: string;
}

export interface InclusionProofJson {
  readonly seq: number;
  readonly size: number;
  readonly leafHash: string;
  readonly proof: string[];
  readonly root: string;
}

// A pending append carries its own outcome once the batch is built: no closure per record.
type Pending =
  | { readonly kind: "entry"; readonly entry: AuditEntry; readonly prepared: PreparedEntry | undefined; receipt?: AppendReceipt; resolve(r: AppendReceipt): void; reject(e: unknown): void }
  | { readonly kind: "checkpoint"; written?: Signed<CheckpointPayload>; resolve(cp: Signed<CheckpointPayload> | undefined): void; reject(e: unknown): void }
  // Ends its batch (#take), so the position it stands for is the batch's end.
  | { readonly kind: "snapshot"; readonly captured: CapturedState | undefined; resolve(info: SnapshotInfo): void; reject(e: unknown): void };

/** Where a snapshot stands in the log: taken when its batch is durable, written down later. */
interface SnapshotPosition {
  readonly size: number;
  readonly root: string;
  readonly prev: string;
  readonly since: number;
  readonly lastCheckpoint: CheckpointPayload | undefined;
}

/** Bytes of snapshot parts per synced batch: large enough to be few, small enough not to hold up group commits for long. */
const SNAPSHOT_BATCH_BYTES = 1024 * 1024;

const pause = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Head {
  size: number;
  last: string;
}

/** One group commit, built but not yet durable. */
interface Batch {
  readonly ops: KvOp[];
  /** Records in seq order, checkpoints included. */
  readonly written: AuditRecord[];
  readonly frontier: MerkleFrontier;
  readonly prev: string;
  readonly since: number;
  readonly tail: BundleTail;
}

interface Loaded {
  head: Head;
  frontier: MerkleFrontier;
  state: AuditState;
  since: number;
  tail: BundleTail;
  formatWritten: boolean;
  openedFrom: OpenedFrom;
  /** The slot of the stored manifest (none: undefined), and the parts each slot holds. */
  snapshotSlot: SnapshotSlot | undefined;
  slotParts: [number, number];
  /** The chain link at the snapshot's position (the leaf hash of its last record). */
  snapshotPrev: string;
  /** The Merkle root at the snapshot's position, as its signed manifest names it ("" without one). */
  snapshotRoot: string;
  /** The snapshot's parts as read (none without one): the background check decodes them again. */
  snapshotParts: readonly Uint8Array[];
}

/** A stored snapshot that passed every check: the state at `size`, and where the chain stands. */
interface UsableSnapshot {
  state: AuditState;
  parts: readonly Uint8Array[];
  size: number;
  prev: string;
  root: string;
  since: number;
}

const utf8 = new TextEncoder();

/** Longest interval setInterval honours (a longer one fires at once). */
const MAX_INTERVAL_MS = 2 ** 31 - 1;

/**
 * Caller mistakes in the options, refused before anything is opened (RangeError/TypeError):
 * a maxBatch of 0 would make every batch empty and the commit loop spin forever.
 */
function checkOptions(o: AuditStoreOptions): void {
  const integer = (name: string, v: number | undefined, min: number): void => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < min)) throw new RangeError(`audit store: ${name} must be an integer ≥ ${min}, got ${String(v)}`);
  };
  if (typeof o.origin !== "string") throw new TypeError("audit store: origin must be a string");
  if (typeof o.clock !== "function") throw new TypeError("audit store: clock must be a function");
  integer("maxBatch", o.maxBatch, 1);
  integer("checkpointEvery", o.checkpointEvery, 0);
  integer("foldWindow", o.foldWindow, 1);
  integer("snapshotBatchBytes", o.snapshotBatchBytes, 0);
  const every = o.checkpointIntervalMs;
  if (every !== undefined && !(Number.isFinite(every) && every >= 0 && every <= MAX_INTERVAL_MS)) {
    throw new RangeError(`audit store: checkpointIntervalMs must be a number of ms in [0, ${MAX_INTERVAL_MS}], got ${String(every)}`);
  }
}

/** The commit point; AUDIT_CORRUPT when it is not {size, last}. */
function parseHead(bytes: Uint8Array | undefined): Head {
  if (bytes === undefined) return { size: 0, last: GENESIS_PREV };
  let v: unknown;
  try {
    v = parseStrict(bytes);
  } catch (e) {
    throw new AuditStoreError("AUDIT_CORRUPT", "head is not JSON", { cause: e });
  }
  const h = v as Partial<Head> | null;
  if (typeof h !== "object" || h === null || !Number.isSafeInteger(h.size) || h.size! < 0 || typeof h.last !== "string") {
    throw new AuditStoreError("AUDIT_CORRUPT", "head is not {size, last}");
  }
  return { size: h.size!, last: h.last };
}

/** The gateway id a decision's recorded input says it was measured on (replay holds it to the log's origin), if it says. */
function measuredGateway(input: unknown, seq: number): { origin: string; seq: number } | undefined {
  const env = typeof input === "object" && input !== null ? (input as { environment?: unknown }).environment : undefined;
  const id = typeof env === "object" && env !== null ? (env as { gatewayId?: unknown }).gatewayId : undefined;
  return typeof id === "string" ? { origin: id, seq } : undefined;
}

/** Where a chain walk stands: the next seq, and the leaf hash its record must name as prev. */
interface ChainCursor {
  seq: number;
  prev: string;
}

/**
 * Check one bundle's records from slot `skip` up to (not including) record `endSeq` against the
 * chain and the tree, advancing `cur` and appending each leaf to `tree`; each decoded record
 * goes to `onRecord`. AUDIT_CORRUPT on anything a writer of this log could not have written: a
 * malformed bundle or slot, a gap, a record that is not canonical or not of its seq, a broken
 * chain, a tree node stored beside a record (its leaf hash, and each subtree it completed) that
 * differs from the one recomputed from the records. Proofs are served from those stored nodes
 * and new ones are built on them, so none is taken on trust.
 */
function checkBundle(key: string, value: Uint8Array, cur: ChainCursor, tree: MerkleFrontier, skip: number, endSeq: number | undefined, onRecord: (r: AuditRecord) => void): { index: number; count: number } {
  const index = bundleOfKey(key);
  const count = bundleCount(value);
  if (index === undefined || count === undefined || !isExactBundle(value)) throw new AuditStoreError("AUDIT_CORRUPT", `bundle ${key} is malformed`);
  // Bundles before the last are full, so each must start where the previous one ended.
  if (index * BUNDLE_SIZE + skip !== cur.seq || skip > count) throw new AuditStoreError("AUDIT_CORRUPT", `record ${cur.seq} missing (next bundle is ${key})`);
  const stop = Math.min(count, endSeq === undefined ? count : endSeq - index * BUNDLE_SIZE);
  for (let i = skip; i < stop; i++) {
    const seq = cur.seq;
    const slot = slotBytes(value, count, i);
    const bytes = slot === undefined ? undefined : slotRecord(slot);
    if (slot === undefined || bytes === undefined || slotNodeCount(slot) !== nodesCompletedBy(seq)) throw new AuditStoreError("AUDIT_CORRUPT", `record ${seq}: malformed slot`);
    const d = decodeRecord(bytes);
    if (!d.ok) throw new AuditStoreError("AUDIT_CORRUPT", `record ${seq}: ${d.detail}`);
    if (d.record.seq !== seq || d.record.prev !== cur.prev) throw new AuditStoreError("AUDIT_CORRUPT", `chain broken at ${seq}`);
    const leaf = recordLeafHash(bytes);
    if (!bytesEqual(leaf, slotNode(slot, 0)!)) throw new AuditStoreError("AUDIT_CORRUPT", `record ${seq}: stored leaf hash differs from the record`);
    if (tree.size !== seq) throw new Error("tree out of step with the chain");
    const created = tree.append(leaf);
    for (let k = 1; k < created.length; k++) {
      if (!bytesEqual(created[k]!.hash, slotNode(slot, k)!)) throw new AuditStoreError("AUDIT_CORRUPT", `record ${seq}: stored tree node ${k}/${created[k]!.id.index} differs from the one recomputed from the records`);
    }
    onRecord(d.record);
    cur.prev = toB64u(leaf);
    cur.seq = seq + 1;
  }
  return { index, count };
}

/** What the background check of the records before a snapshot found (AuditStore.prefixCheck). */
export type PrefixCheck =
  | { readonly ok: true; readonly checked: number; readonly stopped?: true }
  | { readonly ok: false; readonly code: "AUDIT_CORRUPT" | "AUDIT_UNREADABLE"; readonly problem: string };

export class AuditStore {
  readonly #backend: AuditBackend;
  readonly #opts: AuditStoreOptions;
  /** Undefined once handed off: the owner folds from then on (one copy, folded once). */
  #state: AuditState | undefined;
  #frontier: MerkleFrontier;
  #prev: string;
  #sinceCheckpoint: number;
  /** The stored partial bundle (its bytes kept so that extending it needs no read). */
  #tail: BundleTail;
  #formatWritten: boolean;
  /** The log's last checkpoint (a snapshot's header records it; the state may be handed off). */
  #lastCheckpoint: CheckpointPayload | undefined;
  /** The slot the stored manifest names (undefined: none stored), and the parts each slot holds. */
  #snapshotSlot: SnapshotSlot | undefined;
  readonly #slotParts: [number, number];
  /** Snapshots being encoded and written, one after the other, outside the commit queue. */
  #snapshotWrites: Promise<void> = Promise.resolve();
  /**
   * Set once the store refused an entry after handing its state off: the owner folds each entry
   * as it queues it, so its state now holds a record the log does not have, and no state it
   * captures from then on is the log's fold (queueSnapshot refuses them all).
   */
  #ownerDiverged = false;
  readonly #openedFrom: OpenedFrom;
  readonly #prefixCheck: Promise<PrefixCheck>;
  /** Set when close() begins: from then on nothing new is queued (only what was is written). */
  #closing = false;
  #closeDone: Promise<void> | undefined;
  #queue: Pending[] = [];
  #draining = false;
  #failed: unknown = undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  private constructor(backend: AuditBackend, opts: AuditStoreOptions, loaded: Loaded) {
    this.#backend = backend;
    this.#opts = opts;
    this.#frontier = loaded.frontier;
    this.#prev = loaded.head.last;
    this.#state = loaded.state;
    this.#sinceCheckpoint = loaded.since;
    this.#tail = loaded.tail;
    this.#formatWritten = loaded.formatWritten;
    this.#lastCheckpoint = loaded.state.lastCheckpoint;
    this.#snapshotSlot = loaded.snapshotSlot;
    this.#slotParts = loaded.slotParts;
    this.#openedFrom = loaded.openedFrom;
    const from = loaded.openedFrom.snapshotSize;
    this.#prefixCheck = from > 0 && opts.checkPrefix !== false ? this.#checkPrefix(from, loaded.snapshotPrev, loaded.snapshotRoot, loaded.snapshotParts) : Promise.resolve({ ok: true, checked: 0 });
    const every = opts.checkpointIntervalMs ?? 0;
    if (every > 0) {
      this.#timer = setInterval(() => {
        if (this.#sinceCheckpoint > 0 && this.#failed === undefined) this.checkpoint().catch(() => undefined);
      }, every);
      this.#timer.unref();
    }
  }

  /** Open (or create) a store: in a LevelDB directory, or on a given backend. */
  static async open(target: string | AuditBackend, opts: AuditStoreOptions): Promise<AuditStore> {
    checkOptions(opts);
    const backend = typeof target === "string" ? await LevelBackend.open(target) : target;
    try {
      return new AuditStore(backend, opts, await AuditStore.#load(backend, opts));
    } catch (e) {
      if (typeof target === "string") await backend.close();
      throw e;
    }
  }

  static async #load(backend: AuditBackend, opts: AuditStoreOptions): Promise<Loaded> {
    const formatWritten = await checkFormat(backend);
    const head = parseHead(await backend.get(HEAD_KEY));
    const storedFrontier = (size: number): MerkleFrontier => {
      const peaks = frontierNodeIds(size).map((id) => readStoredNode((k) => backend.getSync(k), id.level, id.index));
      if (peaks.some((p) => p === undefined)) throw new AuditStoreError("AUDIT_CORRUPT", "frontier nodes missing");
      return new MerkleFrontier(size, peaks as Uint8Array[]);
    };
    const snap = await AuditStore.#readSnapshot(backend, opts, head, storedFrontier(head.size));
    // Rebuild governance state from the log itself (event sourcing), bundle by bundle: from
    // genesis, or from a verified snapshot's position on.
    const from = snap.usable?.size ?? 0;
    const state = snap.usable?.state ?? emptyState(opts.foldWindow);
    let since = snap.usable?.since ?? 0;
    const cur: ChainCursor = { seq: from, prev: snap.usable?.prev ?? GENESIS_PREV };
    // The tree is rebuilt from the records, from genesis or from the snapshot's position (its
    // peaks there hash to the root the signed manifest names, which #readSnapshot checked).
    const frontier = from === 0 ? new MerkleFrontier() : storedFrontier(from);
    let last: { index: number; count: number; value: Uint8Array } | undefined;
    /** The origin the log's newest checkpoint names (a usable snapshot was signed for this one). */
    let namedOrigin: { origin: unknown; seq: number } | undefined;
    /** With no checkpoint yet (a crash before the first): the gateway its newest decision was measured on. */
    let measuredOn: { origin: unknown; seq: number } | undefined;
    for await (const [key, value] of backend.iterate({ ...bundleRange, gte: bundleKey(Math.floor(from / BUNDLE_SIZE)) })) {
      // The first bundle may hold records before the snapshot's position: skipped here, and
      // checked in the background once the store is open (#checkPrefix).
      const skip = last === undefined ? from % BUNDLE_SIZE : 0;
      const b = checkBundle(key, value, cur, frontier, skip, undefined, (r) => {
        applyRecord(state, r);
        since = r.type === "checkpoint" ? 0 : since + 1;
        if (r.type === "checkpoint") namedOrigin = { origin: r.checkpoint.payload.origin, seq: r.seq };
        else if (r.type === "decision") measuredOn = measuredGateway(r.input, r.seq) ?? measuredOn;
      });
      last = { index: b.index, count: b.count, value };
    }
    const prev = cur.prev;
    if (state.size !== head.size || prev !== head.last) throw new AuditStoreError("AUDIT_CORRUPT", `head says ${head.size} records, log has ${state.size}`);
    // Policy: a log is one origin's for good. Opened under another (a gateway started with
    // another id on this data dir), its next checkpoint would name a second origin and every
    // audit of it would fail from there (found by an operator's review): refused, nothing written.
    const named = namedOrigin ?? measuredOn;
    if (named !== undefined && named.origin !== opts.origin) {
      const how = named === namedOrigin ? "its checkpoint" : "the decision";
      throw new AuditStoreError("AUDIT_ORIGIN_MISMATCH", `this log is ${JSON.stringify(named.origin)}'s (${how} at seq ${named.seq} names it), not ${JSON.stringify(opts.origin)}'s: open it under that origin (a gateway's id), or give this one a data dir of its own`);
    }
    const tail = last !== undefined && last.count < BUNDLE_SIZE ? last : emptyTail(state.size / BUNDLE_SIZE);
    const openedFrom: OpenedFrom = { snapshotSize: from, recordsFolded: head.size - from, ...(snap.problem !== undefined ? { snapshotProblem: snap.problem } : {}) };
    // Parts in each slot: the current one holds what its manifest names (a snapshot's slot is
    // cleared before its parts are written); a crash part-way through writing the next one
    // leaves some in the other, which the next snapshot clears first. Counted, not assumed
    // (that read is cheap: the other slot is normally empty).
    const slotParts: [number, number] = [0, 0];
    for (const slot of [0, 1] as const) {
      if (slot === snap.slot && snap.parts !== undefined) slotParts[slot] = snap.parts;
      else for await (const _ of backend.iterate(snapshotPartRanges[slot])) slotParts[slot]++;
    }
    return { head, frontier, state, since, tail, formatWritten, openedFrom, snapshotSlot: snap.slot, slotParts, snapshotPrev: snap.usable?.prev ?? GENESIS_PREV, snapshotRoot: snap.usable?.root ?? "", snapshotParts: snap.usable?.parts ?? [] };
  }

  /**
   * The stored fold snapshot, if it passes every check: signed by this gateway's key for this
   * origin and window, at a position the log has, bound to the log by the Merkle root and the
   * chain link there (computed from the stored tree, not taken from the snapshot), every part
   * matching its digest, and decoding to a well-formed state. Otherwise the reason, and the
   * state is folded from genesis: a snapshot is a cache, the log is the truth.
   *
   * Except for what a genuine manifest (this key, this origin; usable or not) says of the log:
   * it is written only after the records it covers are synced (#commit starts a snapshot after
   * its batch's synced write, at the position that write made durable), so no crash leaves one
   * past the head or naming another root or link there. One that does proves the log was
   * truncated or rewritten since: AUDIT_CORRUPT, so the store does not open and the manifest,
   * the evidence, is never overwritten by the next snapshot.
   */
  static async #readSnapshot(backend: AuditBackend, opts: AuditStoreOptions, head: Head, frontier: MerkleFrontier): Promise<{ usable?: UsableSnapshot; problem?: string; slot?: SnapshotSlot; parts?: number }> {
    const stored = await readStoredSnapshot(backend);
    if (stored === undefined) return {};
    const c = checkStoredSnapshot(stored, { gatewayKeys: [opts.gatewayKey.keyId], origin: opts.origin, window: opts.foldWindow ?? FOLD_WINDOW });
    const slot = stored.slot;
    // Parts found in the slot: those of a refused manifest may be missing or fewer than it names.
    const parts = c.ok ? stored.parts.length : undefined;
    const refuse = (problem: string): { problem: string; slot: SnapshotSlot; parts?: number } => ({ problem, slot, ...(parts !== undefined ? { parts } : {}) });
    if (!c.ok && c.position === undefined) return refuse(c.problem);
    // Of this log: what it says of the log is checked whether or not the snapshot is usable.
    const m = c.ok ? c.manifest : c.position!;
    // Policy: evidence, not a stale cache (see above).
    const rewritten = (what: string): never => {
      throw new AuditStoreError("AUDIT_CORRUPT", `the log was truncated or rewritten: this gateway's signed snapshot manifest says it had ${m.size} records with root ${m.root}, ${what}`);
    };
    if (m.size > head.size) rewritten(`but it has ${head.size}`);
    const lookup: NodeLookup = (level, index) => {
      const h = readStoredNode((k) => backend.getSync(k), level, index);
      if (h === undefined) throw new AuditStoreError("AUDIT_CORRUPT", `tree node ${level}/${index} missing`);
      return h;
    };
    let root: string;
    let prev: string;
    try {
      root = toB64u(m.size === head.size ? frontier.root() : rootAt(m.size, lookup));
      prev = toB64u(lookup(0, m.size - 1));
    } catch (e) {
      // The fold from the first record, which checks every stored node, reports the damage.
      return refuse(`log tree unreadable at the snapshot's position (${String(e)})`);
    }
    if (root !== m.root) rewritten(`but its root there is ${root}`);
    if (prev !== m.prev) rewritten(`but its record ${m.size - 1} is another (leaf ${prev})`);
    if (!c.ok) return refuse(c.problem);
    // Every part is there: checkStoredSnapshot matched each against its digest.
    const usableParts = stored.parts.slice(0, c.manifest.parts.length) as Uint8Array[];
    return { usable: { state: c.state, parts: usableParts, size: c.manifest.size, prev: m.prev, root: m.root, since: c.manifest.since }, slot, parts: c.manifest.parts.length };
  }

  /**
   * The records before the snapshot an open started from, checked in the background as #load
   * checks the others (chain, canonical form, stored leaf hashes), a few bundles per turn of
   * the event loop. A failure makes the store unwritable: a log that contradicts itself must
   * not go on vouching for decisions.
   */
  async #checkPrefix(size: number, prevAt: string, rootAt: string, parts: readonly Uint8Array[]): Promise<PrefixCheck> {
    const cur: ChainCursor = { seq: 0, prev: GENESIS_PREV };
    const tree = new MerkleFrontier();
    const window = this.#opts.foldWindow ?? FOLD_WINDOW;
    // The records are folded as they are checked, as an open from the first record would.
    const folded = emptyState(window);
    try {
      let bundles = 0;
      for await (const [key, value] of this.#backend.iterate({ gte: bundleRange.gte, lt: bundleKey(Math.ceil(size / BUNDLE_SIZE)) })) {
        if (this.#closing) return { ok: true, checked: cur.seq, stopped: true };
        checkBundle(key, value, cur, tree, 0, size, (r) => applyRecord(folded, r));
        if (++bundles % 32 === 0) await new Promise((r) => setImmediate(r));
      }
      if (cur.seq !== size) throw new AuditStoreError("AUDIT_CORRUPT", `record ${cur.seq} missing before the snapshot at ${size}`);
      if (cur.prev !== prevAt) throw new AuditStoreError("AUDIT_CORRUPT", `record ${size - 1} is not the one the snapshot's chain link names`);
      if (toB64u(tree.root()) !== rootAt) throw new AuditStoreError("AUDIT_CORRUPT", `the records before the snapshot at ${size} do not hash to the root it names`);
      // Policy: the state open started from must be the one those records give (what replay
      // checks too, SNAPSHOT_STATE): a snapshot of a state the log never had is a log that
      // contradicts itself. Decoded again from its parts: the state open restored has moved on.
      const differs = foldDifference(folded, decodeState(parts, window));
      if (differs !== undefined) throw new AuditStoreError("AUDIT_CORRUPT", `the snapshot at ${size} is not the fold of the records before it (${differs})`);
      return { ok: true, checked: cur.seq };
    } catch (e) {
      // What the walk found stands even if close() began meanwhile; a read cut short by close does not.
      if (e instanceof AuditStoreError) {
        this.#failed ??= e;
        return { ok: false, code: "AUDIT_CORRUPT", problem: e.message };
      }
      if (this.#closing) return { ok: true, checked: cur.seq, stopped: true };
      const err = new AuditStoreError("AUDIT_UNREADABLE", `records before the snapshot could not be read: ${String(e)}`, { cause: e });
      this.#failed ??= err;
      return { ok: false, code: "AUDIT_UNREADABLE", problem: err.message };
    }
  }

  /** What the background check of the records before the snapshot found (always ok when opened without one). */
  get prefixCheck(): Promise<PrefixCheck> {
    return this.#prefixCheck;
  }

  /** The last checkpoint this log holds (written by this store or found on open). */
  get lastCheckpoint(): CheckpointPayload | undefined {
    return this.#lastCheckpoint;
  }

  /** Where open() started folding, and why a stored snapshot was not used. */
  get openedFrom(): OpenedFrom {
    return this.#openedFrom;
  }

  get size(): number {
    return this.#frontier.size;
  }

  /** False after a failed write, and once close() began: governance health reports "audit not writable" (→ deny). */
  get writable(): boolean {
    return this.#failed === undefined && !this.#closing;
  }

  #closedError(): AuditStoreError {
    return new AuditStoreError("AUDIT_CLOSED", this.#closed ? "store is closed" : "store is closing");
  }

  /** Why nothing new may be queued, if so: the store is closing (or closed), or failed. */
  #refusal(): AuditStoreError | undefined {
    if (this.#closing) return this.#closedError();
    if (this.#failed !== undefined) return new AuditStoreError("AUDIT_UNWRITABLE", "an earlier write failed", { cause: this.#failed });
    return undefined;
  }

  /** Folded governance state; read-only by contract. Gone once handed off (handOffState). */
  get state(): Readonly<AuditState> {
    if (this.#state === undefined) throw new AuditStoreError("AUDIT_STATE_HANDED_OFF", "the folded state was handed to its owner");
    return this.#state;
  }

  /**
   * Give the folded state to the one caller that will fold every later record itself (the
   * gateway's ledger, which folds each entry as it queues it). The store stops folding, so a
   * long-lived gateway keeps one copy of the state, not two, and folds each record once.
   */
  handOffState(): AuditState {
    const s = this.#state;
    if (s === undefined) throw new AuditStoreError("AUDIT_STATE_HANDED_OFF", "the folded state was already handed off");
    this.#state = undefined;
    return s;
  }

  get backend(): AuditBackend {
    return this.#backend;
  }

  root(): string {
    return toB64u(this.#frontier.root());
  }

  /** Append one record; resolves once the group-committed batch holding it is synced. */
  append(entry: AuditEntry): Promise<AppendReceipt> {
    return this.#append(entry, undefined);
  }

  /** append() for an entry the caller already encoded (records.ts prepareEntry): it is not encoded again. */
  appendPrepared(p: PreparedEntry): Promise<AppendReceipt> {
    return this.#append(p.entry, p);
  }

  #append(entry: AuditEntry, prepared: PreparedEntry | undefined): Promise<AppendReceipt> {
    const refused = this.#refusal();
    if (refused !== undefined) return Promise.reject(refused);
    const problem = entryShapeProblem(entry);
    if (problem !== undefined || entry.type === "checkpoint") {
      return Promise.reject(new AuditStoreError("AUDIT_INVALID_ENTRY", `bad entry (${problem ?? "checkpoints are written by the store"})`));
    }
    return new Promise<AppendReceipt>((resolve, reject) => {
      this.#queue.push({ kind: "entry", entry, prepared, resolve, reject });
      this.#kick();
    });
  }

  /** Write a signed checkpoint now (undefined when nothing was appended since the last one). */
  checkpoint(): Promise<Signed<CheckpointPayload> | undefined> {
    // A failed store still queues it: #commit refuses it with AUDIT_UNWRITABLE.
    if (this.#closing) return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: "checkpoint", resolve, reject });
      this.#kick();
    });
  }

  /**
   * Store a fold snapshot of this store's own state at the end of everything queued so far,
   * so that the next open folds only the records after it. Replaces the previous snapshot.
   * For a store that handed its state off, the owner snapshots through queueSnapshot.
   */
  writeSnapshot(): Promise<SnapshotInfo> {
    if (this.#state === undefined) return Promise.reject(new AuditStoreError("AUDIT_STATE_HANDED_OFF", "the folded state was handed to its owner, who snapshots it"));
    return this.#queueSnapshot(undefined);
  }

  /**
   * Store a fold snapshot of a state its owner (handOffState) captured (fold-snapshot.ts
   * captureState) right after queueing its last entry: it stands at the end of everything
   * queued so far, and is written once that is durable. A checkpoint the store inserted in
   * between does not change the fold but its last checkpoint, which the store records in the
   * snapshot itself. Resolves once the snapshot is durable and current.
   */
  queueSnapshot(captured: CapturedState): Promise<SnapshotInfo> {
    if (this.#state !== undefined) return Promise.reject(new AuditStoreError("AUDIT_INVALID_ENTRY", "this store folds its own state: use writeSnapshot"));
    return this.#queueSnapshot(captured);
  }

  #queueSnapshot(captured: CapturedState | undefined): Promise<SnapshotInfo> {
    const refused = this.#refusal();
    if (refused !== undefined) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: "snapshot", captured, resolve, reject });
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#draining) return;
    this.#draining = true;
    // Appends issued in the same tick, and all those that arrive while a batch is being
    // synced, join the next batch: one fsync for many decisions.
    queueMicrotask(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        await this.#commit(this.#take());
      }
    } finally {
      this.#draining = false;
    }
  }

  /** The next batch: up to maxBatch items, ending early at a snapshot (it stands at its batch's end). */
  #take(): Pending[] {
    const max = Math.min(this.#queue.length, this.#opts.maxBatch ?? 4096);
    let n = 0;
    while (n < max) if (this.#queue[n++]!.kind === "snapshot") break;
    return this.#queue.splice(0, n);
  }

  #checkpointRecord(frontier: MerkleFrontier, seq: number, prev: string, time: number): AuditRecord & { type: "checkpoint" } {
    const payload: CheckpointPayload = { kind: "failclosed/checkpoint/v1", origin: this.#opts.origin, size: seq, root: toB64u(frontier.root()), time };
    return { v: 1, seq, prev, time, type: "checkpoint", checkpoint: signPayload("checkpoint", payload, this.#opts.gatewayKey) };
  }

  /**
   * Build one group commit from copies of the tree, chain and partial bundle: nothing the
   * store holds changes here, so a failed write leaves it as it was. Entries that are not
   * I-JSON are rejected on the spot; the others get their receipt once the batch is durable.
   */
  #build(items: Pending[]): Batch {
    const frontier = this.#frontier.clone();
    const ops: KvOp[] = [];
    const bundles = new BundleWriter(this.#tail);
    const written: AuditRecord[] = [];
    let prev = this.#prev;
    let since = this.#sinceCheckpoint;
    const every = this.#opts.checkpointEvery ?? 1000;

    const addCheckpoint = (time: number): Signed<CheckpointPayload> => {
      const rec = this.#checkpointRecord(frontier, frontier.size, prev, time);
      prev = toB64u(bundles.appendRecord(canonicalize(rec), frontier));
      ops.push({ type: "put", key: checkpointKey(rec.checkpoint.payload.size), value: utf8.encode(String(rec.seq)) });
      written.push(rec);
      since = 0;
      return rec.checkpoint;
    };

    // Policy: one reading of the injected clock stamps the whole batch (its records become
    // durable together), read when the batch first needs it and checked there, once (#now).
    let batchTime: number | undefined;
    for (const it of items) {
      if (it.kind === "snapshot") continue;
      const time = (batchTime ??= this.#now());
      if (it.kind === "checkpoint") {
        if (since > 0) it.written = addCheckpoint(time);
        continue;
      }
      const record = recordOf(it.entry, frontier.size, prev, time);
      let json: string;
      try {
        // A prepared entry is not encoded again; a plain one is encoded whole (faster for the
        // small entries that come unprepared than preparing them here).
        json = it.prepared !== undefined ? canonicalRecord(it.prepared, record.seq, prev, time) : canonicalize(record, { maxNesting: RECORD_LIMITS.maxDepth });
        // Never acknowledge a record the log could not read back (too large, "__proto__").
        const unreadable = recordTextProblem(json);
        if (unreadable !== undefined) throw unreadable;
      } catch (e) {
        // Encoding runs before anything of this record is written, so only this append fails.
        // Its owner (handOffState) folded it when it queued it, so from here on the owner's state
        // holds a record the log does not: never to be written as the log's fold (#startSnapshot).
        if (this.#state === undefined) this.#ownerDiverged = true;
        it.reject(new AuditStoreError("AUDIT_INVALID_ENTRY", `entry is not I-JSON the log can read back (${e instanceof Error ? e.message : String(e)})`, { cause: e }));
        continue;
      }
      prev = toB64u(bundles.appendRecord(json, frontier));
      written.push(record);
      since += 1;
      it.receipt = { seq: record.seq, leafHash: prev, record };
      if (every > 0 && since >= every) addCheckpoint(time);
    }
    const tail = bundles.finish(ops);
    if (written.length > 0) {
      if (!this.#formatWritten) ops.push({ type: "put", key: FORMAT_KEY, value: FORMAT_MARKER });
      const head: Head = { size: frontier.size, last: prev };
      ops.push({ type: "put", key: HEAD_KEY, value: canonicalBytes(head) });
    }
    return { ops, written, frontier, prev, since, tail };
  }

  /**
   * The injected clock's reading, which goes into records and signed checkpoints. Policy: a
   * reading that is not a finite number (NaN, ±Infinity) is a broken clock, not a time to
   * record; it throws, so the batch fails as a failed write does and the store turns unwritable.
   */
  #now(): number {
    const t = this.#opts.clock();
    // Policy: records and signed checkpoints carry integer ms; a fractional, negative or unsafe
    // reading would be written as one every witness and replay refuses, or blamed on the entries.
    if (typeof t !== "number" || !Number.isSafeInteger(t) || t < 0) throw new RangeError(`audit store: the clock read ${String(t)}, not a time in whole ms`);
    return t;
  }

  /** Policy: after a failed synced write we cannot know what LevelDB kept; fail closed. */
  #fail(items: readonly Pending[], cause: unknown, what: string): void {
    this.#failed = cause;
    const err = new AuditStoreError("AUDIT_WRITE_FAILED", what, { cause });
    for (const it of items) it.reject(err);
  }

  async #commit(items: Pending[]): Promise<void> {
    if (this.#failed !== undefined || this.#closed) {
      const err = new AuditStoreError(this.#closed ? "AUDIT_CLOSED" : "AUDIT_UNWRITABLE", "store cannot write", { cause: this.#failed });
      for (const it of items) it.reject(err);
      return;
    }
    let b: Batch;
    try {
      b = this.#build(items);
    } catch (e) {
      // A bug (a signing key that cannot sign, a broken clock, a broken invariant): no append may pass.
      this.#fail(items, e, `could not build the batch (${e instanceof Error ? e.message : String(e)})`);
      return;
    }
    if (b.written.length > 0) {
      try {
        await this.#backend.batch(b.ops, { sync: true });
      } catch (e) {
        this.#fail(items, e, "synced batch write failed");
        return;
      }
      this.#formatWritten = true;
    }
    this.#frontier = b.frontier;
    this.#prev = b.prev;
    this.#sinceCheckpoint = b.since;
    this.#tail = b.tail;
    const state = this.#state;
    if (state !== undefined) for (const r of b.written) applyRecord(state, r);
    for (const r of b.written) if (r.type === "checkpoint") this.#lastCheckpoint = r.checkpoint.payload;
    if (this.#failed !== undefined) {
      // The background check of the records before the snapshot failed while this batch was
      // being written: it is on disk, but a log that contradicts itself vouches for nothing, so
      // no append of it is acknowledged (and no snapshot is written).
      const err = new AuditStoreError("AUDIT_UNWRITABLE", "the log failed its check while this batch was written", { cause: this.#failed });
      for (const it of items) it.reject(err);
      return;
    }
    let snapshot: (Pending & { kind: "snapshot" }) | undefined;
    for (const it of items) {
      switch (it.kind) {
        case "entry":
          if (it.receipt !== undefined) it.resolve(it.receipt);
          break;
        case "checkpoint":
          it.resolve(it.written);
          break;
        case "snapshot":
          snapshot = it;
          break;
        default:
          it satisfies never;
      }
    }
    for (const r of b.written) if (r.type === "checkpoint") this.#publish(r.checkpoint);
    if (snapshot !== undefined) this.#startSnapshot(snapshot);
  }

  /**
   * Take a snapshot's position now, at the end of its batch, which is durable (and the state,
   * for a store that folds its own: captured here, before any later batch folds into it);
   * encode and write it after the snapshots before it, outside the commit queue, so that group
   * commits go on meanwhile.
   */
  #startSnapshot(it: Pending & { kind: "snapshot" }): void {
    let captured: CapturedState;
    let at: SnapshotPosition;
    try {
      const size = this.#frontier.size;
      if (size === 0) throw new AuditStoreError("AUDIT_INVALID_ENTRY", "nothing to snapshot in an empty log");
      // Policy: a state captured by the owner after it folded an entry the log refused (in this
      // batch or an earlier one; all were queued before this snapshot) is not the fold of the
      // log at this position: writing it would hand the next open a state the log never had.
      if (it.captured !== undefined && this.#ownerDiverged) throw new AuditStoreError("AUDIT_SNAPSHOT_DIVERGED", "the captured state folded an entry the log refused: not written");
      const own = this.#state;
      const c = it.captured ?? (own !== undefined ? captureState(own) : undefined);
      if (c === undefined) throw new AuditStoreError("AUDIT_STATE_HANDED_OFF", "no state to snapshot");
      captured = c;
      at = { size, root: toB64u(this.#frontier.root()), prev: this.#prev, since: this.#sinceCheckpoint, lastCheckpoint: this.#lastCheckpoint };
    } catch (e) {
      it.reject(e);
      return;
    }
    // #writeSnapshot never rejects (it settles `it` instead), so neither does the chain.
    this.#snapshotWrites = this.#snapshotWrites.then(() => this.#writeSnapshot(it, captured, at));
  }

  /**
   * Encode a snapshot in slices (the event loop runs between them) and write it into the slot
   * the current one does not use, part batch by part batch, each synced; then make it current
   * with one synced batch that writes its manifest and deletes the other slot's parts. A
   * failure, a crash or a failed log write (nothing more is written then) at any point before
   * that batch leaves the current snapshot as it was: only the snapshot is rejected.
   */
  async #writeSnapshot(it: Pending & { kind: "snapshot" }, captured: CapturedState, at: SnapshotPosition): Promise<void> {
    const unwritable = (): AuditStoreError => new AuditStoreError("AUDIT_UNWRITABLE", "the log failed a write or its check: no snapshot", { cause: this.#failed });
    const write = async (ops: KvOp[]): Promise<void> => {
      if (this.#failed !== undefined) throw unwritable();
      await this.#backend.batch(ops, { sync: true });
    };
    try {
      // The current slot as stored, not as remembered: a manifest batch that reported failure
      // may still have landed, and then its slot is the one to keep.
      const current = await this.#backend.get(SNAPSHOT_MANIFEST_KEY);
      const stored = current === undefined ? undefined : manifestLocation(current);
      if (stored !== undefined) this.#snapshotSlot = stored.slot;
      const slot: SnapshotSlot = this.#snapshotSlot === 0 ? 1 : 0;
      const other: SnapshotSlot = slot === 0 ? 1 : 0;
      if (stored !== undefined && this.#slotParts[other] === 0) this.#slotParts[other] = stored.parts;
      const steps = encodeSteps(captured);
      let step = steps.next();
      while (step.done !== true) {
        await pause();
        step = steps.next();
      }
      const encoded = step.value;
      const parts = sealState(encoded, at.size, at.lastCheckpoint);
      // What a crash part-way through an earlier write left in this slot.
      const stale = this.#slotParts[slot];
      if (stale > 0) {
        await write(Array.from({ length: stale }, (_, i): KvOp => ({ type: "del", key: snapshotPartKey(i, slot) })));
        this.#slotParts[slot] = 0;
      }
      const digests: string[] = [];
      let ops: KvOp[] = [];
      let bytes = 0;
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!;
        digests.push(sha256B64u(part));
        ops.push({ type: "put", key: snapshotPartKey(i, slot), value: part });
        bytes += part.length;
        if (bytes >= (this.#opts.snapshotBatchBytes ?? SNAPSHOT_BATCH_BYTES) && i < parts.length - 1) {
          // Counted before the write: a failed write may still have left them.
          this.#slotParts[slot] = i + 1;
          await write(ops);
          ops = [];
          bytes = 0;
          await pause();
        }
      }
      const manifest: SnapshotManifest = {
        kind: SNAPSHOT_KIND,
        origin: this.#opts.origin,
        size: at.size,
        root: at.root,
        prev: at.prev,
        since: at.since,
        window: encoded.header.window,
        fold: encoded.header.fold,
        parts: digests,
        slot,
        time: this.#now(),
      };
      ops.push({ type: "put", key: SNAPSHOT_MANIFEST_KEY, value: canonicalBytes(signPayload("snapshot", manifest, this.#opts.gatewayKey)) });
      for (let i = 0; i < this.#slotParts[other]; i++) ops.push({ type: "del", key: snapshotPartKey(i, other) });
      this.#slotParts[slot] = parts.length;
      await write(ops);
      this.#snapshotSlot = slot;
      this.#slotParts[other] = 0;
      // The background check failed while the batch was written: it is on disk, but reported as
      // refused, as appends are (the next open checks everything before it again anyway).
      if (this.#failed !== undefined) throw unwritable();
      it.resolve({ size: at.size, parts: parts.length, bytes: parts.reduce((a, p) => a + p.length, 0) });
    } catch (e) {
      it.reject(e);
    }
  }

  #publish(cp: Signed<CheckpointPayload>): void {
    const hook = this.#opts.onCheckpoint;
    if (hook === undefined) return;
    const onErr = this.#opts.onPublishError ?? (() => undefined);
    try {
      Promise.resolve(hook(cp)).catch(onErr);
    } catch (e) {
      onErr(e);
    }
  }

  /** The record's canonical bytes (without the tree nodes stored beside them). */
  async getRecordBytes(seq: number): Promise<Uint8Array | undefined> {
    return readStoredRecord(this.#backend, seq);
  }

  async getRecord(seq: number): Promise<AuditRecord | undefined> {
    const bytes = await this.getRecordBytes(seq);
    if (bytes === undefined) return undefined;
    const d = decodeRecord(bytes);
    if (!d.ok) throw new AuditStoreError("AUDIT_CORRUPT", `record ${seq}: ${d.detail}`);
    return d.record;
  }

  #lookup: NodeLookup = (level, index) => {
    const h = readStoredNode((k) => this.#backend.getSync(k), level, index);
    if (h === undefined) throw new AuditStoreError("AUDIT_CORRUPT", `tree node ${level}/${index} missing`);
    return h;
  };

  /** Inclusion proof for record `seq` in the tree of `size` records (default: current size). */
  proveInclusion(seq: number, size = this.size): InclusionProofJson {
    if (!Number.isSafeInteger(seq) || seq < 0 || seq >= size || size > this.size) {
      throw new AuditStoreError("AUDIT_NOT_FOUND", `no record ${seq} in a tree of size ${size}`);
    }
    const proof = inclusionProof(seq, size, this.#lookup);
    return { seq, size, leafHash: toB64u(this.#lookup(0, seq)), proof: proof.map(toB64u), root: toB64u(this.rootAt(size)) };
  }

  /** Consistency proof between two tree sizes, 0 < m ≤ n ≤ size. */
  proveConsistency(m: number, n = this.size): { size1: number; size2: number; proof: string[] } {
    if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 1 || m > n || n > this.size) {
      throw new AuditStoreError("AUDIT_NOT_FOUND", `no consistency proof between ${m} and ${n} (size ${this.size})`);
    }
    return { size1: m, size2: n, proof: consistencyProof(m, n, this.#lookup).map(toB64u) };
  }

  rootAt(size: number): Uint8Array {
    return size === this.size ? this.#frontier.root() : rootAt(size, this.#lookup);
  }

  /** Every checkpoint written to this log, oldest first. */
  async checkpoints(): Promise<Signed<CheckpointPayload>[]> {
    const out: Signed<CheckpointPayload>[] = [];
    for await (const [, v] of this.#backend.iterate(checkpointRange)) {
      const rec = await this.getRecord(Number(new TextDecoder().decode(v)));
      if (rec?.type === "checkpoint") out.push(rec.checkpoint);
    }
    return out;
  }

  /**
   * Refuse anything new (AUDIT_CLOSED), write what was already queued and the snapshots already
   * started, then close the backend. Policy: close() must end even while writers keep calling
   * append, so it drains only what was queued before it began. Calls after the first share it.
   */
  close(): Promise<void> {
    this.#closeDone ??= this.#close();
    return this.#closeDone;
  }

  async #close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#closing = true;
    await this.#prefixCheck;
    // Queued appends are committed and started snapshots written (those may queue nothing new).
    for (;;) {
      while (this.#draining || this.#queue.length > 0) await pause();
      const writes = this.#snapshotWrites;
      await writes;
      if (writes === this.#snapshotWrites && !this.#draining && this.#queue.length === 0) break;
    }
    this.#closed = true;
    await this.#backend.close();
  }
}

/** Decode a base64url root/hash from a proof JSON, or undefined. */
export const hashFromB64u = (s: unknown): Uint8Array | undefined => fromB64u(s, 32);
