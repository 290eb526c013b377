// A fold snapshot is a cache, but its signed manifest is also a statement about the log: "it had
// `size` records, with this root and this last leaf". The store signs one only once the records
// it covers are synced (store.ts #commit → #startSnapshot), so no crash leaves a manifest past
// the head or naming another root or chain link there (crash.test.ts and snapshot-faults.test.ts
// reopen after kills and faults mid-snapshot). A genuine manifest (this gateway's key, this
// origin) that the log contradicts proves truncation or rewrite: open refuses with AUDIT_CORRUPT,
// as for any log that contradicts itself, and writes nothing, so the evidence is never
// overwritten by the next snapshot. Real LevelDB in a temp dir and the in-memory backend.
import { afterEach, describe, expect, it } from "vitest";
import type { AuditBackend } from "../../src/audit/backend.ts";
import { readStoredNode } from "../../src/audit/entry-bundle.ts";
import { HEAD_KEY, SNAPSHOT_MANIFEST_KEY, bundleKey, snapshotPartKey } from "../../src/audit/keys.ts";
import { AuditStore, type SnapshotManifest } from "../../src/audit/store.ts";
import { canonicalBytes } from "../../src/canonical/jcs.ts";
import { parseStrict } from "../../src/canonical/strict-parse.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { GATEWAY_KEY, HARNESSES, ROGUE_KEY, claimDecision as decision, storeOptions, type BackendHarness } from "./support.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";

const W = 23;
const opts = (over: Parameters<typeof storeOptions>[0] = {}) => storeOptions({ foldWindow: W, ...over });

let harnesses: BackendHarness[] = [];
afterEach(() => {
  for (const h of harnesses) h.cleanup();
  harnesses = [];
});

/** Every key and value the backend holds, to show that a refused open wrote nothing. */
async function dump(b: AuditBackend): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const [k, v] of b.iterate({})) out.set(k, toB64u(v));
  return out;
}

const put = (b: AuditBackend, key: string, value: Uint8Array) => b.batch([{ type: "put", key, value }], { sync: true });
const manifestOf = async (b: AuditBackend): Promise<SnapshotManifest> => (parseStrict((await b.get(SNAPSHOT_MANIFEST_KEY))!) as unknown as Signed<SnapshotManifest>).payload;
const resign = async (b: AuditBackend, change: (m: SnapshotManifest) => SnapshotManifest, key = GATEWAY_KEY) => put(b, SNAPSHOT_MANIFEST_KEY, canonicalBytes(signPayload("snapshot", change(await manifestOf(b)), key)));

/** Drop the records from 32 on (bundles of 16) and rewrite the head to match: a consistent, shorter log. */
async function truncateTo32(b: AuditBackend): Promise<void> {
  const last = toB64u(readStoredNode((k) => b.getSync(k), 0, 31)!);
  await b.batch([{ type: "del", key: bundleKey(2) }, { type: "put", key: HEAD_KEY, value: canonicalBytes({ size: 32, last }) }], { sync: true });
}

