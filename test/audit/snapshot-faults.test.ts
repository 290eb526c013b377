// Fold snapshots under storage faults (store.ts #writeSnapshot, keys.ts slots s/p… and s/q…): a
// property over random programs of appends, snapshots queued without being awaited (a store's
// own state or a gateway ledger's projection), faults armed on the storage backend, and
// reopens, some of them after a simulated crash. The backend is real LevelDB in a temp dir or
// the in-memory one, wrapped to inject faults: a batch that fails before it lands, a batch that
// lands and then reports failure ("unclear"), and a crash (every batch from some point on fails
// before landing). Crypto and the store itself are real.
//
// After every reopen: every acknowledged append is in the log with its leaf hash; the state is
// the fold from the first record; no stored snapshot is ever refused (a failed or unclear write
// leaves the previous one usable); the snapshot used is exactly the last manifest that landed;
// the current slot holds exactly the parts its manifest names, and the other slot holds parts
// only after a snapshot write was cut short. A resolved snapshot stands at or before the end of
// the log, after every acknowledged append queued before it and before every one queued after.
//
// Runs: FAILCLOSED_SNAPSHOT_FAULT_RUNS random programs per backend (default 80; the
// hand-written examples that fire each fault kind run on top of them), e.g.
//   FAILCLOSED_SNAPSHOT_FAULT_RUNS=500 npx vitest run test/audit/snapshot-faults.test.ts
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AuditBackend, KvOp } from "../../src/audit/backend.ts";
import { emptyState, fold, type AuditState } from "../../src/audit/fold.ts";
import { HEAD_KEY, SNAPSHOT_MANIFEST_KEY, snapshotPartKey, snapshotPartRanges, type SnapshotSlot } from "../../src/audit/keys.ts";
import { recordLeafHash, type AuditEntry, type AuditRecord } from "../../src/audit/records.ts";
import { AuditStore, AuditStoreError, type AppendReceipt, type AuditStoreOptions, type SnapshotInfo, type SnapshotManifest } from "../../src/audit/store.ts";
import { parseStrict } from "../../src/canonical/strict-parse.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import type { Signed } from "../../src/crypto/signing.ts";
import { Ledger } from "../../src/gateway/ledger.ts";
import { HARNESSES, claimDecision as decision, claimOutcome as outcome, foldView as view, storeOptions, type BackendHarness, evidenceEntry as evidence, revocationEntry as revocation, trustEntry as trust, withBatch } from "./support.ts";

const RUNS = Number(process.env["FAILCLOSED_SNAPSHOT_FAULT_RUNS"] ?? 80);
/** A small window, so that the fold forgets within a program. */
const W = 23;


/**
 * Each fault lets `k` batches it applies to through, then hits the next one. parts: a batch that
 * puts snapshot parts fails before landing. manifest-fail / manifest-unclear: a batch that
 * writes the manifest fails before landing / lands and then throws. next / next-unclear: the
 * same for a batch of any kind. log / log-unclear: a log batch (it writes the head). crash:
 * after `k` more batches land, none does again.
 */
type FaultKind = "parts" | "manifest-fail" | "manifest-unclear" | "next" | "next-unclear" | "log" | "log-unclear" | "crash";
const FAULT_KINDS: readonly FaultKind[] = ["parts", "manifest-fail", "manifest-unclear", "next", "next-unclear", "log", "log-unclear", "crash"];

type Op =
  | { t: "task"; allow: boolean; nonce: number; done: boolean }
  | { t: "dupe"; of: number; nonce: number }
  | { t: "out"; of: number }
  | { t: "trust"; i: number }
  | { t: "revoke"; i: number }
  | { t: "idle" }
  | { t: "checkpoint" }
  | { t: "snapshot" }
  | { t: "fault"; kind: FaultKind; k: number }
  | { t: "yield"; n: number }
  | { t: "await" }
  | { t: "reopen"; crash: boolean; ledger: boolean };

