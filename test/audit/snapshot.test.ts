// Fold snapshots (fold-snapshot.ts, store.ts): opening a long log folds only the records after
// the last snapshot, and ends with exactly the state a fold from genesis gives; a snapshot that
// fails any check is ignored, never trusted. Real LevelDB in a temp dir and the in-memory
// backend, through the same suite.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import type { AuditBackend } from "../../src/audit/backend.ts";
import { FOLD_VERSION, emptyState, fold, taskDecided, type AuditState } from "../../src/audit/fold.ts";
import { SNAPSHOT_KIND, captureState, decodeState, encodeState, encodeSteps, sealState, SnapshotError } from "../../src/audit/fold-snapshot.ts";
import { BUNDLE_SIZE, SNAPSHOT_MANIFEST_KEY, bundleKey, snapshotPartKey } from "../../src/audit/keys.ts";
import type { AuditEntry, AuditRecord } from "../../src/audit/records.ts";
import { AuditStore, type SnapshotManifest } from "../../src/audit/store.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { canonicalBytes } from "../../src/canonical/jcs.ts";
import { parseStrict } from "../../src/canonical/strict-parse.ts";
import { sha256B64u } from "../../src/crypto/hash.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { Ledger } from "../../src/gateway/ledger.ts";
import { GATEWAY_KEY, HARNESSES, ROGUE_KEY, claimDecision as decision, claimOutcome as outcome, foldView as view, memoryHarness, storeOptions, type BackendHarness, evidenceEntry as evidence, revocationEntry as revocation, trustEntry as trust, withBatch } from "./support.ts";

const W = 23;

/** The stored snapshot manifest, signed, as a backend holds it. */
const manifestOf = async (b: AuditBackend): Promise<Signed<SnapshotManifest>> => parseStrict((await b.get(SNAPSHOT_MANIFEST_KEY))!) as unknown as Signed<SnapshotManifest>;

/** sha256 of src/audit/fold.ts and fold-snapshot.ts for FOLD_VERSION 2 (see the test that reads it). Version 2: the fold keeps the newest signed policy activation (policyHigh). */
const FOLD_RULES_PIN = "vZ-jn1lx3iUD-eNkZxxFiOmc2flD9781WXOrk18Bp-k";


/** A mixed workload: tasks with evidence, allows and denies over a small nonce pool, outcomes, trust and revocations. */
function workload(n: number, seed = 1): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (let i = 0; i < n; i++) {
    const k = (i * 7919 + seed * 104729) % 1000;
    const t = `t${seed}-${i}`;
    out.push(evidence(t), decision(t, k % 3 === 0 ? "deny" : "allow", `n${k % 40}`));
    if (k % 5 !== 0) out.push(outcome(t));
    if (k % 11 === 0) out.push(trust(k));
    if (k % 13 === 0) out.push(revocation(k));
  }
  return out;
}

async function records(store: AuditStore): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let seq = 0; seq < store.size; seq++) out.push((await store.getRecord(seq))!);
  return out;
}

/** The state a fold from genesis gives for the store's log. */
async function genesisFold(store: AuditStore, window = W): Promise<AuditState> {
  return fold(await records(store), emptyState(window));
}

const opts = (over: Parameters<typeof storeOptions>[0] = {}) => storeOptions({ foldWindow: W, checkpointEvery: 7, ...over });

let harnesses: BackendHarness[] = [];
afterEach(() => {
  for (const h of harnesses) h.cleanup();
  harnesses = [];
});
const harness = (make: () => BackendHarness): BackendHarness => {
  const h = make();
  harnesses.push(h);
  return h;
};

