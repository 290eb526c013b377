// Entry bundles: the value codec, the commit writer, and hostile bytes read through the log
// source (attacker bytes → reported divergence, never an exception).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalize } from "../../src/canonical/jcs.ts";
import { MemoryBackend, type KvOp, type MemoryData } from "../../src/audit/backend.ts";
import {
  BUNDLE_TAG,
  BundleWriter,
  bundleCount,
  bundleSlots,
  emptyTail,
  encodeBundle,
  isExactBundle,
  readStoredNode,
  recordInBundle,
  slotBytes,
  slotNode,
  slotNodeCount,
  slotRecord,
  type BundleTail,
} from "../../src/audit/entry-bundle.ts";
import { BUNDLE_SIZE, bundleKey, nodesCompletedBy } from "../../src/audit/keys.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { MerkleFrontier, leafHash } from "../../src/audit/merkle.ts";
import { replay } from "../../src/audit/replay.ts";
import { GATEWAY_KEY, memoryHarness, openStore, outcomeEntry, type BackendHarness } from "./support.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
/** Plain bytes, so that a Buffer and a Uint8Array with the same contents compare equal. */
const u8 = (b: Uint8Array | undefined): Uint8Array | undefined => (b === undefined ? undefined : new Uint8Array(b));
const json = (i: number): string => canonicalize({ i, pad: "x".repeat(i % 37) });

/** Write `n` records through writers, `perCommit` at a time; returns the puts of each commit and the final tail. */
function writeCommits(n: number, perCommit: number): { commits: KvOp[][]; tail: BundleTail; frontier: MerkleFrontier } {
  const frontier = new MerkleFrontier();
  let tail = emptyTail(0);
  const commits: KvOp[][] = [];
  for (let i = 0; i < n; ) {
    const w = new BundleWriter(tail);
    for (let j = 0; j < perCommit && i < n; j++, i++) w.appendRecord(json(i), frontier);
    const ops: KvOp[] = [];
    tail = w.finish(ops);
    commits.push(ops);
  }
  return { commits, tail, frontier };
}

/** A copy of everything a harness's backend holds. */
async function snapshot(h: BackendHarness): Promise<MemoryData> {
  const backend = await h.open();
  const map = new Map<string, Uint8Array>();
  for await (const [k, v] of backend.iterate({})) map.set(k, v);
  await backend.close();
  return { map, keys: [] };
}

/** True when byte `i` of a bundle lies in a stored tree node above the leaf hash. */
function inHigherNode(value: Uint8Array, i: number): boolean {
  const n = bundleCount(value)!;
  for (let s = 0; s < n; s++) {
    const slot = slotBytes(value, n, s)!;
    const start = slot.byteOffset - value.byteOffset;
    if (i >= start + 1 + 32 && i < start + 1 + 32 * slotNodeCount(slot)!) return true;
  }
  return false;
}

/** The latest value of every key after applying the commits in order. */
function applied(commits: KvOp[][]): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const ops of commits) for (const op of ops) if (op.type === "put") m.set(op.key, op.value);
  return m;
}