for (const make of HARNESSES) {
  const probe = make();
  const name = probe.name;
  probe.cleanup();
  describe(`a genuine snapshot manifest the log contradicts is evidence, not a stale cache (${name})`, () => {
    /** 40 allows (n0..n39 spent), a snapshot at 40, closed. */
    async function logWithSnapshot(): Promise<BackendHarness> {
      const h = make();
      harnesses.push(h);
      const store = await AuditStore.open(await h.open(), opts());
      for (let i = 0; i < 40; i++) await store.append(decision(`t${i}`, "allow", `n${i}`));
      expect((await store.writeSnapshot()).size).toBe(40);
      await store.close();
      return h;
    }

    async function tamper(h: BackendHarness, edit: (b: AuditBackend) => Promise<void>): Promise<void> {
      const b = await h.open();
      await edit(b);
      await b.close();
    }

    /** Open refuses (twice: nothing it did the first time changes that), and writes nothing. */
    async function expectEvidence(h: BackendHarness, detail: RegExp, over: Parameters<typeof opts>[0] = {}): Promise<void> {
      const b = await h.open();
      const before = await dump(b);
      await b.close();
      for (let i = 0; i < 2; i++) {
        // A backend handed to open() stays its caller's to close, opened or not.
        const backend = await h.open();
        const opened = AuditStore.open(backend, opts(over));
        await expect(opened).rejects.toMatchObject({ name: "AuditStoreError", code: "AUDIT_CORRUPT" });
        await expect(opened).rejects.toThrow(/truncated or rewritten/);
        await expect(opened).rejects.toThrow(detail);
        await backend.close();
      }
      const after = await h.open();
      expect(await dump(after)).toEqual(before);
      await after.close();
    }

    it("truncated below the snapshot, head rewritten to match: AUDIT_CORRUPT, and the manifest stays", async () => {
      const h = await logWithSnapshot();
      await tamper(h, truncateTo32);
      await expectEvidence(h, /had 40 records .* but it has 32/);
    });

    it("rewritten with a valid chain and tree (a spent nonce's allow dropped), manifest and parts put back: AUDIT_CORRUPT", async () => {
      const h = await logWithSnapshot();
      await tamper(h, async (b) => {
        const keep = [SNAPSHOT_MANIFEST_KEY, ...Array.from({ length: 8 }, (_, i) => snapshotPartKey(i, 0)), ...Array.from({ length: 8 }, (_, i) => snapshotPartKey(i, 1))];
        const kept = (await b.getMany(keep)).map((v, i) => [keep[i]!, v] as const).filter((e): e is readonly [string, Uint8Array] => e[1] !== undefined);
        const records = (await readRecords(b)).filter((r) => !(r.type === "decision" && r.taskId === "t5"));
        // One record short: pad with another so the log still reaches the snapshot's position.
        await writeForgedLog(b, [...records, { ...records[0]!, taskId: "pad" } as never]);
        await b.batch(kept.map(([key, value]) => ({ type: "put" as const, key, value })), { sync: true });
      });
      await expectEvidence(h, /root there is/);
    });

    it("a genuine manifest binds the log even when its snapshot is unusable (a part missing)", async () => {
      const h = await logWithSnapshot();
      await tamper(h, async (b) => {
        const m = await manifestOf(b);
        await b.batch([{ type: "del", key: snapshotPartKey(0, m.slot ?? 0) }], { sync: true });
        await truncateTo32(b);
      });
      await expectEvidence(h, /but it has 32/);
    });

    it("a genuine manifest made under another fold window still binds the log", async () => {
      const h = await logWithSnapshot();
      await tamper(h, async (b) => {
        await resign(b, (m) => ({ ...m, window: W + 1 }));
        await truncateTo32(b);
      });
      await expectEvidence(h, /but it has 32/);
    });

    it("signed by this gateway: a position past the log's end", async () => {
      const h = await logWithSnapshot();
      await tamper(h, (b) => resign(b, (m) => ({ ...m, size: 10_000 })));
      await expectEvidence(h, /had 10000 records .* but it has 40/);
    });

    it("signed by this gateway: a root that is not the log's root there", async () => {
      const h = await logWithSnapshot();
      await tamper(h, (b) => resign(b, (m) => ({ ...m, root: m.prev })));
      await expectEvidence(h, /root there is/);
    });

    it("signed by this gateway: a chain link that is not the log's", async () => {
      const h = await logWithSnapshot();
      await tamper(h, (b) => resign(b, (m) => ({ ...m, prev: m.root })));
      await expectEvidence(h, /record 39 is another/);
    });

    // Not evidence: a manifest this gateway did not sign, or of another log, says nothing of
    // this one. It is refused as a cache, the state comes from the log, and the next snapshot
    // replaces it (snapshot.test.ts).
    it("a manifest past the end signed by another key is only refused", async () => {
      const h = await logWithSnapshot();
      await tamper(h, async (b) => {
        await resign(b, (m) => m, ROGUE_KEY);
        await truncateTo32(b);
      });
      const store = await AuditStore.open(await h.open(), opts());
      expect(store.openedFrom).toMatchObject({ snapshotSize: 0, recordsFolded: 32, snapshotProblem: expect.stringMatching(/signature/) as unknown });
      expect(store.writable).toBe(true);
      await store.close();
    });

    it("a manifest of another origin past the end is only refused", async () => {
      const h = await logWithSnapshot();
      await tamper(h, truncateTo32);
      const store = await AuditStore.open(await h.open(), opts({ origin: "gw-other" }));
      expect(store.openedFrom).toMatchObject({ snapshotSize: 0, recordsFolded: 32, snapshotProblem: expect.stringMatching(/another log/) as unknown });
      await store.close();
    });
  });
}