for (const make of HARNESSES) {
  describe(`fold snapshots (${make().name})`, () => {
    it("a store reopened after a snapshot folds only the records after it, and holds exactly the state a fold from genesis gives", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts());
      for (const e of workload(120)) await store.append(e);
      const info = await store.writeSnapshot();
      expect(info.size).toBe(store.size);
      for (const e of workload(30, 2)) await store.append(e);
      const size = store.size;
      await store.close();

      store = await AuditStore.open(await h.open(), opts());
      expect(store.openedFrom).toEqual({ snapshotSize: info.size, recordsFolded: size - info.size });
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      // …and goes on exactly as the genesis fold would: appending more keeps them equal.
      for (const e of workload(40, 3)) await store.append(e);
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      await store.close();
    });

    it("group commits go on while a snapshot is encoded and written; the snapshot stands where it was queued", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0, foldWindow: 1 << 20, snapshotBatchBytes: 64 }));
      // Enough state for the encoding to take several slices and the parts several batches.
      for (let i = 0; i < 300; i++) await Promise.all([store.append(decision(`t${i}`, "allow", `n${i}`)), store.append(outcome(`t${i}`))]);
      const size = store.size;
      let snapshotDone = false;
      const snap = store.writeSnapshot().then((info) => {
        snapshotDone = true;
        return info;
      });
      // Queued after it: committed while it is still being written (before this change, the
      // commit queue waited for the whole snapshot).
      const after = await store.append(outcome("after"));
      expect(snapshotDone).toBe(false);
      expect(after.seq).toBe(size);
      const info = await snap;
      expect(info.size).toBe(size);
      expect(info.parts).toBeGreaterThan(3);
      await store.close();
      store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0, foldWindow: 1 << 20 }));
      expect(store.openedFrom).toEqual({ snapshotSize: size, recordsFolded: 1 });
      expect(view(store.state)).toEqual(view(await genesisFold(store, 1 << 20)));
      await store.close();
    });

    it("snapshots alternate between two slots; the new one becomes current in one batch that also clears the old", async () => {
      const h = harness(make);
      const o = opts({ checkpointEvery: 0, snapshotBatchBytes: 1 });
      const store = await AuditStore.open(await h.open(), o);
      const slots: number[] = [];
      for (let round = 0; round < 4; round++) {
        for (const e of workload(30, round + 1)) await store.append(e);
        const info = await store.writeSnapshot();
        const m = (await manifestOf(store.backend)).payload;
        slots.push(m.slot ?? 0);
        const current = m.slot ?? 0;
        const held = async (slot: 0 | 1): Promise<number> => {
          let n = 0;
          for await (const _ of store.backend.iterate({ gte: snapshotPartKey(0, slot), lt: slot === 0 ? "s/q" : "s/r" })) n++;
          return n;
        };
        expect(await held(current)).toBe(info.parts);
        expect(await held(current === 0 ? 1 : 0)).toBe(0);
      }
      expect(slots).toEqual([0, 1, 0, 1]);
      await store.close();
      const reopened = await AuditStore.open(await h.open(), o);
      expect(reopened.openedFrom).toEqual({ snapshotSize: reopened.size, recordsFolded: 0 });
      expect(view(reopened.state)).toEqual(view(await genesisFold(reopened)));
      await reopened.close();
    });

    it("a manifest batch reported as failed that landed anyway: the next snapshot keeps the slot the disk names", async () => {
      const h = harness(make);
      const o = opts({ checkpointEvery: 0, snapshotBatchBytes: 1 });
      const backend = await h.open();
      let mode: "ok" | "land-then-fail" | "fail-parts" = "ok";
      const unclear = withBatch(backend, async (ops, bo) => {
        if (mode === "land-then-fail" && ops.some((op) => op.key === SNAPSHOT_MANIFEST_KEY)) {
          mode = "ok";
          await backend.batch(ops, bo);
          throw new Error("fsync failed");
        }
        if (mode === "fail-parts" && ops.some((op) => op.type === "put" && (op.key.startsWith("s/p") || op.key.startsWith("s/q")))) throw new Error("disk full");
        return backend.batch(ops, bo);
      });
      const store = await AuditStore.open(unclear, o);
      for (const e of workload(30)) await store.append(e);
      await store.writeSnapshot(); // slot 0
      for (const e of workload(10, 2)) await store.append(e);
      mode = "land-then-fail";
      await expect(store.writeSnapshot()).rejects.toThrow(/fsync failed/); // on disk: slot 1, current
      const landed = store.size;
      for (const e of workload(10, 3)) await store.append(e);
      // Had the store trusted its memory (slot 0 current), this one would have cleared slot 1,
      // the one the disk names, before failing.
      mode = "fail-parts";
      await expect(store.writeSnapshot()).rejects.toThrow(/disk full/);
      mode = "ok";
      await store.close();
      const reopened = await AuditStore.open(await h.open(), o);
      expect(reopened.openedFrom).toEqual({ snapshotSize: landed, recordsFolded: reopened.size - landed });
      expect(view(reopened.state)).toEqual(view(await genesisFold(reopened)));
      await reopened.close();
    });

    it("close() writes the snapshots and appends still queued", async () => {
      const h = harness(make);
      const store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0, snapshotBatchBytes: 1 }));
      for (const e of workload(40)) await store.append(e);
      const first = store.writeSnapshot();
      const append = store.append(outcome("queued"));
      const second = store.writeSnapshot();
      await store.close();
      const [a, r, b] = await Promise.all([first, append, second]);
      expect(a.size).toBe(r.seq);
      expect(b.size).toBe(r.seq + 1);
      const reopened = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      expect(reopened.openedFrom).toEqual({ snapshotSize: b.size, recordsFolded: 0 });
      await reopened.close();
    });

    it("a snapshot written before there were two slots (no slot in its manifest) is used, then replaced", async () => {
      const h = harness(make);
      const o = opts({ checkpointEvery: 0 });
      let store = await AuditStore.open(await h.open(), o);
      for (const e of workload(40)) await store.append(e);
      const first = await store.writeSnapshot();
      await store.close();
      // The earlier writer's manifest: the same fields, no slot, parts under s/p.
      const b = await h.open();
      const { slot, ...legacy } = (await manifestOf(b)).payload;
      expect(slot).toBe(0);
      await b.batch([{ type: "put", key: SNAPSHOT_MANIFEST_KEY, value: canonicalBytes(signPayload("snapshot", legacy, GATEWAY_KEY)) }], { sync: true });
      await b.close();
      store = await AuditStore.open(await h.open(), o);
      expect(store.openedFrom).toEqual({ snapshotSize: first.size, recordsFolded: 0 });
      // (The workload's revocations carry no real authority signature: only the snapshot's finding is looked at.)
      const rep = await replay(backendLogSource(store.backend), { gatewayKeys: [GATEWAY_KEY.keyId], origin: "gw-test" }, { rederive: false, foldWindow: W });
      expect(rep.snapshot).toEqual({ at: first.size, result: "matches" });
      for (const e of workload(10, 2)) await store.append(e);
      const second = await store.writeSnapshot();
      const m = (await manifestOf(store.backend)).payload;
      expect(m.slot).toBe(1);
      expect(await store.backend.get(snapshotPartKey(0, 0))).toBeUndefined();
      await store.close();
      store = await AuditStore.open(await h.open(), o);
      expect(store.openedFrom).toEqual({ snapshotSize: second.size, recordsFolded: 0 });
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      await store.close();
    });

    it("a snapshot write that fails part-way is refused alone: the current snapshot stays whole and the log goes on", async () => {
      const h = harness(make);
      const o = opts({ checkpointEvery: 0, snapshotBatchBytes: 1 });
      let store = await AuditStore.open(await h.open(), o);
      for (const e of workload(40)) await store.append(e);
      const first = await store.writeSnapshot();
      await store.close();
      const backend = await h.open();
      // Fails the third batch that writes snapshot parts, once.
      let partBatches = 0;
      const flaky = withBatch(backend, (ops, bo) => {
        if (ops.some((op) => op.key.startsWith("s/")) && ++partBatches === 3) return Promise.reject(new Error("disk full"));
        return backend.batch(ops, bo);
      });
      store = await AuditStore.open(flaky, o);
      for (const e of workload(20, 2)) await store.append(e);
      await expect(store.writeSnapshot()).rejects.toThrow(/disk full/);
      // The log is unaffected, and the next snapshot clears what the failed one left.
      expect(store.writable).toBe(true);
      await store.append(outcome("after the failure"));
      await store.close();
      store = await AuditStore.open(await h.open(), o);
      expect(store.openedFrom).toEqual({ snapshotSize: first.size, recordsFolded: store.size - first.size });
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      const second = await store.writeSnapshot();
      await store.close();
      store = await AuditStore.open(await h.open(), o);
      expect(store.openedFrom).toEqual({ snapshotSize: second.size, recordsFolded: 0 });
      let leftovers = 0;
      for await (const _ of store.backend.iterate({ gte: "s/", lt: "s0" })) leftovers++;
      expect(leftovers).toBe(second.parts + 1);
      await store.close();
    });

    it("a snapshot at the very end of the log: nothing is folded on open", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      for (const e of workload(33)) await store.append(e);
      await store.writeSnapshot();
      const size = store.size;
      await store.close();
      store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      expect(store.openedFrom).toEqual({ snapshotSize: size, recordsFolded: 0 });
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      // The partial bundle the snapshot ended in is extended, not lost.
      await store.append(outcome("after"));
      expect((await store.getRecord(size))?.type).toBe("outcome");
      await store.close();
    });

    it("a gateway's projection (it never sees the store's checkpoints) snapshots to the log's own state", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 5 }));
      let ledger = new Ledger(store);
      const entries = workload(80);
      for (let i = 0; i < entries.length; i++) {
        const p = ledger.append(entries[i]!);
        // A snapshot queued while appends are in flight stands right after the last one.
        if (i === 100) await Promise.all([p, ledger.snapshot()]);
        if (i % 17 === 0) await store.checkpoint();
      }
      await ledger.snapshot();
      await store.close();
      store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 5 }));
      expect(store.openedFrom.snapshotSize).toBe(store.size);
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      // Going on from the restored projection: its answers stay those of the genesis fold.
      ledger = new Ledger(store);
      const more = workload(60, 4);
      for (const e of more) await ledger.append(e);
      const truth = await genesisFold(store);
      for (const e of [...entries, ...more]) {
        if (e.type === "decision") expect(ledger.taskDecided(e.taskId), e.taskId).toBe(taskDecided(truth, e.taskId));
      }
      for (let n = 0; n < 40; n++) expect(ledger.nonceConsumed(`n${n}`)).toBe(truth.consumedNonces.has(`n${n}`));
      await store.close();
    });

    it("the records before the snapshot are checked in the background: damage there makes the store unwritable", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts());
      for (const e of workload(60)) await store.append(e);
      const { size } = await store.writeSnapshot();
      for (const e of workload(5, 2)) await store.append(e);
      await store.close();

      store = await AuditStore.open(await h.open(), opts());
      expect(store.openedFrom.snapshotSize).toBe(size);
      expect(await store.prefixCheck).toEqual({ ok: true, checked: size });
      expect(store.writable).toBe(true);
      await store.close();

      // One character of one record in the second bundle: the snapshot itself still verifies
      // (its root is recomputed from the stored tree), so only the background check can see it.
      const b = await h.open();
      const bundle = new Uint8Array((await b.get(bundleKey(1)))!);
      const at = Buffer.from(bundle).indexOf('"taskId":"t1-');
      expect(at).toBeGreaterThan(0);
      bundle[at + 13] = bundle[at + 13] === 0x39 ? 0x38 : bundle[at + 13]! + 1;
      await b.batch([{ type: "put", key: bundleKey(1), value: bundle }], { sync: true });
      await b.close();

      store = await AuditStore.open(await h.open(), opts());
      expect(store.openedFrom.snapshotSize).toBe(size);
      const check = await store.prefixCheck;
      expect(check.ok).toBe(false);
      expect(check.ok === false ? check.problem : "").toMatch(/AUDIT_CORRUPT: record \d+/);
      expect(store.writable).toBe(false);
      await expect(store.append(outcome("after"))).rejects.toMatchObject({ code: "AUDIT_UNWRITABLE" });
      await store.close();
      // Opened without the snapshot's help, the same log is refused outright, as before.
      const b2 = await h.open();
      await b2.batch([{ type: "del", key: SNAPSHOT_MANIFEST_KEY }], { sync: true });
      await b2.close();
      await expect(AuditStore.open(await h.open(), opts())).rejects.toMatchObject({ code: "AUDIT_CORRUPT" });
    });

    it("no append is acknowledged once the background check fails, not even one whose batch was being written", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      for (const e of workload(60)) await store.append(e);
      await store.writeSnapshot();
      await store.close();
      const b = await h.open();
      const bundle = new Uint8Array((await b.get(bundleKey(0)))!);
      const at = Buffer.from(bundle).indexOf('"time":') + 8;
      bundle[at] = bundle[at] === 0x39 ? 0x38 : bundle[at]! + 1;
      await b.batch([{ type: "put", key: bundleKey(0), value: bundle }], { sync: true });
      await b.close();
      // A slow disk: the first batch is still being written when the check fails.
      const backend = await h.open();
      const slow = withBatch(backend, async (ops, o) => {
        await new Promise((r) => setTimeout(r, 50));
        return backend.batch(ops, o);
      });
      store = await AuditStore.open(slow, opts({ checkpointEvery: 0 }));
      const appends = [store.append(outcome("x1")), store.append(outcome("x2"))];
      expect(await store.prefixCheck).toMatchObject({ ok: false });
      for (const a of appends) await expect(a).rejects.toMatchObject({ code: "AUDIT_UNWRITABLE" });
      await store.close();
    });

    it("the background check covers the very last record before the snapshot", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      for (const e of workload(21)) await store.append(e);
      const { size } = await store.writeSnapshot();
      expect(size % BUNDLE_SIZE).not.toBe(0); // the snapshot ends mid-bundle
      for (const e of workload(5, 2)) await store.append(e);
      await store.close();
      // Change one digit of the time of record size − 1 (the same bundle holds records after it).
      const b = await h.open();
      const key = bundleKey(Math.floor((size - 1) / BUNDLE_SIZE));
      const bundle = new Uint8Array((await b.get(key))!);
      const text = Buffer.from(bundle);
      const at = text.indexOf('"time":', text.indexOf(`"seq":${size - 1},`)) + 8;
      bundle[at] = bundle[at] === 0x39 ? 0x38 : bundle[at]! + 1;
      await b.batch([{ type: "put", key, value: bundle }], { sync: true });
      await b.close();
      store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      expect(store.openedFrom.snapshotSize).toBe(size);
      expect(await store.prefixCheck).toMatchObject({ ok: false, code: "AUDIT_CORRUPT", problem: `AUDIT_CORRUPT: record ${size - 1}: stored leaf hash differs from the record` });
      await store.close();
    });

    it("a periodic snapshot (every N entries) bounds what a crash restart folds", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      const errors: unknown[] = [];
      const ledger = new Ledger(store, { snapshotEvery: 50, onSnapshotError: (e) => errors.push(e) });
      // Snapshots are written beside the appends; this writer waits for each before going on
      // (one that outruns them skips periodic snapshots while one is being written).
      for (const e of workload(200)) {
        await ledger.append(e);
        await ledger.snapshotSettled();
      }
      // A crash: no snapshot at the end; the last periodic one is at most 50 entries back.
      await store.close();
      store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      expect(errors).toEqual([]);
      expect(store.openedFrom.snapshotSize).toBeGreaterThan(0);
      // 50 entries, plus the evidence between them (it does not count as an entry).
      expect(store.openedFrom.recordsFolded).toBeLessThan(120);
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      await store.close();
    });

    it("a writer that outruns the snapshots skips periodic ones while one is written; the next append after it catches up", async () => {
      const h = harness(make);
      let store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      const ledger = new Ledger(store, { snapshotEvery: 50 });
      const entries = workload(200);
      for (const e of entries) await ledger.append(e);
      await ledger.snapshotSettled();
      const manifestSize = async (): Promise<number> => (await manifestOf(store.backend)).payload.size;
      const before = await manifestSize();
      expect(before).toBeGreaterThan(0);
      // Within 50 more entries, 50 have passed since the last snapshot was queued, and the
      // first append that sees it (none in flight) queues the next.
      for (let i = 0; i < 50; i++) await ledger.append(outcome(`more-${i}`));
      await ledger.snapshotSettled();
      const after = await manifestSize();
      expect(after).toBeGreaterThan(before);
      await store.close();
      store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      expect(store.openedFrom.snapshotSize).toBe(after);
      expect(view(store.state)).toEqual(view(await genesisFold(store)));
      await store.close();
    });
  });
}

