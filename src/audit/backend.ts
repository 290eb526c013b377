// The audit store's storage port: a small ordered key-value interface with a LevelDB adapter
// (the durable one) and an in-memory one (tests, dry runs). The store only ever writes through
// `batch`, so one group commit is one atomic LevelDB write batch: after a crash either all of
// it is there or none of it.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Level } from "level";
import { causeChain } from "../infra/error-causes.ts";

export type KvOp = { readonly type: "put"; readonly key: string; readonly value: Uint8Array } | { readonly type: "del"; readonly key: string };

export interface KvRange {
  readonly gte?: string;
  readonly lt?: string;
  readonly reverse?: boolean;
  readonly limit?: number;
}

export interface AuditBackend {
  readonly kind: "level" | "memory";
  /** Atomic write of all ops; with `sync` it resolves only once the data is on disk. */
  batch(ops: readonly KvOp[], opts: { readonly sync: boolean }): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  /** Synchronous point read: proofs read O(log n) nodes and must stay well under 1 ms. */
  getSync(key: string): Uint8Array | undefined;
  getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]>;
  /** Entries in key order (UTF-8 byte order = code-point order for the ASCII keys we use). */
  iterate(range: KvRange): AsyncIterable<[string, Uint8Array]>;
  close(): Promise<void>;
}

export class BackendError extends Error {
  override readonly name = "BackendError";
  /**
   * BACKEND_LOCKED: the directory's LevelDB is open elsewhere (another process, or another open in
   * this one). BACKEND_MISSING: no database there, for an opener that must not make one.
   */
  readonly code: "BACKEND_CLOSED" | "BACKEND_IO" | "BACKEND_LOCKED" | "BACKEND_MISSING";
  constructor(code: BackendError["code"], message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }
}

/** abstract-level's "locked" (code LEVEL_LOCKED), anywhere in the cause chain. */
function isLocked(e: unknown): boolean {
  for (const c of causeChain(e)) if ((c as { code?: unknown }).code === "LEVEL_LOCKED") return true;
  return false;
}

const toLevelRange = (r: KvRange): { gte?: string; lt?: string; reverse?: boolean; limit?: number } => {
  const o: { gte?: string; lt?: string; reverse?: boolean; limit?: number } = {};
  if (r.gte !== undefined) o.gte = r.gte;
  if (r.lt !== undefined) o.lt = r.lt;
  if (r.reverse !== undefined) o.reverse = r.reverse;
  if (r.limit !== undefined) o.limit = r.limit;
  return o;
};

export class LevelBackend implements AuditBackend {
  readonly kind = "level";
  readonly #db: Level<string, Uint8Array>;

  private constructor(db: Level<string, Uint8Array>) {
    this.#db = db;
  }

  /** `createIfMissing: false` for auditors: a mistyped path must be an error, not an empty log. */
  static async open(dir: string, opts: { createIfMissing?: boolean } = {}): Promise<LevelBackend> {
    // LevelDB makes the directory, its LOCK and LOG before it finds no database there: a read-only
    // opener (an auditor) given a wrong path must leave no trace, nor one in a gateway's data dir.
    if (opts.createIfMissing === false && !existsSync(join(dir, "CURRENT"))) {
      const hint = existsSync(join(dir, "audit", "CURRENT")) ? `; a gateway keeps its log in its data dir's audit/ folder: ${join(dir, "audit")}` : "";
      throw new BackendError("BACKEND_MISSING", `no LevelDB database at ${dir} (no CURRENT file)${hint}`);
    }
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view", createIfMissing: opts.createIfMissing ?? true });
    try {
      await db.open();
    } catch (e) {
      if (isLocked(e)) throw new BackendError("BACKEND_LOCKED", `LevelDB at ${dir} is in use (another process, or another open of it in this one, holds its lock)`, { cause: e });
      throw new BackendError("BACKEND_IO", `cannot open LevelDB at ${dir}`, { cause: e });
    }
    return new LevelBackend(db);
  }

