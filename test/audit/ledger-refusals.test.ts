// A gateway's ledger folds each entry into its projection in the same tick as it queues it
// (ledger.ts). When the store then refuses that entry, or fails its batch, the projection holds
// a record the log does not, for good: the ledger turns unwritable (the gateway's health says
// "audit not writable", so every task is denied: GOVERNANCE_UNAVAILABLE), and no snapshot of
// that projection is ever written as the log's fold, not even one queued in the same tick,
// before the refusal reached the ledger (the store refuses it: AUDIT_SNAPSHOT_DIVERGED). A clock
// that reads NaN or ±Infinity fails its batch closed. Real LevelDB in a temp dir and the
// in-memory backend, through the same suite.
import { afterEach, describe, expect, it } from "vitest";
import { emptyState, fold, type AuditState } from "../../src/audit/fold.ts";
import { captureState } from "../../src/audit/fold-snapshot.ts";
import { prepareEntry, type AuditEntry, type AuditRecord, type PreparedEntry } from "../../src/audit/records.ts";
import { AuditStore, AuditStoreError } from "../../src/audit/store.ts";
import { Ledger } from "../../src/gateway/ledger.ts";
import { HARNESSES, claimDecision as decision, claimOutcome as outcome, evidenceEntry as evidence, foldView as view, storeOptions, steppingClock, type BackendHarness } from "./support.ts";

const W = 17;

let harnesses: BackendHarness[] = [];
afterEach(() => {
  for (const h of harnesses) h.cleanup();
  harnesses = [];
});

/**
 * An entry as prepare() encodes it, plus a member the log could not read back: one the store
 * refuses when it builds the batch (AUDIT_INVALID_ENTRY), after the ledger folded it. Stands for
 * any check that prepare() and the store do not share.
 */
function refusedByTheStore(entry: AuditEntry): PreparedEntry {
  const p = prepareEntry(entry);
  return { entry, members: [...p.members, ["zzz", `"zzz":{"__proto__":1}`]] };
}

async function records(store: AuditStore): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let seq = 0; seq < store.size; seq++) out.push((await store.getRecord(seq))!);
  return out;
}

const genesis = async (store: AuditStore): Promise<AuditState> => fold(await records(store), emptyState(W));

async function task(ledger: Ledger, id: string, nonce: string): Promise<void> {
  await ledger.append(evidence(id));
  await ledger.append(decision(id, "allow", nonce));
  await ledger.append(outcome(id));
}