for (const make of HARNESSES) {
  describe(`fold snapshots (${make().name}): a snapshot that fails a check is ignored, and the state comes from the log`, () => {
    /** A log with a snapshot part way, records after it, and the genesis view to expect. */
    async function logWithSnapshot(): Promise<{ h: BackendHarness; truth: unknown; size: number }> {
      const h = harness(make);
      const store = await AuditStore.open(await h.open(), opts());
      for (const e of workload(60)) await store.append(e);
      await store.writeSnapshot();
      for (const e of workload(10, 2)) await store.append(e);
      const truth = view(await genesisFold(store));
      const size = store.size;
      await store.close();
      return { h, truth, size };
    }
    const put = (b: AuditBackend, key: string, value: Uint8Array) => b.batch([{ type: "put", key, value }], { sync: true });
    const resign = (b: AuditBackend, m: SnapshotManifest, key = GATEWAY_KEY) => put(b, SNAPSHOT_MANIFEST_KEY, canonicalBytes(signPayload("snapshot", m, key)));

    async function expectRefused(mutate: (b: AuditBackend, m: SnapshotManifest) => Promise<void>, problem: RegExp, over: Parameters<typeof opts>[0] = {}): Promise<void> {
      const { h, truth, size } = await logWithSnapshot();
      const backend = await h.open();
      await mutate(backend, (await manifestOf(backend)).payload);
      await backend.close();
      const store = await AuditStore.open(await h.open(), opts(over));
      expect(store.openedFrom.snapshotSize).toBe(0);
      expect(store.openedFrom.recordsFolded).toBe(size);
      expect(store.openedFrom.snapshotProblem).toMatch(problem);
      if (over.origin === undefined && over.gatewayKey === undefined) expect(view(store.state)).toEqual(truth);
      // The next snapshot replaces the refused one whole, and is used.
      await store.writeSnapshot();
      await store.close();
      const again = await AuditStore.open(await h.open(), opts(over));
      expect(again.openedFrom).toEqual({ snapshotSize: size, recordsFolded: 0 });
      await again.close();
    }

    it("manifest not JSON", () => expectRefused((b) => put(b, SNAPSHOT_MANIFEST_KEY, new TextEncoder().encode("{")), /not JSON/));
    it("one bit flipped in the signed manifest", async () => {
      await expectRefused(async (b) => {
        const bytes = (await b.get(SNAPSHOT_MANIFEST_KEY))!.slice();
        const at = new TextDecoder().decode(bytes).indexOf('"since"') + 9;
        bytes[at] = bytes[at]! ^ 0x01;
        await put(b, SNAPSHOT_MANIFEST_KEY, bytes);
      }, /signature|malformed|not JSON/);
    });
    it("signed by another key (or the gateway's key changed)", () => expectRefused((b, m) => resign(b, m, ROGUE_KEY), /signature/));
    it("a validly signed manifest naming a slot that does not exist", () => expectRefused((b, m) => resign(b, { ...m, slot: 2 as 0 }), /malformed/));
    it("a validly signed manifest naming the other slot (its parts are not there)", () => expectRefused((b, m) => resign(b, { ...m, slot: m.slot === 1 ? 0 : 1 }), /part 0/));
    it("the parts moved to the other slot under an unchanged manifest", () =>
      expectRefused(async (b, m) => {
        const from = m.slot ?? 0;
        const to = from === 0 ? 1 : 0;
        const parts = await b.getMany(m.parts.map((_, i) => snapshotPartKey(i, from)));
        await b.batch(
          parts.flatMap((value, i) => [
            { type: "del" as const, key: snapshotPartKey(i, from) },
            { type: "put" as const, key: snapshotPartKey(i, to), value: value! },
          ]),
          { sync: true },
        );
      }, /part 0/));
    it("opened by a gateway with another key", () => expectRefused(() => Promise.resolve(), /signature/, { gatewayKey: ROGUE_KEY }));
    // Another origin's log is not opened at all (store-origin.test.ts): its checkpoints name it.
    it("another log's (origin): the open is refused, before any snapshot is looked at", async () => {
      const { h } = await logWithSnapshot();
      const b = await h.open();
      await expect(AuditStore.open(b, opts({ origin: "gw-other" }))).rejects.toMatchObject({ code: "AUDIT_ORIGIN_MISMATCH" });
      await b.close();
    });
    it("folded with another window", () => expectRefused((b, m) => resign(b, { ...m, window: W + 1 }), /folded by other rules .*window 24/));
    // A genuine manifest (this key, this origin) past the log's end, or naming another root or
    // chain link there, is not a stale cache but evidence of truncation or rewrite: open refuses
    // with AUDIT_CORRUPT (snapshot-evidence.test.ts).
    it("a part changed after signing", () => expectRefused((b) => put(b, snapshotPartKey(0), new TextEncoder().encode("{}")), /part 0/));
    it("a part missing", () => expectRefused((b) => b.batch([{ type: "del", key: snapshotPartKey(1) }], { sync: true }), /part 1/));
    it("parts with a valid signature and digests but a malformed state (duplicate keys)", async () => {
      await expectRefused(async (b, m) => {
        const header = JSON.parse(new TextDecoder().decode((await b.get(snapshotPartKey(0))))) as { counts: number[] };
        const parts = [
          { ...header, counts: [2, 0, 0, 0, 0, 0, 0, 0] },
          { s: "authorities", k: ["a", "a"] },
        ].map((p) => new TextEncoder().encode(JSON.stringify(p)));
        await b.batch(
          parts.map((value, i) => ({ type: "put" as const, key: snapshotPartKey(i), value })),
          { sync: true },
        );
        await resign(b, { ...m, parts: parts.map((p) => sha256B64u(p)) });
      }, /duplicate keys/);
    });
});
}