  async batch(ops: readonly KvOp[], opts: { readonly sync: boolean }): Promise<void> {
    try {
      await this.#db.batch(ops.map((op) => ({ ...op })), { sync: opts.sync });
    } catch (e) {
      throw new BackendError("BACKEND_IO", "LevelDB batch write failed", { cause: e });
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    return this.#db.get(key);
  }

  getSync(key: string): Uint8Array | undefined {
    return this.#db.getSync(key);
  }

  async getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return this.#db.getMany([...keys]);
  }

  async *iterate(range: KvRange): AsyncIterable<[string, Uint8Array]> {
    const it = this.#db.iterator(toLevelRange(range));
    try {
      for (;;) {
        // nextv amortizes the native round trip over many entries.
        const chunk = await it.nextv(1000);
        if (chunk.length === 0) return;
        for (const entry of chunk) yield entry;
      }
    } finally {
      await it.close();
    }
  }

  async close(): Promise<void> {
    await this.#db.close();
  }
}

/** A detached copy. Not `.slice()`: on a Buffer (a Uint8Array too) that is a view, not a copy. */
const copyBytes = (b: Uint8Array): Uint8Array => new Uint8Array(b);

/** The contents of a memory backend; outlives `close()` so a test can reopen it. */
export interface MemoryData {
  readonly map: Map<string, Uint8Array>;
  /** Sorted view of the keys, rebuilt lazily after the key set changes. */
  readonly keys: string[];
}

export class MemoryBackend implements AuditBackend {
  readonly kind = "memory";
  readonly data: MemoryData;
  readonly #map: Map<string, Uint8Array>;
  #closed = false;

  constructor(data: MemoryData = { map: new Map(), keys: [] }) {
    this.data = data;
    this.#map = data.map;
  }

  #assertOpen(): void {
    if (this.#closed) throw new BackendError("BACKEND_CLOSED", "memory backend is closed");
  }

  /** Sorted keys, rebuilt lazily: writes stay O(1), a scan after writes pays one sort. */
  #sortedKeys(): string[] {
    const keys = this.data.keys;
    if (keys.length !== this.#map.size) {
      keys.length = 0;
      for (const k of this.#map.keys()) keys.push(k);
      keys.sort();
    }
    return keys;
  }

  #lowerBound(keys: readonly string[], key: string): number {
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  batch(ops: readonly KvOp[], _opts: { readonly sync: boolean }): Promise<void> {
    this.#assertOpen();
    for (const op of ops) {
      const had = this.#map.has(op.key);
      // Copy: a caller reusing its buffer must not rewrite history.
      if (op.type === "put") this.#map.set(op.key, copyBytes(op.value));
      else this.#map.delete(op.key);
      // Any change to the key set invalidates the sorted view (sizes may still match after put+del).
      if (had !== this.#map.has(op.key)) this.data.keys.length = 0;
    }
    return Promise.resolve();
  }

  get(key: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.getSync(key));
  }

  getSync(key: string): Uint8Array | undefined {
    this.#assertOpen();
    const v = this.#map.get(key);
    return v === undefined ? undefined : copyBytes(v);
  }

  getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return Promise.resolve(keys.map((k) => this.getSync(k)));
  }

  async *iterate(range: KvRange): AsyncIterable<[string, Uint8Array]> {
    this.#assertOpen();
    // Snapshot the key range first, as LevelDB iterators read from a snapshot.
    const all = this.#sortedKeys();
    const start = range.gte === undefined ? 0 : this.#lowerBound(all, range.gte);
    const end = range.lt === undefined ? all.length : this.#lowerBound(all, range.lt);
    let keys = all.slice(start, Math.max(start, end));
    if (range.reverse === true) keys.reverse();
    if (range.limit !== undefined && range.limit >= 0) keys = keys.slice(0, range.limit);
    const entries = keys.map((k): [string, Uint8Array] => [k, copyBytes(this.#map.get(k)!)]);
    for (const e of entries) yield await Promise.resolve(e);
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