describe("entry bundles: codec", () => {
  it("encodes slots with an offset table, read back in O(1) per slot", () => {
    const slots = [enc("a"), enc(""), enc("ccc")];
    const v = encodeBundle(slots);
    expect(v[0]).toBe(BUNDLE_TAG);
    expect(bundleCount(v)).toBe(3);
    expect(isExactBundle(v)).toBe(true);
    expect([0, 1, 2].map((i) => new TextDecoder().decode(slotBytes(v, 3, i)))).toEqual(["a", "", "ccc"]);
    expect(slotBytes(v, 3, 3)).toBeUndefined();
    // Extending keeps the stored slots' bytes and offsets.
    const more = encodeBundle([enc("dd")], { value: v, count: 3 });
    expect(bundleSlots(more)!.map((s) => new TextDecoder().decode(s))).toEqual(["a", "", "ccc", "dd"]);
    expect(u8(more.subarray(2, 2 + 12))).toEqual(u8(v.subarray(2, 2 + 12)));
  });

  it("refuses to build an empty or overfull bundle (caller bug)", () => {
    expect(() => encodeBundle([])).toThrow(RangeError);
    expect(() => encodeBundle(Array.from({ length: BUNDLE_SIZE + 1 }, () => enc("x")))).toThrow(RangeError);
  });

  it("a slot holds its node count, its nodes (leaf first) and the record", () => {
    const { commits, frontier } = writeCommits(BUNDLE_SIZE, BUNDLE_SIZE);
    const v = applied(commits).get(bundleKey(0))!;
    expect(isExactBundle(v)).toBe(true);
    for (let seq = 0; seq < BUNDLE_SIZE; seq++) {
      const slot = slotBytes(v, BUNDLE_SIZE, seq)!;
      expect(slotNodeCount(slot)).toBe(nodesCompletedBy(seq));
      expect(new TextDecoder().decode(slotRecord(slot))).toBe(json(seq));
      expect(u8(slotNode(slot, 0))).toEqual(leafHash(enc(json(seq))));
    }
    // The last slot of a full bundle completes the bundle's subtree: its root is stored there.
    const get = (k: string): Uint8Array | undefined => applied(commits).get(k);
    expect(readStoredNode(get, Math.log2(BUNDLE_SIZE), 0)).toEqual(frontier.root());
  });

  it("malformed values read as undefined, never as an exception", () => {
    const good = encodeBundle([enc("abc"), enc("de")]);
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.of(BUNDLE_TAG),
      Uint8Array.of(0x7f, 1, 1, 0, 0, 0, 0x41), // unknown tag
      Uint8Array.of(BUNDLE_TAG, 0), // no records
      Uint8Array.of(BUNDLE_TAG, BUNDLE_SIZE + 1), // too many
      good.subarray(0, 5), // offset table cut
    ];
    for (const v of cases) {
      expect(bundleCount(v)).toBeUndefined();
      expect(isExactBundle(v)).toBe(false);
      expect(bundleSlots(v)).toBeUndefined();
      expect(recordInBundle(v, 0)).toBeUndefined();
    }
    // The slot area cut short: the header still reads, the cut slot does not.
    const cut = good.subarray(0, good.length - 1);
    expect(bundleCount(cut)).toBe(2);
    expect(isExactBundle(cut)).toBe(false);
    expect(u8(slotBytes(cut, 2, 0))).toEqual(enc("abc"));
    expect(slotBytes(cut, 2, 1)).toBeUndefined();
    // Offsets going backwards.
    const back = good.slice();
    back.set([9, 0, 0, 0], 2);
    expect(slotBytes(back, 2, 1)).toBeUndefined();
    // A slot claiming more nodes than it holds.
    expect(slotNodeCount(Uint8Array.of(2, ...new Uint8Array(40)))).toBeUndefined();
    expect(slotRecord(Uint8Array.of(0))).toBeUndefined();
  });
});

