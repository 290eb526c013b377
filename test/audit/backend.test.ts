// One suite, every backend (abstract-level test style).
import { afterEach, describe, expect, it } from "vitest";
import type { AuditBackend } from "../../src/audit/backend.ts";
import { HARNESSES, type BackendHarness } from "./support.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

async function collect(it: AsyncIterable<[string, Uint8Array]>): Promise<string[]> {
  const out: string[] = [];
  for await (const [k, v] of it) out.push(`${k}=${dec(v)}`);
  return out;
}

for (const make of HARNESSES) {
  describe(`audit backend: ${make().name}`, () => {
    let h: BackendHarness;
    let db: AuditBackend;
    afterEach(async () => {
      await db.close().catch(() => undefined);
      h.cleanup();
    });
    const setup = async (): Promise<void> => {
      h = make();
      db = await h.open();
    };

    it("batch puts are readable by get, getSync and getMany; missing keys are undefined", async () => {
      await setup();
      await db.batch(
        [
          { type: "put", key: "a", value: enc("1") },
          { type: "put", key: "b", value: enc("2") },
        ],
        { sync: true },
      );
      expect(dec(await db.get("a"))).toBe("1");
      expect(dec(db.getSync("b"))).toBe("2");
      expect(await db.get("zz")).toBeUndefined();
      expect(db.getSync("zz")).toBeUndefined();
      expect((await db.getMany(["b", "x", "a"])).map(dec)).toEqual(["2", undefined, "1"]);
    });

    it("iterates in key order with gte/lt/reverse/limit and deletes", async () => {
      await setup();
      await db.batch(["r/03", "r/01", "r/02", "s/00", "q/99"].map((k) => ({ type: "put" as const, key: k, value: enc(k) })), { sync: true });
      expect(await collect(db.iterate({ gte: "r/", lt: "r0" }))).toEqual(["r/01=r/01", "r/02=r/02", "r/03=r/03"]);
      expect(await collect(db.iterate({ gte: "r/", lt: "r0", reverse: true, limit: 2 }))).toEqual(["r/03=r/03", "r/02=r/02"]);
      await db.batch([{ type: "del", key: "r/02" }], { sync: true });
      expect(await collect(db.iterate({ gte: "r/", lt: "r0" }))).toEqual(["r/01=r/01", "r/03=r/03"]);
      expect((await collect(db.iterate({}))).length).toBe(4);
    });

    it("a stored value is a copy: mutating the caller's buffer changes nothing", async () => {
      await setup();
      const v = enc("abc");
      await db.batch([{ type: "put", key: "k", value: v }], { sync: true });
      v[0] = 0x7a;
      expect(dec(await db.get("k"))).toBe("abc");
    });

    it("copies Buffers too, on write and on read (Buffer#slice is a view, not a copy)", async () => {
      await setup();
      const arena = Buffer.from("xxabcxx");
      await db.batch([{ type: "put", key: "k", value: arena.subarray(2, 5) }], { sync: true });
      arena.fill(0x7a);
      expect(dec(await db.get("k"))).toBe("abc");
      for (const read of [await db.get("k"), db.getSync("k"), (await db.getMany(["k"]))[0]]) read!.fill(0x7a);
      for await (const [, value] of db.iterate({})) value.fill(0x7a);
      expect(dec(db.getSync("k"))).toBe("abc");
    });

    it("data survives close and reopen", async () => {
      await setup();
      await db.batch([{ type: "put", key: "p", value: enc("persisted") }], { sync: true });
      await db.close();
      db = await h.open();
      expect(dec(await db.get("p"))).toBe("persisted");
    });
  });
}
