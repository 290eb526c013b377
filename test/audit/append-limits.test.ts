// The store never acknowledges a record it could not read back: one nested deeper than the
// log's reader allows, over its size limit, or with a "__proto__" key is refused at append
// (AUDIT_INVALID_ENTRY), and the log still opens afterwards.
import { afterAll, describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { AuditStore } from "../../src/audit/store.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { outcomeEntry, storeOptions } from "./support.ts";

describe("append vs the reader's limits", () => {
  afterAll(() => undefined);
  it("every acknowledged append can be read back after a reopen", async () => {
    const backend = new MemoryBackend();
    const store = await AuditStore.open(backend, storeOptions());
    await store.append(outcomeEntry(0));
    let deep: JsonValue = 1;
    for (let i = 0; i < 140; i++) deep = [deep];
    let acked = true;
    try {
      await store.append({ type: "trust", change: { op: "policy.activate", policyDigest: "d", document: deep } });
    } catch {
      acked = false;
    }
    await store.append(outcomeEntry(1));
    await store.close();
    let reopened: unknown;
    try {
      const s = await AuditStore.open(new MemoryBackend(backend.data), storeOptions());
      reopened = s.size;
      await s.close();
    } catch (e) {
      reopened = String(e);
    }
    // Either the deep entry is refused up front, or the log reopens with all acknowledged records.
    expect({ acked, reopened }).toEqual(acked ? { acked: true, reopened: 3 } : { acked: false, reopened: 2 });
  });

  it("an entry with an own \"__proto__\" key (canonicalize takes it, the reader refuses it) does not make the log unopenable", async () => {
    const backend = new MemoryBackend();
    const store = await AuditStore.open(backend, storeOptions());
    let acked = true;
    try {
      await store.append({ type: "outcome", taskId: "t", status: "failed", error: "x", ...(JSON.parse('{"meta":{"__proto__":1}}') as object) } as never);
    } catch {
      acked = false;
    }
    await store.close();
    let reopened: unknown;
    try {
      const s = await AuditStore.open(new MemoryBackend(backend.data), storeOptions());
      reopened = s.size;
      await s.close();
    } catch (e) {
      reopened = String(e);
    }
    expect({ acked, reopened }).toEqual(acked ? { acked: true, reopened: 1 } : { acked: false, reopened: 0 });
  });
});