for (const make of HARNESSES) {
  describe(`fold snapshots (${make().name}): replay, which always folds from the first record, checks the gateway's snapshot against its own fold`, () => {
    const roots = { gatewayKeys: [GATEWAY_KEY.keyId], origin: "gw-test" };
    /** A log whose gateway projection was snapshotted part way, with records after it. */
    async function logWithProjectionSnapshot(): Promise<{ h: BackendHarness; at: number }> {
      const h = harness(make);
      const store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 5 }));
      const ledger = new Ledger(store);
      await ledger.append({ type: "trust", change: { op: "policy.activate", policyDigest: "digest-1", document: { rules: ["permit"] } } });
      for (const e of workload(50)) await ledger.append(e);
      const { size: at } = await ledger.snapshot();
      for (const e of workload(8, 2)) await ledger.append(e);
      await store.close();
      return { h, at };
    }
    // The workload's revocations carry no real authority signature: only the snapshot's findings are looked at.
    const replayOf = async (h: BackendHarness) => {
      const b = await h.open();
      try {
        const rep = await replay(backendLogSource(b), roots, { rederive: false, foldWindow: W });
        return { ...rep, divergences: rep.divergences.filter((d) => d.kind.startsWith("SNAPSHOT")) };
      } finally {
        await b.close();
      }
    };
    /** Re-sign the stored snapshot after `change` edits its decoded state (a gateway key holder's forgery, or a bug). */
    async function forge(h: BackendHarness, change: (s: AuditState) => void, key = GATEWAY_KEY, manifest: (m: SnapshotManifest) => SnapshotManifest = (m) => m): Promise<void> {
      const b = await h.open();
      const m = (await manifestOf(b)).payload;
      const stored = (await b.getMany(m.parts.map((_, i) => snapshotPartKey(i)))) as Uint8Array[];
      const state = decodeState(stored, W);
      change(state);
      const parts = sealState(encodeState(state), m.size, state.lastCheckpoint);
      await b.batch(
        [
          ...m.parts.map((_, i) => ({ type: "del" as const, key: snapshotPartKey(i) })),
          ...parts.map((value, i) => ({ type: "put" as const, key: snapshotPartKey(i), value })),
          { type: "put", key: SNAPSHOT_MANIFEST_KEY, value: canonicalBytes(signPayload("snapshot", manifest({ ...m, parts: parts.map((p) => sha256B64u(p)) }), key)) },
        ],
        { sync: true },
      );
      await b.close();
    }

    it("an honest gateway's snapshot matches", async () => {
      const { h, at } = await logWithProjectionSnapshot();
      const rep = await replayOf(h);
      expect(rep.divergences).toEqual([]);
      expect(rep.snapshot).toEqual({ at, result: "matches" });
      // The store's background check makes the same comparison.
      const store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 5 }));
      expect(store.openedFrom.snapshotSize).toBe(at);
      expect(await store.prefixCheck).toEqual({ ok: true, checked: at });
      await store.close();
    });

    it("a snapshot that forgets a spent nonce, signed with the gateway's own key: SNAPSHOT_STATE at its position", async () => {
      const { h, at } = await logWithProjectionSnapshot();
      await forge(h, (s) => s.consumedNonces.delete([...s.consumedNonces.keys()][0]!));
      const rep = await replayOf(h);
      expect(rep.divergences).toEqual([{ seq: at, kind: "SNAPSHOT_STATE", detail: expect.stringContaining("spent nonces differ") }]);
      expect(rep.snapshot).toMatchObject({ at, result: "differs" });
    });

    it("the store's background check sees it too: opened from a snapshot that is not the fold of the records before it, the store turns unwritable", async () => {
      const { h, at } = await logWithProjectionSnapshot();
      await forge(h, (s) => s.consumedNonces.delete([...s.consumedNonces.keys()][0]!));
      const store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 5 }));
      expect(store.openedFrom.snapshotSize).toBe(at);
      expect(await store.prefixCheck).toEqual({ ok: false, code: "AUDIT_CORRUPT", problem: `AUDIT_CORRUPT: the snapshot at ${at} is not the fold of the records before it (spent nonces differ)` });
      expect(store.writable).toBe(false);
      await expect(store.append(outcome("after"))).rejects.toMatchObject({ code: "AUDIT_UNWRITABLE" });
      await store.close();
    });

    it("a task's status changed: SNAPSHOT_STATE", async () => {
      const { h, at } = await logWithProjectionSnapshot();
      await forge(h, (s) => {
        const [, t] = [...s.tasks].find(([, t]) => t.status === "succeeded")!;
        t.status = "allowed";
      });
      expect((await replayOf(h)).divergences).toEqual([{ seq: at, kind: "SNAPSHOT_STATE", detail: expect.stringContaining("tasks differ") }]);
    });

    it.each([
      ["the policy document (its digest kept)", (s: AuditState) => (s.policy = { digest: s.policy!.digest, document: { rules: ["forbid"] } }), "policy"],
      ["an authority added", (s: AuditState) => s.authorities.add("forged-authority"), "authorities differ"],
      ["a revocation dropped", (s: AuditState) => s.revokedArtifacts.delete([...s.revokedArtifacts][0]!), "revoked artifacts differ"],
      ["nothing left to forget", (s: AuditState) => (s.retire.tasks = { entries: [], seqs: [], keys: [], head: 0 }), "forgotten differ"],
      ["the window's clock", (s: AuditState) => (s.entries += 1), "entries"],
      ["the last checkpoint's root", (s: AuditState) => (s.lastCheckpoint = { ...s.lastCheckpoint!, root: "forged" }), "last checkpoint"],
    ] as const)("a snapshot with %s changed and re-signed with the gateway's own key: SNAPSHOT_STATE", async (_, change, what) => {
      const { h, at } = await logWithProjectionSnapshot();
      await forge(h, change);
      expect((await replayOf(h)).divergences).toEqual([{ seq: at, kind: "SNAPSHOT_STATE", detail: expect.stringContaining(what) }]);
    });

    it("a manifest whose root or chain link is not the log's: SNAPSHOT_STATE", async () => {
      for (const field of ["root", "prev"] as const) {
        const { h, at } = await logWithProjectionSnapshot();
        await forge(h, () => undefined, GATEWAY_KEY, (m) => ({ ...m, [field]: field === "root" ? m.prev : m.root }));
        expect((await replayOf(h)).divergences, field).toEqual([{ seq: at, kind: "SNAPSHOT_STATE", detail: expect.stringContaining(field === "root" ? "root" : "chain link") }]);
      }
    });

    it("a snapshot at the very end of the log is compared too", async () => {
      const h = harness(make);
      const store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
      for (const e of workload(20)) await store.append(e);
      const { size } = await store.writeSnapshot();
      await store.close();
      expect((await replayOf(h)).snapshot).toEqual({ at: size, result: "matches" });
      await forge(h, (s) => s.consumedNonces.clear());
      expect((await replayOf(h)).divergences).toEqual([{ seq: size, kind: "SNAPSHOT_STATE", detail: expect.stringContaining("spent nonces") }]);
    });

    it("signed by a key the auditor does not trust: SNAPSHOT_INVALID", async () => {
      const { h, at } = await logWithProjectionSnapshot();
      await forge(h, () => undefined, ROGUE_KEY);
      const rep = await replayOf(h);
      expect(rep.divergences).toEqual([{ seq: at, kind: "SNAPSHOT_INVALID", detail: "snapshot manifest signature does not verify under a trusted gateway key" }]);
    });
  });
}