for (const make of HARNESSES) {
  const probe = make();
  const name = probe.name;
  probe.cleanup();
  describe(`a ledger whose entry the store refuses or fails (${name})`, () => {
    const open = async (h: BackendHarness, over: Parameters<typeof storeOptions>[0] = {}): Promise<AuditStore> => AuditStore.open(await h.open(), storeOptions({ foldWindow: W, ...over }));

    /** Reopened: no snapshot was ever written, and the state is the fold of the log alone (no t1, n1 unspent). */
    async function expectNoSnapshotAndTheLogsFold(h: BackendHarness, size: number): Promise<void> {
      const again = await open(h);
      try {
        expect(again.size).toBe(size);
        expect(again.openedFrom).toEqual({ snapshotSize: 0, recordsFolded: size });
        expect(view(again.state)).toEqual(view(await genesis(again)));
        expect(again.state.tasks.has("t1")).toBe(false);
        expect(again.state.consumedNonces.has("n1")).toBe(false);
      } finally {
        await again.close();
      }
    }

    for (const maxBatch of [4096, 1]) {
      it(`a snapshot queued in the same tick as an entry the store refuses is refused, and so is every later one; the ledger turns unwritable (maxBatch ${maxBatch})`, async () => {
        const h = make();
        harnesses.push(h);
        const store = await open(h, { maxBatch });
        const ledger = new Ledger(store);
        await task(ledger, "t0", "n0");
        // A checkpoint the projection never sees: the snapshot would stand at the log's end.
        await store.checkpoint();
        const size = store.size;
        const refused = ledger.appendPrepared(refusedByTheStore(decision("t1", "allow", "n1")));
        // Same tick: the refusal has not reached the ledger, which still reads writable. With
        // maxBatch 1 the refused entry and the snapshot are in batches of their own.
        expect(ledger.writable).toBe(true);
        const snapshot = ledger.snapshot();
        await expect(refused).rejects.toMatchObject({ code: "AUDIT_INVALID_ENTRY" });
        await expect(snapshot).rejects.toMatchObject({ code: "AUDIT_SNAPSHOT_DIVERGED" });
        expect(ledger.state.tasks.get("t1")?.status).toBe("allowed"); // what the projection holds and the log does not
        expect(ledger.writable).toBe(false);
        await expect(ledger.snapshot()).rejects.toMatchObject({ code: "AUDIT_UNWRITABLE" });
        // The log itself is sound and goes on; only the owner's state has parted from it, so the
        // store refuses any state it captures from now on.
        expect(store.writable).toBe(true);
        await expect(store.queueSnapshot(captureState(ledger.state))).rejects.toMatchObject({ code: "AUDIT_SNAPSHOT_DIVERGED" });
        expect(store.size).toBe(size);
        await store.close();
        await expectNoSnapshotAndTheLogsFold(h, size);
      });
    }

    it("a snapshot queued before the refused entry is written: it stands before it, and its state is the log's", async () => {
      const h = make();
      harnesses.push(h);
      const store = await open(h);
      const ledger = new Ledger(store);
      await task(ledger, "t0", "n0");
      const snapshot = ledger.snapshot();
      const refused = ledger.appendPrepared(refusedByTheStore(decision("t1", "allow", "n1")));
      await expect(refused).rejects.toMatchObject({ code: "AUDIT_INVALID_ENTRY" });
      expect((await snapshot).size).toBe(3);
      await store.close();
      const again = await open(h);
      expect(again.openedFrom).toEqual({ snapshotSize: 3, recordsFolded: 0 });
      expect(view(again.state)).toEqual(view(await genesis(again)));
      await again.close();
    });

    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      it(`a clock that reads ${bad} fails its batch closed: nothing of it is written, the store and the ledger turn unwritable, the snapshot queued with it is refused`, async () => {
        const h = make();
        harnesses.push(h);
        const good = steppingClock();
        let broken = false;
        const store = await open(h, { clock: () => (broken ? bad : good()) });
        const ledger = new Ledger(store);
        await task(ledger, "t0", "n0");
        const size = store.size;
        broken = true;
        const appended = ledger.append(decision("t1", "allow", "n1"));
        const checkpoint = store.checkpoint();
        const snapshot = ledger.snapshot();
        for (const p of [appended, checkpoint]) {
          const e = await p.then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(e).toBeInstanceOf(AuditStoreError);
          expect(e).toMatchObject({ code: "AUDIT_WRITE_FAILED" });
          expect((e as Error).cause).toBeInstanceOf(RangeError);
        }
        await expect(snapshot).rejects.toBeInstanceOf(AuditStoreError);
        expect(store.writable).toBe(false);
        expect(ledger.writable).toBe(false);
        // The clock recovering does not make the store writable again: it fails closed until reopened.
        broken = false;
        await expect(ledger.append(outcome("t0"))).rejects.toMatchObject({ code: "AUDIT_UNWRITABLE" });
        expect(store.size).toBe(size);
        await store.close();
        await expectNoSnapshotAndTheLogsFold(h, size);
      });
    }

    it("one clock reading stamps a whole batch", async () => {
      const h = make();
      harnesses.push(h);
      let reads = 0;
      const clock = steppingClock();
      const store = await open(h, { clock: () => (reads++, clock()), checkpointEvery: 3 });
      const receipts = await Promise.all(Array.from({ length: 5 }, (_, i) => store.append(outcome(`t${i}`))));
      expect(reads).toBe(1);
      expect(new Set((await records(store)).map((r) => r.time)).size).toBe(1);
      expect(receipts.map((r) => r.seq)).toEqual([0, 1, 2, 4, 5]); // a checkpoint at 3, same time
      await store.close();
    });
  });
}