interface Program {
  ops: Op[];
  /** The first store instance snapshots through a ledger (later ones: as their reopen says). */
  ledger: boolean;
  /** The ledgers' periodic snapshots (0 = only when the program asks). */
  snapshotEvery: number;
  checkpointEvery: number;
  maxBatch: number;
  snapshotBatchBytes: number;
}

// Mostly snapshot faults: a log fault ends what a store instance can write.
const faultKindArb: fc.Arbitrary<FaultKind> = fc.oneof(
  { weight: 3, arbitrary: fc.constant("parts" as const) },
  { weight: 2, arbitrary: fc.constant("manifest-fail" as const) },
  { weight: 3, arbitrary: fc.constant("manifest-unclear" as const) },
  { weight: 1, arbitrary: fc.constantFrom("next" as const, "next-unclear" as const, "log" as const, "log-unclear" as const) },
  { weight: 2, arbitrary: fc.constant("crash" as const) },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ t: fc.constant("task" as const), allow: fc.boolean(), nonce: fc.nat(9), done: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("dupe" as const), of: fc.nat(60), nonce: fc.nat(9) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("out" as const), of: fc.nat(60) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("trust" as const), i: fc.nat(9) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("revoke" as const), i: fc.nat(9) }) },
  { weight: 1, arbitrary: fc.constant({ t: "idle" as const }) },
  { weight: 1, arbitrary: fc.constant({ t: "checkpoint" as const }) },
  { weight: 5, arbitrary: fc.constant({ t: "snapshot" as const }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("fault" as const), kind: faultKindArb, k: fc.nat(4) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("yield" as const), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: "await" as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("reopen" as const), crash: fc.boolean(), ledger: fc.boolean() }) },
);

const programArb: fc.Arbitrary<Program> = fc.record({
  ops: fc.array(opArb, { minLength: 1, maxLength: 40, size: "max" }),
  ledger: fc.boolean(),
  snapshotEvery: fc.constantFrom(0, 0, 4, 9),
  checkpointEvery: fc.nat(6),
  maxBatch: fc.integer({ min: 1, max: 32 }),
  snapshotBatchBytes: fc.integer({ min: 1, max: 600 }),
});

/** What has landed on the data under test, whichever store instance wrote it: what a reopen must find. */
interface Disk {
  /** The last manifest that landed. */
  manifest: { size: number; slot: SnapshotSlot; parts: number } | undefined;
  /** Snapshot parts landed in a batch without a manifest since the last manifest landed: a write was (or is being) cut short. */
  strayPossible: boolean;
}

interface Armed {
  readonly kind: Exclude<FaultKind, "crash">;
  /** Batches it applies to still to let through. */
  skip: number;
}

/** The faults of one store instance (those armed and not yet fired carry over to the next one). */
interface Faults {
  armed: Armed[];
  /** Batches still to land before the crash. */
  crashIn: number | undefined;
  dead: boolean;
  /** Faults injected so far (batches refused or reported as failed). */
  injected: number;
  /** A batch of the log was refused or reported as failed: the store must turn unwritable. */
  logFailed: boolean;
}

interface Stats {
  fired: Record<FaultKind, number>;
  reopens: number;
  fromSnapshot: number;
  /** Reopens that found parts no manifest names (a write cut short). */
  strays: number;
  resolved: number;
  rejected: number;
}

const isPartKey = (k: string): boolean => k.startsWith("s/p") || k.startsWith("s/q");
const manifestOf = (bytes: Uint8Array): SnapshotManifest => (parseStrict(bytes) as unknown as Signed<SnapshotManifest>).payload;

interface BatchKind {
  log: boolean;
  parts: boolean;
  manifest: KvOp | undefined;
}
const classify = (ops: readonly KvOp[]): BatchKind => ({
  log: ops.some((op) => op.key === HEAD_KEY),
  parts: ops.some((op) => op.type === "put" && isPartKey(op.key)),
  manifest: ops.find((op) => op.key === SNAPSHOT_MANIFEST_KEY),
});

