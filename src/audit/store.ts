// The audit store (DESIGN §5): an append-only, hash-chained, Merkle-committed log in LevelDB
// with group commit and signed checkpoints. An append resolves only once its batch is synced:
// the gateway awaits it before letting a task execute (write-ahead).
import { canonicalBytes } from "../canonical/jcs.ts";
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload, type Signed } from "../crypto/signing.ts";
import { LevelBackend, type AuditBackend, type KvOp } from "./backend.ts";
import { applyRecord, emptyState, type AuditState } from "./fold.ts";
import { HEAD_KEY, checkpointKey, checkpointRange, packStored, readStoredNode, recordKey, recordRange, unpackStored } from "./keys.ts";
import { MerkleFrontier, consistencyProof, frontierNodeIds, inclusionProof, rootAt, type NodeLookup } from "./merkle.ts";
import { GENESIS_PREV, decodeRecord, entryShapeProblem, recordLeafHash, type AuditEntry, type AuditRecord, type CheckpointPayload } from "./records.ts";

export type AuditStoreErrorCode =
  | "AUDIT_INVALID_ENTRY" // caller bug: entry not I-JSON or not a known record shape
  | "AUDIT_WRITE_FAILED" // the synced batch holding this append failed
  | "AUDIT_UNWRITABLE" // an earlier write failed: the store refuses writes until reopened
  | "AUDIT_CLOSED"
  | "AUDIT_CORRUPT" // the stored log contradicts itself on open
  | "AUDIT_NOT_FOUND";

export class AuditStoreError extends Error {
  override readonly name = "AuditStoreError";
  readonly code: AuditStoreErrorCode;
  constructor(code: AuditStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }
}

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
}

export interface AppendReceipt {
  readonly seq: number;
  /** base64url RFC 6962 leaf hash of the record. */
  readonly leafHash: string;
  readonly record: AuditRecord;
}

export interface InclusionProofJson {
  readonly seq: number;
  readonly size: number;
  readonly leafHash: string;
  readonly proof: string[];
  readonly root: string;
}

type Pending =
  | { readonly kind: "entry"; readonly entry: AuditEntry; resolve(r: AppendReceipt): void; reject(e: unknown): void }
  | { readonly kind: "checkpoint"; resolve(cp: Signed<CheckpointPayload> | undefined): void; reject(e: unknown): void };

interface Head {
  size: number;
  last: string;
}