describe("fold snapshots: decoding refuses anything that is not exactly an encoded state", () => {
  const state = fold(
    workload(40).map((e, seq) => ({ ...e, v: 1, seq, prev: "", time: 0 })),
    emptyState(W),
  );
  const sealed = () => sealState(encodeState(state), state.size, undefined);
  const edit = (i: number, f: (o: Record<string, unknown>) => void): Uint8Array[] => {
    const parts = sealed();
    const o = JSON.parse(new TextDecoder().decode(parts[i])) as Record<string, unknown>;
    f(o);
    parts[i] = new TextEncoder().encode(JSON.stringify(o));
    return parts;
  };
  it("round trip", () => expect(view(decodeState(sealed(), W))).toEqual(view(state)));
  it.each([
    ["another window", () => sealed(), W + 1],
    ["a seq at or past the position", () => edit(sealed().findIndex((p) => new TextDecoder().decode(p).includes('"tasks"')), (o) => ((o["q"] as number[])[0] = state.size)), W],
    ["an unknown task status", () => edit(sealed().findIndex((p) => new TextDecoder().decode(p).includes('"tasks"')), (o) => ((o["st"] as number[])[0] = 9)), W],
    ["a retire entry naming no key", () => edit(sealed().findIndex((p) => new TextDecoder().decode(p).includes('"retireTasks"')), (o) => ((o["i"] as number[])[0] = 1e6)), W],
    ["retire entries out of order", () => edit(sealed().findIndex((p) => new TextDecoder().decode(p).includes('"retireNonces"')), (o) => (o["e"] as number[]).reverse()), W],
    ["a part too many", () => [...sealed(), new TextEncoder().encode('{"s":"tasks"}')], W],
    ["a part missing", () => sealed().slice(0, -1), W],
    ["a header that is not an object", () => [new TextEncoder().encode("[]")], W],
    ["a policy without a document", () => edit(0, (o) => (o["policy"] = { digest: "d" })), W],
  ] as const)("%s", (_, parts, window) => {
    expect(() => decodeState(parts(), window)).toThrow(SnapshotError);
  });
  it("the kind tag names the format", () => expect(SNAPSHOT_KIND).toBe("failclosed/fold-snapshot/v1"));
});