function hits(kind: FaultKind, b: BatchKind): boolean {
  switch (kind) {
    case "parts":
      return b.parts;
    case "manifest-fail":
    case "manifest-unclear":
      return b.manifest !== undefined;
    case "next":
    case "next-unclear":
      return true;
    case "log":
    case "log-unclear":
      return b.log;
    case "crash":
      return false;
    default:
      return kind satisfies never;
  }
}
const landsFirst = (kind: FaultKind): boolean => kind.endsWith("-unclear");

/** The real backend, with faults injected into its batches; reads go straight through. */
function faulty(inner: AuditBackend, disk: Disk, f: Faults, stats: Stats): AuditBackend {
  const landed = (b: BatchKind): void => {
    if (b.manifest?.type === "put") {
      const m = manifestOf(b.manifest.value);
      disk.manifest = { size: m.size, slot: m.slot ?? 0, parts: m.parts.length };
      disk.strayPossible = false;
    } else if (b.parts) {
      disk.strayPossible = true;
    }
    // (A batch of deletes alone only clears parts.)
  };
  return withBatch(inner, async (ops, o) => {
    const b = classify(ops);
    const injected = (kind: FaultKind, hasLanded: boolean): Error => {
      f.injected++;
      if (b.log) f.logFailed = true;
      if (kind !== "crash") stats.fired[kind]++;
      return new Error(`injected fault: ${kind}${hasLanded ? " (the batch landed)" : ""}`);
    };
    if (f.dead) throw injected("crash", false);
    let fire: Armed | undefined;
    for (const a of f.armed) {
      if (!hits(a.kind, b)) continue;
      if (a.skip > 0) a.skip--;
      else fire ??= a;
    }
    if (fire !== undefined) f.armed.splice(f.armed.indexOf(fire), 1);
    const kind = fire?.kind;
    if (kind !== undefined && !landsFirst(kind)) throw injected(kind, false);
    await inner.batch(ops, o);
    landed(b);
    if (f.crashIn !== undefined && --f.crashIn <= 0) {
      f.crashIn = undefined;
      f.dead = true;
      stats.fired.crash++;
    }
    if (kind !== undefined) throw injected(kind, true);
  });
}

interface AppendRec {
  readonly order: number;
  receipt?: AppendReceipt;
  error?: unknown;
  logFailedAtSettle?: boolean;
}
interface SnapRec {
  readonly order: number;
  readonly injectedAtQueue: number;
  readonly logFailedAtQueue: boolean;
  info?: SnapshotInfo;
  /** The last manifest landed and the log size when it resolved. */
  manifestAtResolve?: number | undefined;
  sizeAtResolve?: number;
  error?: unknown;
  injectedAtSettle?: number;
}
interface Instance {
  readonly store: AuditStore;
  ledger: Ledger | undefined;
  readonly faults: Faults;
  pending: Promise<void>[];
  readonly appends: AppendRec[];
  readonly snapshots: SnapRec[];
  /** Checkpoints asked for, and ledger snapshots queued by snapshotEvery, that failed. */
  readonly otherErrors: { error: unknown; logFailed: boolean; injected: number }[];
  order: number;
}

const pause = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const codeOf = (e: unknown): string => (e instanceof AuditStoreError ? e.code : String(e));

async function genesisFold(store: AuditStore): Promise<AuditState> {
  const out: AuditRecord[] = [];
  for (let seq = 0; seq < store.size; seq++) out.push((await store.getRecord(seq))!);
  return fold(out, emptyState(W));
}

async function partKeys(backend: AuditBackend, slot: SnapshotSlot): Promise<string[]> {
  const out: string[] = [];
  for await (const [k] of backend.iterate(snapshotPartRanges[slot])) out.push(k);
  return out;
}