export class AuditStore {
  readonly #backend: AuditBackend;
  readonly #opts: AuditStoreOptions;
  readonly #state: AuditState;
  #frontier: MerkleFrontier;
  #prev: string;
  #sinceCheckpoint: number;
  #queue: Pending[] = [];
  #draining = false;
  #failed: unknown = undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  private constructor(backend: AuditBackend, opts: AuditStoreOptions, head: Head, frontier: MerkleFrontier, state: AuditState, since: number) {
    this.#backend = backend;
    this.#opts = opts;
    this.#frontier = frontier;
    this.#prev = head.last;
    this.#state = state;
    this.#sinceCheckpoint = since;
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
    const backend = typeof target === "string" ? await LevelBackend.open(target) : target;
    try {
      const { head, frontier, state, since } = await AuditStore.#load(backend);
      return new AuditStore(backend, opts, head, frontier, state, since);
    } catch (e) {
      if (typeof target === "string") await backend.close();
      throw e;
    }
  }

  static async #load(backend: AuditBackend): Promise<{ head: Head; frontier: MerkleFrontier; state: AuditState; since: number }> {
    const headBytes = await backend.get(HEAD_KEY);
    const head: Head = headBytes === undefined ? { size: 0, last: GENESIS_PREV } : (parseStrict(headBytes) as unknown as Head);
    const ids = frontierNodeIds(head.size);
    const peaks = ids.map((id) => readStoredNode((k) => backend.getSync(k), id.level, id.index));
    if (peaks.some((p) => p === undefined)) throw new AuditStoreError("AUDIT_CORRUPT", "frontier nodes missing");
    const frontier = new MerkleFrontier(head.size, peaks as Uint8Array[]);
    // Rebuild governance state from the log itself (event sourcing).
    const state = emptyState();
    let since = 0;
    let prev = GENESIS_PREV;
    for await (const [, value] of backend.iterate(recordRange)) {
      const bytes = unpackStored(state.size, value)?.record ?? new Uint8Array(0);
      const d = decodeRecord(bytes);
      if (!d.ok) throw new AuditStoreError("AUDIT_CORRUPT", `record ${state.size}: ${d.detail}`);
      if (d.record.seq !== state.size || d.record.prev !== prev) throw new AuditStoreError("AUDIT_CORRUPT", `chain broken at ${state.size}`);
      applyRecord(state, d.record);
      prev = toB64u(recordLeafHash(bytes));
      since = d.record.type === "checkpoint" ? 0 : since + 1;
    }
    if (state.size !== head.size || prev !== head.last) throw new AuditStoreError("AUDIT_CORRUPT", `head says ${head.size} records, log has ${state.size}`);
    return { head, frontier, state, since };
  }

  get size(): number {
    return this.#frontier.size;
  }

  /** False after a failed write: governance health reports "audit not writable" (→ deny). */
  get writable(): boolean {
    return this.#failed === undefined && !this.#closed;
  }

  /** Folded governance state; read-only by contract. */
  get state(): Readonly<AuditState> {
    return this.#state;
  }

  get backend(): AuditBackend {
    return this.#backend;
  }

  root(): string {
    return toB64u(this.#frontier.root());
  }

  /** Append one record; resolves once the group-committed batch holding it is synced. */
  append(entry: AuditEntry): Promise<AppendReceipt> {
    if (this.#closed) return Promise.reject(new AuditStoreError("AUDIT_CLOSED", "store is closed"));
    if (this.#failed !== undefined) return Promise.reject(new AuditStoreError("AUDIT_UNWRITABLE", "an earlier write failed", { cause: this.#failed }));
    const problem = entryShapeProblem(entry);
    if (problem !== undefined || entry.type === "checkpoint") {
      return Promise.reject(new AuditStoreError("AUDIT_INVALID_ENTRY", `bad entry (${problem ?? "checkpoints are written by the store"})`));
    }
    return new Promise<AppendReceipt>((resolve, reject) => {
      this.#queue.push({ kind: "entry", entry, resolve, reject });
      this.#kick();
    });
  }

  /** Write a signed checkpoint now (undefined when nothing was appended since the last one). */
  checkpoint(): Promise<Signed<CheckpointPayload> | undefined> {
    if (this.#closed) return Promise.reject(new AuditStoreError("AUDIT_CLOSED", "store is closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: "checkpoint", resolve, reject });
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
        const items = this.#queue.splice(0, this.#opts.maxBatch ?? 4096);
        await this.#commit(items);
      }
    } finally {
      this.#draining = false;
    }
  }

  #checkpointRecord(frontier: MerkleFrontier, seq: number, prev: string, time: number): AuditRecord {
    const payload: CheckpointPayload = { kind: "failclosed/checkpoint/v1", origin: this.#opts.origin, size: seq, root: toB64u(frontier.root()), time };
    return { v: 1, seq, prev, time, type: "checkpoint", checkpoint: signPayload("checkpoint", payload, this.#opts.gatewayKey) };
  }

  async #commit(items: Pending[]): Promise<void> {
    if (this.#failed !== undefined || this.#closed) {
      const err = new AuditStoreError(this.#closed ? "AUDIT_CLOSED" : "AUDIT_UNWRITABLE", "store cannot write", { cause: this.#failed });
      for (const it of items) it.reject(err);
      return;
    }
    // Work on a copy of the frontier: a failed write must leave the in-memory tree untouched.
    const frontier = this.#frontier.clone();
    let prev = this.#prev;
    let since = this.#sinceCheckpoint;
    const ops: KvOp[] = [];
    const written: { record: AuditRecord; leaf: string }[] = [];
    const outcomes: ((() => void) | undefined)[] = [];
    const every = this.#opts.checkpointEvery ?? 1000;

    const add = (record: AuditRecord): string => {
      const bytes = canonicalBytes(record);
      const leaf = recordLeafHash(bytes);
      ops.push({ type: "put", key: recordKey(record.seq), value: packStored(frontier.append(leaf).map((n) => n.hash), bytes) });
      if (record.type === "checkpoint") {
        ops.push({ type: "put", key: checkpointKey(record.checkpoint.payload.size), value: new TextEncoder().encode(String(record.seq)) });
        since = 0;
      } else {
        since += 1;
      }
      prev = toB64u(leaf);
      written.push({ record, leaf: prev });
      return prev;
    };

    for (const it of items) {
      const time = this.#opts.clock();
      if (it.kind === "checkpoint") {
        if (since === 0) {
          outcomes.push(() => it.resolve(undefined));
          continue;
        }
        const rec = this.#checkpointRecord(frontier, frontier.size, prev, time);
        add(rec);
        outcomes.push(() => it.resolve(rec.type === "checkpoint" ? rec.checkpoint : undefined));
        continue;
      }
      const record = { ...it.entry, v: 1, seq: frontier.size, prev, time } as AuditRecord;
      let leaf: string;
      try {
        leaf = add(record);
      } catch (e) {
        // Encoding runs before any state of this batch changes, so only this append fails.
        it.reject(new AuditStoreError("AUDIT_INVALID_ENTRY", "entry is not I-JSON", { cause: e }));
        continue;
      }
      outcomes.push(() => it.resolve({ seq: record.seq, leafHash: leaf, record }));
      if (every > 0 && since >= every) add(this.#checkpointRecord(frontier, frontier.size, prev, time));
    }
    if (ops.length > 0) {
      const head: Head = { size: frontier.size, last: prev };
      ops.push({ type: "put", key: HEAD_KEY, value: canonicalBytes(head) });
      try {
        await this.#backend.batch(ops, { sync: true });
      } catch (e) {
        // Policy: after a failed synced write we cannot know what LevelDB kept; fail closed.
        this.#failed = e;
        const err = new AuditStoreError("AUDIT_WRITE_FAILED", "synced batch write failed", { cause: e });
        for (const it of items) it.reject(err);
        return;
      }
    }
    this.#frontier = frontier;
    this.#prev = prev;
    this.#sinceCheckpoint = since;
    for (const w of written) applyRecord(this.#state, w.record);
    for (const o of outcomes) o?.();
    for (const w of written) if (w.record.type === "checkpoint") this.#publish(w.record.checkpoint);
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
    const v = await this.#backend.get(recordKey(seq));
    return v === undefined ? undefined : unpackStored(seq, v)?.record;
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

  /** Wait for queued appends, then close the backend. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    while (this.#draining || this.#queue.length > 0) await new Promise((r) => setImmediate(r));
    this.#closed = true;
    await this.#backend.close();
  }
}

/** Decode a base64url root/hash from a proof JSON, or undefined. */
export const hashFromB64u = (s: unknown): Uint8Array | undefined => fromB64u(s, 32);