describe("fold snapshots: property — whatever the log and wherever the snapshots, reopening gives the genesis fold, now and later", () => {
  const legacyOr = (taskId: string, verdict: "allow" | "deny", nonce: string, legacy: boolean, cluster: "claimed" | "taken"): AuditEntry =>
    legacy ? { type: "decision", taskId, input: { nonce: { key: nonce, local: "fresh", cluster } }, decision: { verdict, checks: [], reasons: verdict === "deny" ? ["REPLAYED"] : [] } } : decision(taskId, verdict, nonce);
  type Op =
    | { t: "task"; allow: boolean; nonce: number; done: number; legacy: boolean; taken: boolean }
    | { t: "dupe"; of: number; nonce: number; legacy: boolean }
    | { t: "late"; of: number }
    | { t: "out"; of: number }
    | { t: "trust"; i: number }
    | { t: "revoke"; i: number }
    | { t: "checkpoint" }
    | { t: "snapshot" }
    | { t: "await" }
    | { t: "reopen" };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 10, arbitrary: fc.record({ t: fc.constant("task" as const), allow: fc.boolean(), nonce: fc.nat(9), done: fc.nat(2), legacy: fc.boolean(), taken: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("dupe" as const), of: fc.nat(100), nonce: fc.nat(9), legacy: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("late" as const), of: fc.nat(100) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("out" as const), of: fc.nat(120) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("trust" as const), i: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("revoke" as const), i: fc.nat(9) }) },
    { weight: 2, arbitrary: fc.constant({ t: "checkpoint" as const }) },
    { weight: 3, arbitrary: fc.constant({ t: "snapshot" as const }) },
    { weight: 2, arbitrary: fc.constant({ t: "await" as const }) },
    { weight: 1, arbitrary: fc.constant({ t: "reopen" as const }) },
  );
  /** The view without the log position: a gateway's projection numbers entries only. */
  const entriesView = (s: Readonly<AuditState>): unknown => ({ ...(view(s) as object), size: undefined, lastCheckpoint: undefined });

  it("appends in flight around the snapshots, legacy and windowed decisions, checkpoints by count and on demand; own state or a gateway projection", async () => {
    let fromSnapshot = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { minLength: 1, maxLength: 100 }),
        fc.integer({ min: 2, max: 8 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 1, max: 64 }),
        fc.boolean(),
        async (ops, window, every, snapEvery, maxBatch, viaLedger) => {
          const h = memoryHarness();
          const o = storeOptions({ foldWindow: window, checkpointEvery: every, maxBatch });
          const errors: unknown[] = [];
          let store = await AuditStore.open(await h.open(), o);
          const newLedger = (): Ledger | undefined => (viaLedger ? new Ledger(store, { snapshotEvery: snapEvery, onSnapshotError: (e) => errors.push(e) }) : undefined);
          let ledger = newLedger();
          let pending: Promise<unknown>[] = [];
          let tasks = 0;
          // Not awaited: snapshots and checkpoints are queued between appends still in flight.
          const add = (e: AuditEntry) => pending.push(ledger !== undefined ? ledger.append(e) : store.append(e));
          const reopened = async (): Promise<void> => {
            await Promise.all(pending);
            pending = [];
            await store.close();
            store = await AuditStore.open(await h.open(), o);
            expect(store.openedFrom.snapshotProblem).toBeUndefined();
            if (store.openedFrom.snapshotSize > 0) fromSnapshot++;
            expect(view(store.state)).toEqual(view(await genesisFold(store, window)));
            ledger = newLedger();
          };
          for (const x of ops) {
            switch (x.t) {
              case "task": {
                const t = `t${tasks++}`;
                add(evidence(t));
                add(legacyOr(t, x.allow ? "allow" : "deny", `n${x.nonce}`, x.legacy, x.taken ? "taken" : "claimed"));
                if (x.done > 0 && x.allow) add(x.done === 1 ? outcome(t) : { type: "outcome", taskId: t, status: "failed", error: "e" });
                break;
              }
              case "dupe":
                add(legacyOr(`t${x.of % Math.max(1, tasks)}`, "deny", `n${x.nonce}`, x.legacy, "taken"));
                break;
              case "late":
                add(evidence(`t${x.of % Math.max(1, tasks)}`));
                break;
              case "out":
                add(outcome(`t${x.of % Math.max(1, tasks + 3)}`));
                break;
              case "trust":
                add(trust(x.i));
                break;
              case "revoke":
                add(revocation(x.i));
                break;
              case "checkpoint":
                pending.push(store.checkpoint());
                break;
              case "snapshot":
                if (store.size > 0 || pending.length > 0) pending.push((ledger !== undefined ? ledger.snapshot() : store.writeSnapshot()).catch((e: unknown) => errors.push(e)));
                break;
              case "await":
                await Promise.all(pending);
                pending = [];
                break;
              case "reopen":
                await reopened();
                break;
              default:
                return x satisfies never;
            }
          }
          await reopened();
          // A long tail: everything still in the window is forgotten exactly when the genesis fold forgets it.
          ledger ??= new Ledger(store);
          for (let i = 0; i < 3 * window + 4; i++) {
            await ledger.append(i % 3 === 0 ? decision(`t${i % Math.max(1, tasks)}`, "deny", `n${i % 10}`) : trust(i));
            expect(entriesView(ledger.state)).toEqual(entriesView(await genesisFold(store, window)));
          }
          await store.close();
          // Only a snapshot of a log with nothing in it yet is refused.
          expect(errors.filter((e) => !String(e).includes("empty log"))).toEqual([]);
        },
      ),
      { numRuns: Number(process.env["FAILCLOSED_SNAPSHOT_RUNS"] ?? 200) },
    );
    // The property did exercise restores, not only genesis folds.
    expect(fromSnapshot).toBeGreaterThan(50);
  });
});