/** Run one program on a fresh data directory (or memory), checking every reopen. */
async function run(make: () => BackendHarness, p: Program, stats: Stats): Promise<void> {
  const h = make();
  const disk: Disk = { manifest: undefined, strayPossible: false };
  const opts: AuditStoreOptions = storeOptions({ foldWindow: W, checkpointEvery: p.checkpointEvery, maxBatch: p.maxBatch, snapshotBatchBytes: p.snapshotBatchBytes });
  const acked: AppendReceipt[] = [];
  const resolvedSizes: number[] = [];
  let tasks = 0;

  const open = async (withLedger: boolean, armed: Armed[] = []): Promise<Instance> => {
    const faults: Faults = { armed, crashIn: undefined, dead: false, injected: 0, logFailed: false };
    const store = await AuditStore.open(faulty(await h.open(), disk, faults, stats), opts);
    const inst: Instance = { store, ledger: undefined, faults, pending: [], appends: [], snapshots: [], otherErrors: [], order: 0 };
    try {
      await checkOpened(store);
    } catch (e) {
      await store.close();
      throw e;
    }
    if (!withLedger) return inst;
    inst.ledger = new Ledger(store, {
      snapshotEvery: p.snapshotEvery,
      onSnapshotError: (error) => inst.otherErrors.push({ error, logFailed: faults.logFailed, injected: faults.injected }),
    });
    return inst;
  };

  /** What any reopen must find, whatever failed or crashed before it. */
  const checkOpened = async (store: AuditStore): Promise<void> => {
    stats.reopens++;
    const from = disk.manifest?.size ?? 0;
    // Atomic snapshots: a failed or unclear write leaves the last one that landed usable.
    expect(store.openedFrom.snapshotProblem, "a stored snapshot was refused").toBeUndefined();
    expect(store.openedFrom, "opened from the last manifest that landed").toEqual({ snapshotSize: from, recordsFolded: store.size - from });
    if (from > 0) stats.fromSnapshot++;
    expect(await store.prefixCheck).toMatchObject({ ok: true });
    expect(store.writable).toBe(true);
    for (const r of acked) {
      expect(r.seq, `acknowledged record ${r.seq} is in the log`).toBeLessThan(store.size);
      const bytes = await store.getRecordBytes(r.seq);
      expect(bytes, `acknowledged record ${r.seq}`).toBeDefined();
      expect(toB64u(recordLeafHash(bytes!)), `leaf hash of acknowledged record ${r.seq}`).toBe(r.leafHash);
    }
    for (const size of resolvedSizes) expect(size).toBeLessThanOrEqual(store.size);
    expect(view(store.state)).toEqual(view(await genesisFold(store)));
    // The manifest on disk is the one the oracle saw land; its slot holds exactly its parts.
    const stored = await store.backend.get(SNAPSHOT_MANIFEST_KEY);
    if (disk.manifest === undefined) expect(stored).toBeUndefined();
    else {
      const m = manifestOf(stored!);
      expect({ size: m.size, slot: m.slot ?? 0, parts: m.parts.length }).toEqual(disk.manifest);
    }
    let stray = false;
    for (const slot of [0, 1] as const) {
      const held = await partKeys(store.backend, slot);
      if (disk.manifest?.slot === slot) {
        expect(held, `current slot ${slot}`).toEqual(Array.from({ length: disk.manifest.parts }, (_, i) => snapshotPartKey(i, slot)));
      } else if (held.length > 0) {
        stray = true;
        // Without a manifest, the first snapshot goes to slot 0: slot 1 never holds anything.
        expect(disk.manifest === undefined && slot === 1, "parts in slot 1 before any manifest").toBe(false);
        expect(disk.strayPossible, `slot ${slot} holds parts no manifest names, yet every write that put parts was completed by its manifest`).toBe(true);
      }
    }
    if (stray) stats.strays++;
  };

  /** After close: every promise settled, each failure explained by an injected fault, every resolved snapshot where it was queued. */
  const checkClosed = (inst: Instance): void => {
    for (const a of inst.appends) {
      if (a.receipt !== undefined) continue;
      expect(a.error, `append #${a.order} neither resolved nor rejected`).toBeDefined();
      expect(a.logFailedAtSettle, `append #${a.order} rejected (${String(a.error)}) with no log batch failed`).toBe(true);
      expect(codeOf(a.error)).toMatch(/^AUDIT_(WRITE_FAILED|UNWRITABLE)$/);
    }
    for (const s of inst.snapshots) {
      if (s.info === undefined) {
        expect(s.error, `snapshot #${s.order} neither resolved nor rejected`).toBeDefined();
        stats.rejected++;
        const explained = s.logFailedAtQueue || s.injectedAtSettle! > s.injectedAtQueue || String(s.error).includes("empty log");
        expect(explained, `snapshot #${s.order} rejected (${String(s.error)}) with no fault injected while it was written`).toBe(true);
        continue;
      }
      stats.resolved++;
      expect(s.manifestAtResolve, `snapshot #${s.order} resolved: its manifest is the last one landed`).toBe(s.info.size);
      expect(s.info.size).toBeLessThanOrEqual(s.sizeAtResolve!);
      for (const a of inst.appends) {
        if (a.receipt === undefined) continue;
        if (a.order < s.order) expect(a.receipt.seq, `append #${a.order} queued before snapshot #${s.order}`).toBeLessThan(s.info.size);
        else expect(a.receipt.seq, `append #${a.order} queued after snapshot #${s.order}`).toBeGreaterThanOrEqual(s.info.size);
      }
    }
    for (const o of inst.otherErrors) {
      expect(o.logFailed || o.injected > 0 || String(o.error).includes("empty log"), `unexplained failure: ${String(o.error)}`).toBe(true);
    }
  };

  const settle = async (inst: Instance): Promise<void> => {
    while (inst.pending.length > 0) {
      const now = inst.pending;
      inst.pending = [];
      await Promise.all(now);
    }
    await inst.ledger?.snapshotSettled();
  };

  let cur = await open(p.ledger);
  const reopen = async (crash: boolean, withLedger: boolean, disarm = false): Promise<void> => {
    const inst = cur;
    // A crash: nothing more lands, nothing is awaited; close() only lets the store wind down.
    if (crash) inst.faults.dead = true;
    else await settle(inst);
    await inst.store.close();
    await settle(inst);
    checkClosed(inst);
    cur = await open(withLedger, disarm ? [] : inst.faults.armed);
  };

  const append = (e: AuditEntry): void => {
    const inst = cur;
    const rec: AppendRec = { order: inst.order++ };
    inst.appends.push(rec);
    const q = inst.ledger !== undefined ? inst.ledger.append(e) : inst.store.append(e);
    inst.pending.push(
      q.then(
        (r) => {
          rec.receipt = r;
          acked.push(r);
        },
        (err: unknown) => {
          rec.error = err;
          rec.logFailedAtSettle = inst.faults.logFailed;
        },
      ),
    );
  };

  const snapshot = (): Promise<SnapshotInfo> => {
    const inst = cur;
    const rec: SnapRec = { order: inst.order++, injectedAtQueue: inst.faults.injected, logFailedAtQueue: inst.faults.logFailed };
    inst.snapshots.push(rec);
    const q = inst.ledger !== undefined ? inst.ledger.snapshot() : inst.store.writeSnapshot();
    inst.pending.push(
      q.then(
        (info) => {
          rec.info = info;
          rec.manifestAtResolve = disk.manifest?.size;
          rec.sizeAtResolve = inst.store.size;
          resolvedSizes.push(info.size);
        },
        (err: unknown) => {
          rec.error = err;
          rec.injectedAtSettle = inst.faults.injected;
        },
      ),
    );
    return q;
  };

  try {
    for (const x of p.ops) {
      // Once a log batch failed the store is unwritable by design: reopen before appending more.
      const appends = x.t === "task" || x.t === "dupe" || x.t === "out" || x.t === "trust" || x.t === "revoke" || x.t === "idle";
      if (appends && (cur.faults.logFailed || !cur.store.writable)) await reopen(false, cur.ledger !== undefined);
      switch (x.t) {
        case "task": {
          const t = `t${tasks++}`;
          append(evidence(t));
          append(decision(t, x.allow ? "allow" : "deny", `n${x.nonce}`));
          if (x.allow && x.done) append(outcome(t));
          break;
        }
        case "dupe":
          append(decision(`t${x.of % Math.max(1, tasks)}`, "deny", `n${x.nonce}`));
          break;
        case "out":
          append(outcome(`t${x.of % Math.max(1, tasks + 2)}`));
          break;
        case "trust":
          append(trust(x.i));
          break;
        case "revoke":
          append(revocation(x.i));
          break;
        case "idle":
          // A window of trust changes: the fold forgets its nonces and finished tasks, so the
          // next snapshot has fewer parts than the last.
          for (let i = 0; i <= W; i++) append(trust(i));
          break;
        case "checkpoint": {
          const inst = cur;
          inst.pending.push(
            inst.store.checkpoint().then(
              () => undefined,
              (error: unknown) => void inst.otherErrors.push({ error, logFailed: inst.faults.logFailed, injected: inst.faults.injected }),
            ),
          );
          break;
        }
        case "snapshot":
          void snapshot().catch(() => undefined);
          break;
        case "fault":
          if (x.kind !== "crash") cur.faults.armed.push({ kind: x.kind, skip: x.k });
          else if (x.k === 0) {
            cur.faults.dead = true;
            stats.fired.crash++;
          } else cur.faults.crashIn = x.k;
          break;
        case "yield":
          for (let i = 0; i < x.n; i++) await pause();
          break;
        case "await":
          await settle(cur);
          break;
        case "reopen":
          await reopen(x.crash, x.ledger);
          break;
        default:
          return x satisfies never;
      }
    }
    await reopen(false, cur.ledger !== undefined, true);
    // With no fault armed, an append and a snapshot go through, and the next open starts right
    // at the snapshot: whatever earlier writes left behind is cleared.
    append(outcome("final"));
    const info = await snapshot();
    await reopen(false, false);
    expect(info.size).toBe(cur.store.size);
    expect(cur.store.openedFrom).toEqual({ snapshotSize: info.size, recordsFolded: 0 });
    expect(disk.strayPossible).toBe(false);
    expect(await partKeys(cur.store.backend, disk.manifest!.slot === 0 ? 1 : 0)).toEqual([]);
    await cur.store.close();
  } finally {
    await cur.store.close().catch(() => undefined);
    h.cleanup();
  }
}

