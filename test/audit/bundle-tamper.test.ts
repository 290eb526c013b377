// Tampering with the bundled layout itself (headers, whole bundles, stray keys): each shows
// as a divergence at the right seq, on both backends — never as an exception out of replay.
import { afterEach, describe, expect, it } from "vitest";
import { BUNDLE_TAG } from "../../src/audit/entry-bundle.ts";
import { BUNDLE_SIZE, bundleKey } from "../../src/audit/keys.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay, type ReplayReport } from "../../src/audit/replay.ts";
import type { AuditStore } from "../../src/audit/store.ts";
import { GATEWAY_KEY, HARNESSES, evidenceEntry, openStore, type BackendHarness } from "./support.ts";

const kinds = (rep: ReplayReport): string[] => rep.divergences.map((d) => `${d.seq}:${d.kind}`);

for (const make of HARNESSES) {
  describe(`audit bundles under tampering: ${make().name}`, () => {
    let h: BackendHarness;
    let store: AuditStore;
    afterEach(async () => {
      await store.close();
      h.cleanup();
    });

    const setup = async (): Promise<void> => {
      h = make();
      store = await openStore(h, { checkpointEvery: 10 });
      // Evidence: records replay reads in full without needing decisions around them.
      for (let i = 0; i < 3 * BUNDLE_SIZE; i++) await store.append(evidenceEntry(`task-${i}`));
    };
    const run = (): Promise<ReplayReport> => replay(backendLogSource(store.backend), { gatewayKeys: [GATEWAY_KEY.keyId] });
    const edit = async (b: number, change: (v: Uint8Array) => Uint8Array | undefined): Promise<void> => {
      const v = new Uint8Array((await store.backend.get(bundleKey(b)))!);
      const next = change(v);
      await store.backend.batch([next === undefined ? { type: "del", key: bundleKey(b) } : { type: "put", key: bundleKey(b), value: next }], { sync: true });
    };

    it("an intact log verifies", async () => {
      await setup();
      expect(kinds(await run())).toEqual([]);
    });

    it("an unreadable bundle header: its records are malformed, later bundles keep their positions", async () => {
      await setup();
      await edit(1, (v) => (v.set([BUNDLE_TAG ^ 0xff], 0), v));
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: BUNDLE_SIZE, kind: "RECORD_MALFORMED" });
      expect(rep.divergences.filter((d) => d.kind === "SEQ_MISMATCH")).toEqual([]);
      expect(rep.recordsChecked).toBe(store.size);
    });

    it("a bundle cut short: reported at the first record that no longer fits", async () => {
      await setup();
      await edit(1, (v) => v.subarray(0, v.length - 1));
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: 2 * BUNDLE_SIZE - 1, kind: "RECORD_MALFORMED" });
    });

    it("a bundle whose header claims fewer records: the missing ones show at their seq", async () => {
      await setup();
      await edit(1, (v) => (v.set([BUNDLE_SIZE - 2], 1), v));
      const rep = await run();
      expect(rep.divergences[0]!.seq).toBe(BUNDLE_SIZE);
      expect(rep.ok).toBe(false);
    });

    it("a whole bundle deleted: reported at its first record", async () => {
      await setup();
      await edit(1, () => undefined);
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: BUNDLE_SIZE, kind: "SEQ_MISMATCH" });
    });

    it("the last bundle deleted: the head reports the truncation", async () => {
      await setup();
      const last = Math.floor((store.size - 1) / BUNDLE_SIZE);
      await edit(last, () => undefined);
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: last * BUNDLE_SIZE, kind: "TRUNCATED" });
    });

    it("two bundles swapped: reported at the first moved record", async () => {
      await setup();
      const [a, b] = [(await store.backend.get(bundleKey(0)))!, (await store.backend.get(bundleKey(1)))!];
      await store.backend.batch(
        [
          { type: "put", key: bundleKey(0), value: b },
          { type: "put", key: bundleKey(1), value: a },
        ],
        { sync: true },
      );
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: 0, kind: "SEQ_MISMATCH" });
    });

    it("a stray key among the bundles: reported at the position it takes", async () => {
      await setup();
      await store.backend.batch([{ type: "put", key: "b/zzz", value: new TextEncoder().encode("{}") }], { sync: true });
      const rep = await run();
      expect(rep.divergences[0]).toMatchObject({ seq: store.size, kind: "SEQ_MISMATCH" });
    });
  });
}
