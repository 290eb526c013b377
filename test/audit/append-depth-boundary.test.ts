// The encoder's nesting bound (canonicalize maxNesting / canonicalMembers) and the reader's
// maxDepth agree exactly: every nesting the store acknowledges reads back after a reopen, plain
// or prepared, and the deepest ones are refused.
import { expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { RECORD_LIMITS, prepareEntry, type AuditEntry } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { storeOptions } from "./support.ts";

const nested = (k: number): JsonValue => {
  let v: JsonValue = 1;
  for (let i = 0; i < k; i++) v = [v];
  return v;
};

const rejected: string[] = [];
it("every nesting the store acknowledges reads back after a reopen (plain and prepared)", async () => {
  for (const prepared of [false, true]) {
    for (let k = RECORD_LIMITS.maxDepth - 6; k <= RECORD_LIMITS.maxDepth + 3; k++) {
      const backend = new MemoryBackend();
      const store = await AuditStore.open(backend, storeOptions());
      const entry: AuditEntry = { type: "trust", change: { op: "policy.activate", policyDigest: "d", document: nested(k) } };
      let ok = true;
      try {
        if (prepared) await store.appendPrepared(prepareEntry(entry));
        else await store.append(entry);
      } catch {
        ok = false;
      }
      await store.close();
      if (!ok) { rejected.push(`${prepared}:${k}`); continue; }
      const again = await AuditStore.open(new MemoryBackend(backend.data), storeOptions()).then(
        (s) => s.close().then(() => "opened"),
        (e: unknown) => `open failed: ${String(e)}`,
      );
      expect(again, `depth ${k} (${prepared ? "prepared" : "plain"})`).toBe("opened");
    }
  }
  expect(rejected.length).toBeGreaterThan(0);
  expect(rejected.length).toBeLessThan(20);
});