// Hand-written programs that fire every fault kind whatever the number of random runs.
const tasks = (n: number): Op[] => Array.from({ length: n }, (_, i) => ({ t: "task", allow: i % 3 !== 0, nonce: i % 10, done: i % 2 === 0 }));
const base = { ledger: false, snapshotEvery: 0, checkpointEvery: 3, maxBatch: 8, snapshotBatchBytes: 1 };
const finished = (n: number): Op[] => tasks(n).map((t) => ({ ...t, done: true }));
/** A snapshot of eight finished tasks, in slot 0, taken and written. */
const snapshotted: Op[] = [...finished(6), { t: "snapshot" }, { t: "await" }, ...finished(2)];
/** A window of trust changes (the fold forgets), then a snapshot with fewer parts than before. */
const smallerSnapshot: Op[] = [{ t: "idle" }, { t: "snapshot" }, { t: "await" }];
const EXAMPLES: Program[] = [
  // A part batch fails: the snapshot is refused alone, the log goes on.
  { ...base, ops: [...tasks(4), { t: "await" }, { t: "fault", kind: "parts", k: 0 }, { t: "snapshot" }, ...tasks(1), { t: "reopen", crash: false, ledger: false }] },
  // A manifest batch lands and reports failure: the next open uses it, and the next snapshot keeps the slot the disk names.
  {
    ...base,
    ops: [...tasks(4), { t: "snapshot" }, { t: "await" }, ...tasks(2), { t: "fault", kind: "manifest-unclear", k: 0 }, { t: "snapshot" }, { t: "await" }, ...tasks(1), { t: "snapshot" }, { t: "reopen", crash: true, ledger: true }],
  },
  { ...base, ledger: true, ops: [...tasks(4), { t: "snapshot" }, { t: "await" }, ...tasks(1), { t: "fault", kind: "manifest-fail", k: 0 }, { t: "snapshot" }, { t: "reopen", crash: false, ledger: true }] },
  // The next batch is a log batch: the store turns unwritable.
  { ...base, ops: [...tasks(3), { t: "fault", kind: "next", k: 0 }, ...tasks(2), { t: "snapshot" }, ...tasks(2)] },
  // The next batch is the snapshot's first, and it lands before reporting failure.
  { ...base, ops: [...tasks(4), { t: "await" }, { t: "snapshot" }, { t: "fault", kind: "next-unclear", k: 0 }, { t: "await" }, ...tasks(1), { t: "reopen", crash: false, ledger: false }] },
  { ...base, ledger: true, snapshotEvery: 4, ops: [...tasks(3), { t: "snapshot" }, { t: "fault", kind: "log", k: 0 }, ...tasks(2), { t: "snapshot" }, ...tasks(1)] },
  { ...base, ops: [...tasks(3), { t: "await" }, { t: "fault", kind: "log-unclear", k: 0 }, ...tasks(1), { t: "snapshot" }, { t: "yield", n: 1 }, { t: "reopen", crash: true, ledger: false }] },
  // A snapshot with fewer parts than the one that failed in the same slot before it: the stale parts are cleared first.
  {
    ...base,
    ops: [...snapshotted, { t: "fault", kind: "manifest-fail", k: 0 }, { t: "snapshot" }, { t: "await" }, ...smallerSnapshot, { t: "reopen", crash: false, ledger: false }],
  },
  // A part batch that lands and reports failure is counted: a later, smaller snapshot in that slot clears it first.
  {
    ...base,
    ops: [...snapshotted, { t: "await" }, { t: "fault", kind: "next-unclear", k: 3 }, { t: "snapshot" }, { t: "await" }, ...smallerSnapshot, { t: "reopen", crash: false, ledger: false }],
  },
  // A crash part-way through a snapshot: the next open counts what it left, and a smaller snapshot in that slot clears it.
  {
    ...base,
    ops: [...snapshotted, { t: "await" }, { t: "fault", kind: "crash", k: 4 }, { t: "snapshot" }, { t: "await" }, { t: "reopen", crash: true, ledger: false }, ...smallerSnapshot, { t: "reopen", crash: false, ledger: false }],
  },
  // A crash between two part batches of a snapshot: its parts are left in the slot no manifest names.
  { ...base, ops: [...tasks(6), { t: "await" }, { t: "fault", kind: "crash", k: 2 }, { t: "snapshot" }, { t: "await" }, { t: "reopen", crash: true, ledger: false }, ...tasks(1)] },
];