describe("entry bundles: writer", () => {
  it("any commit sizes give the same stored bundles, the full ones exactly BUNDLE_SIZE records", () => {
    const n = 3 * BUNDLE_SIZE + 5;
    const reference = applied(writeCommits(n, n).commits);
    for (const per of [1, 3, BUNDLE_SIZE - 1, BUNDLE_SIZE, BUNDLE_SIZE + 1, 40]) {
      const { commits, tail } = writeCommits(n, per);
      expect(applied(commits), `${per} per commit`).toEqual(reference);
      // A commit puts each bundle it touched once: at most the partial it extended plus the new ones.
      for (const ops of commits) expect(ops.length).toBeLessThanOrEqual(Math.ceil(per / BUNDLE_SIZE) + 1);
      expect(tail).toMatchObject({ index: 3, count: 5 });
      expect(u8(tail.value)).toEqual(u8(reference.get(bundleKey(3))));
    }
    expect([...reference.keys()]).toEqual([0, 1, 2, 3].map(bundleKey));
    for (const b of [0, 1, 2]) expect(bundleCount(reference.get(bundleKey(b))!)).toBe(BUNDLE_SIZE);
    // The writer's bytes are the reference encoder's.
    for (const v of reference.values()) expect(u8(encodeBundle(bundleSlots(v)!.map((x) => x!)))).toEqual(u8(v));
  });

  it("leaves the tail it started from untouched (a failed commit must not advance it)", () => {
    const { tail, frontier } = writeCommits(BUNDLE_SIZE + 3, 2);
    const before = { ...tail, value: tail.value!.slice() };
    const w = new BundleWriter(tail);
    for (let i = 0; i < 2 * BUNDLE_SIZE; i++) w.appendRecord(json(100 + i), frontier);
    const next = w.finish([]);
    expect(next).not.toBe(tail);
    expect(tail.index).toBe(before.index);
    expect(tail.count).toBe(before.count);
    expect(u8(tail.value)).toEqual(u8(before.value));
  });

  it("encodes multi-byte UTF-8 and large records, growing its scratch space", () => {
    const frontier = new MerkleFrontier();
    const big = canonicalize({ s: "é€😀".repeat(50_000) });
    const w = new BundleWriter(emptyTail(0));
    w.appendRecord(big, frontier);
    w.appendRecord(json(1), frontier);
    const ops: KvOp[] = [];
    w.finish(ops);
    const v = (ops[0] as { value: Uint8Array }).value;
    expect(new TextDecoder().decode(recordInBundle(v, 0))).toBe(big);
    expect(u8(slotNode(slotBytes(v, 2, 0)!, 0))).toEqual(leafHash(enc(big)));
    expect(new TextDecoder().decode(recordInBundle(v, 1))).toBe(json(1));
  });

  it("refuses a record out of step with the tree, and use after finish (caller bugs)", () => {
    const frontier = new MerkleFrontier();
    frontier.append(new Uint8Array(32));
    expect(() => new BundleWriter(emptyTail(0)).appendRecord(json(0), frontier)).toThrow(/out of step/);
    const w = new BundleWriter(emptyTail(0));
    w.finish([]);
    expect(() => w.appendRecord(json(0), new MerkleFrontier())).toThrow(/out of step/);
    expect(() => w.finish([])).toThrow(/finished/);
  });
});

describe("entry bundles: hostile bytes through the log source", () => {
  const keyArb = fc.oneof(
    fc.integer({ min: 0, max: 5 }).map(bundleKey),
    fc.constantFrom("b/", "b/zz", "b/0000000000000g", "b/000000000000001"),
  );

  it("arbitrary values under bundle keys: the source and replay report, never throw", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(keyArb, fc.uint8Array({ maxLength: 300 })), { maxLength: 4 }), async (entries) => {
        const backend = new MemoryBackend();
        await backend.batch(entries.map(([key, value]) => ({ type: "put" as const, key, value })), { sync: true });
        const src = backendLogSource(backend);
        for await (const { position } of src.records()) if (position !== undefined) src.storedLeaf!(position);
        const rep = await replay(src, { gatewayKeys: [GATEWAY_KEY.keyId] });
        expect(rep.ok).toBe(entries.length === 0);
      }),
      { numRuns: 200 },
    );
  });

  it("a store's log with a bundle byte flipped or the bundle cut: reported unless only a higher tree node changed, never thrown", async () => {
    const h = memoryHarness();
    const store = await openStore(h);
    for (let i = 0; i < 2 * BUNDLE_SIZE + 3; i++) await store.append(outcomeEntry(i));
    await store.close();
    const original = await snapshot(h);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.boolean(), async (b, at, mask, cut) => {
        const map = new Map(original.map);
        const value = map.get(bundleKey(b))!.slice();
        const i = at % value.length;
        if (cut) map.set(bundleKey(b), value.subarray(0, i));
        else map.set(bundleKey(b), (value.set([value[i]! ^ mask], i), value));
        const rep = await replay(backendLogSource(new MemoryBackend({ map, keys: [] })), { gatewayKeys: [GATEWAY_KEY.keyId] });
        if (cut || !inHigherNode(original.map.get(bundleKey(b))!, i)) expect(rep.ok, `${cut ? "cut" : "flip"} bundle ${b} at ${i}`).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
