// Crash safety: a child appends under concurrent load and is SIGKILLed at random moments.
// After every reopen each acknowledged record must be there, byte-identical in its leaf hash,
// nothing partial, and the log must verify and replay. The child also writes fold snapshots,
// so some kills land mid-snapshot: the store must reopen from an intact one (or none) with the
// state a fold from genesis gives. FAILCLOSED_CRASH_ITERATIONS raises the iteration count
// (default 30).
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { readStoredNode } from "../../src/audit/entry-bundle.ts";
import { SNAPSHOT_MANIFEST_KEY, snapshotPartRanges } from "../../src/audit/keys.ts";
import { parseStrict } from "../../src/canonical/strict-parse.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { emptyState, fold } from "../../src/audit/fold.ts";
import type { AuditRecord } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { GATEWAY_KEY, foldView, storeOptions, tempDir } from "./support.ts";

const CHILD = fileURLToPath(new URL("./crash-child.ts", import.meta.url));
const ITERATIONS = Number(process.env["FAILCLOSED_CRASH_ITERATIONS"] ?? "30");
/** The fold window of the child's log: small, so the fold forgets while the test runs. */
const WINDOW = 40;

/** Deterministic delays (mulberry32) so a failure can be reproduced from its iteration. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function runAndKill(dir: string, delayMs: number): Promise<{ acked: Map<number, string>; snapshots: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, dir, String(WINDOW)], { stdio: ["ignore", "pipe", "pipe"] });
    const acked = new Map<number, string>();
    let snapshots = 0;
    let buf = "";
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith("ready")) {
          setTimeout(() => child.kill("SIGKILL"), delayMs);
          continue;
        }
        if (line.startsWith("snapshot")) {
          snapshots++;
          continue;
        }
        const [seq, leaf] = line.split(" ");
        acked.set(Number(seq), leaf!);
      }
    });
    child.on("error", reject);
    child.on("close", (_code, signal) => {
      if (signal !== "SIGKILL") reject(new Error(`child exited without being killed: ${stderr}`));
      else resolve({ acked, snapshots });
    });
  });
}

describe("audit store: crash safety under kill -9", () => {
  it(`keeps every acknowledged append across ${ITERATIONS} random kills`, { timeout: 30_000 + ITERATIONS * 5_000 }, async () => {
    const t = tempDir("fc-crash-");
    const dir = join(t.dir, "db");
    const random = rng(0xfa11c105);
    const allAcked = new Map<number, string>();
    let totalAcked = 0;
    let snapshotsWritten = 0;
    let openedFromSnapshot = 0;
    let killedMidSnapshot = 0;
    try {
      for (let i = 0; i < ITERATIONS; i++) {
        const { acked, snapshots } = await runAndKill(dir, Math.floor(random() * 120));
        totalAcked += acked.size;
        snapshotsWritten += snapshots;
        for (const [k, v] of acked) allAcked.set(k, v);
        // Reopen: the store re-verifies the chain and head from its snapshot's position on (from
        // the first record when there is none), and throws AUDIT_CORRUPT otherwise.
        const store = await AuditStore.open(dir, storeOptions({ origin: "gw-crash", foldWindow: WINDOW }));
        try {
          // This iteration's acks in full (with a proof each); older ones are re-checked at the end.
          for (const [seq, leaf] of acked) {
            expect(seq, `iteration ${i}: acked seq ${seq} lost (size ${store.size})`).toBeLessThan(store.size);
            expect(store.proveInclusion(seq).leafHash, `iteration ${i}: seq ${seq}`).toBe(leaf);
          }
          // A snapshot batch is atomic: a kill leaves the last whole one, never a broken one.
          expect(store.openedFrom.snapshotProblem, `iteration ${i}`).toBeUndefined();
          // …and the records before it, checked in the background, are intact.
          expect((await store.prefixCheck).ok, `iteration ${i}`).toBe(true);
          if (store.openedFrom.snapshotSize > 0) openedFromSnapshot++;
          // A kill between a snapshot's part batches leaves parts in the slot its manifest does not name.
          const named = (parseStrict((await store.backend.get(SNAPSHOT_MANIFEST_KEY)) ?? new TextEncoder().encode("{}")) as { payload?: { slot?: number } }).payload?.slot ?? 0;
          for await (const _ of store.backend.iterate(snapshotPartRanges[named === 0 ? 1 : 0])) {
            killedMidSnapshot++;
            break;
          }
          const records: AuditRecord[] = [];
          for (let seq = 0; seq < store.size; seq++) records.push((await store.getRecord(seq))!);
          expect(foldView(store.state), `iteration ${i}`).toEqual(foldView(fold(records, emptyState(WINDOW))));
        } finally {
          await store.close();
        }
      }
      const backend = await LevelBackend.open(dir);
      for (const [seq, leaf] of allAcked) expect(toB64u(readStoredNode((k) => backend.getSync(k), 0, seq)!), `seq ${seq}`).toBe(leaf);
      // The child writes decision records without real evidence: check the chain, tree and
      // checkpoints, not decide().
      const rep = await replay(backendLogSource(backend), { gatewayKeys: [GATEWAY_KEY.keyId], origin: "gw-crash" }, { rederive: false, foldWindow: WINDOW });
      await backend.close();
      expect(rep.divergences).toEqual([]);
      expect(rep.recordsChecked).toBeGreaterThanOrEqual(allAcked.size);
      expect(rep.checkpointsVerified).toBeGreaterThan(0);
      expect(totalAcked).toBeGreaterThan(ITERATIONS); // the kills did land under load
      expect(snapshotsWritten).toBeGreaterThan(0);
      expect(openedFromSnapshot).toBeGreaterThan(0);
      expect(killedMidSnapshot).toBeGreaterThan(0);
    } finally {
      t.cleanup();
    }
  });
});