for (const make of HARNESSES) {
  const probe = make();
  const name = probe.name;
  probe.cleanup();
  describe(`fold snapshots under storage faults (${name})`, () => {
    // About 70 ms a program on LevelDB on the reference machine: room for long runs.
    it("whatever fails or crashes, a reopen finds every acknowledged append, the genesis fold and the last snapshot that landed, whole", { timeout: Math.max(60_000, (EXAMPLES.length + RUNS) * 300) }, async () => {
      const stats: Stats = { fired: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>, reopens: 0, fromSnapshot: 0, strays: 0, resolved: 0, rejected: 0 };
      await fc.assert(
        fc.asyncProperty(programArb, (p) => run(make, p, stats)),
        { numRuns: EXAMPLES.length + RUNS, examples: EXAMPLES.map((e) => [e] as [Program]) },
      );
      // The faults did fire, snapshots were restored, and writes cut short left parts behind.
      for (const k of FAULT_KINDS) expect(stats.fired[k], `fault ${k} fired`).toBeGreaterThan(0);
      expect(stats.fromSnapshot).toBeGreaterThan(0);
      expect(stats.strays).toBeGreaterThan(0);
      expect(stats.resolved).toBeGreaterThan(0);
      expect(stats.rejected).toBeGreaterThan(0);
    });
  });
}
