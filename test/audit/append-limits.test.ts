// The store never acknowledges a record it could not read back: one nested deeper than the
// log's reader allows, over its size limit, or with a "__proto__" key is refused at append
// (AUDIT_INVALID_ENTRY) or when prepared (the gateway then records a small deny instead), and
// the log still opens afterwards with every acknowledged record.
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { RECORD_LIMITS, prepareEntry, type AuditEntry } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { outcomeEntry, storeOptions } from "./support.ts";

let deep: JsonValue = 1;
for (let i = 0; i < 140; i++) deep = [deep];
const tooDeep: AuditEntry = { type: "trust", change: { op: "policy.activate", policyDigest: "d", document: deep } };
const protoKey = { type: "outcome", taskId: "t", status: "failed", error: "x", ...(JSON.parse('{"meta":{"__proto__":1}}') as object) } as unknown as AuditEntry;
const tooLarge: AuditEntry = { type: "outcome", taskId: "t", status: "failed", error: "e".repeat(RECORD_LIMITS.maxBytes) };

describe("append vs the reader's limits", () => {
  for (const [name, entry, code] of [
    ["nested deeper than the reader allows", tooDeep, /TOO_DEEP/],
    ['an own "__proto__" key', protoKey, /FORBIDDEN_KEY/],
    ["over the reader's size limit", tooLarge, /TOO_LARGE/],
  ] as const) {
    it(`${name}: refused at append, and every acknowledged record reads back after a reopen`, async () => {
      const backend = new MemoryBackend();
      const store = await AuditStore.open(backend, storeOptions());
      await store.append(outcomeEntry(0));
      await expect(store.append(entry)).rejects.toMatchObject({ code: "AUDIT_INVALID_ENTRY", message: expect.stringMatching(code) });
      await store.append(outcomeEntry(1));
      await store.close();
      const s = await AuditStore.open(new MemoryBackend(backend.data), storeOptions());
      expect(s.size).toBe(2);
      await s.close();
    });

    it(`${name}: refused when prepared, before anything is queued`, () => {
      expect(() => prepareEntry(entry)).toThrow(code);
    });
  }

  it("an entry just under the limit is prepared and stored", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions());
    const big: AuditEntry = { type: "outcome", taskId: "t", status: "failed", error: "e".repeat(RECORD_LIMITS.maxBytes - 1024) };
    expect(() => prepareEntry(big)).not.toThrow();
    await expect(store.append(big)).resolves.toMatchObject({ seq: 0 });
    await store.close();
  });
});