describe("fold snapshots: capture", () => {
  it("a captured state encodes as it stood when captured, whatever the live state does meanwhile", async () => {
    const h = harness(memoryHarness);
    const store = await AuditStore.open(await h.open(), opts({ checkpointEvery: 0 }));
    for (const e of workload(150)) await store.append(e);
    const then = encodeState(store.state);
    const captured = captureState(store.state);
    // Tasks change status in place, nonces are spent again, the window forgets and retires.
    for (const e of workload(150, 5)) await store.append(e);
    const steps = encodeSteps(captured);
    let step = steps.next();
    while (step.done !== true) step = steps.next();
    expect(step.value.header).toEqual(then.header);
    expect(step.value.parts.map((p) => Buffer.from(p).toString())).toEqual(then.parts.map((p) => Buffer.from(p).toString()));
    expect(encodeState(store.state).parts.map((p) => Buffer.from(p).toString())).not.toEqual(then.parts.map((p) => Buffer.from(p).toString()));
    await store.close();
  });
});

describe("fold snapshots: what else a restore must carry on", () => {
  it("the checkpoint cadence goes on where it stood (records since the last checkpoint)", async () => {
    const cadence = async (useSnapshot: boolean): Promise<number[]> => {
      const h = harness(memoryHarness);
      const o = storeOptions({ checkpointEvery: 5 });
      let store = await AuditStore.open(await h.open(), o);
      for (let i = 0; i < 13; i++) await store.append(outcome(`a${i}`));
      if (useSnapshot) await store.writeSnapshot();
      await store.close();
      store = await AuditStore.open(await h.open(), o);
      expect(store.openedFrom.snapshotSize > 0).toBe(useSnapshot);
      for (let i = 0; i < 6; i++) await store.append(outcome(`b${i}`));
      const at = (await records(store)).flatMap((r) => (r.type === "checkpoint" ? [r.seq] : []));
      await store.close();
      return at;
    };
    expect(await cadence(true)).toEqual(await cadence(false));
  });

  it("a snapshot made under other fold rules is never restored (FOLD_VERSION), and the rules' text is pinned to the version", async () => {
    // A fold whose rules changed would restore a state the new rules do not give, and replay
    // (always from genesis, under the new rules) would accuse an honest gateway. Editing
    // fold.ts or fold-snapshot.ts therefore means: bump FOLD_VERSION if what a fold holds (or
    // how it is encoded) could change, then update this pin.
    const text = ["fold.ts", "fold-snapshot.ts"].map((f) => readFileSync(fileURLToPath(new URL(`../../src/audit/${f}`, import.meta.url)), "utf8")).join("\0");
    expect({ FOLD_VERSION, sha256: sha256B64u(new TextEncoder().encode(text)) }).toEqual({ FOLD_VERSION: 2, sha256: FOLD_RULES_PIN });

    const h = harness(memoryHarness);
    let store = await AuditStore.open(await h.open(), opts());
    for (const e of workload(20)) await store.append(e);
    await store.writeSnapshot();
    await store.close();
    const b = await h.open();
    const m = (await manifestOf(b)).payload;
    await b.batch([{ type: "put", key: SNAPSHOT_MANIFEST_KEY, value: canonicalBytes(signPayload("snapshot", { ...m, fold: FOLD_VERSION + 1 }, GATEWAY_KEY)) }], { sync: true });
    store = await AuditStore.open(b, opts());
    expect(store.openedFrom.snapshotSize).toBe(0);
    expect(store.openedFrom.snapshotProblem).toMatch(new RegExp(`other rules \\(fold v${FOLD_VERSION + 1}`));
    await store.close();
    // The header carries the version too, so parts from other rules never decode.
    const enc = encodeState(emptyState(W));
    expect(() => decodeState(sealState({ ...enc, header: { ...enc.header, fold: FOLD_VERSION + 1 } }, 1, undefined), W)).toThrow(new RegExp(`fold rules v${FOLD_VERSION + 1}`));
  });

  it("a ledger whose log refused an entry it had already folded never saves its projection", async () => {
    const h = harness(memoryHarness);
    const store = await AuditStore.open(await h.open(), opts());
    const errors: unknown[] = [];
    const ledger = new Ledger(store, { snapshotEvery: 2, onSnapshotError: (e) => errors.push(e) });
    await ledger.append(outcome("a"));
    await store.close();
    // The store is closed: it refuses what the ledger has folded. No snapshot, and no flood of errors.
    for (let i = 0; i < 20; i++) await ledger.append(outcome(`b${i}`)).catch(() => undefined);
    await expect(ledger.snapshot()).rejects.toThrow(/AUDIT_UNWRITABLE|refused/);
    expect(errors.length).toBeLessThanOrEqual(1);
  });
});
