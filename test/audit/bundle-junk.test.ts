// Bytes appended after a bundle's last slot: the store refuses to open such a log, and replay
// (audit verify) reports it too, so the two never disagree about a log.
import { describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { bundleKey } from "../../src/audit/keys.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { GATEWAY_KEY, outcomeEntry, storeOptions } from "./support.ts";

describe("trailing bytes in a bundle", () => {
  it("replay reports what the store refuses to open", async () => {
    const backend = new MemoryBackend();
    const store = await AuditStore.open(backend, storeOptions({ checkpointEvery: 8 }));
    for (let i = 0; i < 20; i++) await store.append(outcomeEntry(i));
    await store.close();
    const v = (await new MemoryBackend(backend.data).get(bundleKey(0)))!;
    const junk = new TextEncoder().encode("hidden payload the verifier never looks at");
    const edited = new Uint8Array(v.length + junk.length);
    edited.set(v);
    edited.set(junk, v.length);
    const b2 = new MemoryBackend(backend.data);
    await b2.batch([{ type: "put", key: bundleKey(0), value: edited }], { sync: true });
    let storeRefuses = false;
    try {
      await (await AuditStore.open(new MemoryBackend(backend.data), storeOptions())).close();
    } catch {
      storeRefuses = true;
    }
    const rep = await replay(backendLogSource(new MemoryBackend(backend.data)), { gatewayKeys: [GATEWAY_KEY.keyId] });
    expect({ storeRefuses, replayOk: rep.ok }).toEqual({ storeRefuses: true, replayOk: false });
  });
});
