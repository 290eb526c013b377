// Shared fixtures for the audit suites: backends (LevelDB in a temp dir, in-memory), keys, a
// deterministic clock and sample entries.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LevelBackend, MemoryBackend, type AuditBackend, type MemoryData } from "../../src/audit/backend.ts";
import type { AuditIo } from "../../src/audit/cli.ts";
import type { AuditState, Retiring } from "../../src/audit/fold.ts";
import type { AuditEntry } from "../../src/audit/records.ts";
import { AuditStore, type AuditStoreOptions } from "../../src/audit/store.ts";
import { keyPairFromSeed, type KeyPair } from "../../src/crypto/keys.ts";

export const seededKey = (byte: number): KeyPair => keyPairFromSeed(new Uint8Array(32).fill(byte));
export const GATEWAY_KEY = seededKey(7);
export const AUTHORITY_KEY = seededKey(9);
export const ROGUE_KEY = seededKey(66);

export function tempDir(prefix = "fc-audit-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A backend factory that can be reopened on the same data: what the shared suite runs against. */
export interface BackendHarness {
  readonly name: "level" | "memory";
  open(): Promise<AuditBackend>;
  cleanup(): void;
}

export function levelHarness(): BackendHarness {
  const t = tempDir();
  return { name: "level", open: async () => LevelBackend.open(join(t.dir, "db")), cleanup: t.cleanup };
}

export function memoryHarness(): BackendHarness {
  const data: MemoryData = { map: new Map(), keys: [] };
  return { name: "memory", open: () => Promise.resolve(new MemoryBackend(data)), cleanup: () => undefined };
}

export const HARNESSES: readonly (() => BackendHarness)[] = [levelHarness, memoryHarness];

/** `inner` with its batch writes going through `batch` (fault injection); reads go straight through. */
export function withBatch(inner: AuditBackend, batch: AuditBackend["batch"]): AuditBackend {
  return {
    kind: inner.kind,
    batch,
    get: (k) => inner.get(k),
    getSync: (k) => inner.getSync(k),
    getMany: (k) => inner.getMany(k),
    iterate: (r) => inner.iterate(r),
    close: () => inner.close(),
  };
}

/** Sample entries of the other types (their signatures are not real: for fold and store suites). */
export const evidenceEntry = (taskId: string): AuditEntry => ({ type: "evidence", taskId, kind: "request", signed: { payload: { taskId }, sig: "s" } });
export const trustEntry = (i: number): AuditEntry => ({ type: "trust", change: { op: i % 2 === 0 ? "gateway.add" : "authority.add", keyId: `k${i % 5}` } });
export const revocationEntry = (i: number): AuditEntry => ({
  type: "revocation",
  revocation: { payload: { kind: "failclosed/revocation/v1", issuer: "a", target: { type: "artifact", id: `art-${i}` }, reason: "r", issuedAt: 0 }, sig: "s" },
});

/** A clock that advances 1 ms per read: deterministic times in records. */
export function steppingClock(start = 1_700_000_000_000): () => number {
  let t = start;
  return () => t++;
}

export function storeOptions(over: Partial<AuditStoreOptions> = {}): AuditStoreOptions {
  return { origin: "gw-test", gatewayKey: GATEWAY_KEY, clock: steppingClock(), checkpointEvery: 0, ...over };
}

export async function openStore(h: BackendHarness, over: Partial<AuditStoreOptions> = {}): Promise<AuditStore> {
  return AuditStore.open(await h.open(), storeOptions(over));
}

export const outcomeEntry = (i: number): AuditEntry => ({
  type: "outcome",
  taskId: `task-${i}`,
  status: i % 3 === 0 ? "failed" : "succeeded",
  resultDigest: `digest-${i}`,
});

/** The live entries of a retire queue, in order: what is still due to be forgotten, and when. */
function live(r: Retiring, seqOf: (k: string) => number | undefined): [number, string][] {
  const out: [number, string][] = [];
  for (let i = r.head; i < r.keys.length; i++) if (seqOf(r.keys[i]!) === r.seqs[i]) out.push([r.entries[i]!, r.keys[i]!]);
  return out;
}

/**
 * Everything a state means, without its internal seq numbering (a gateway's projection numbers
 * entries only; seqs serve only to match a retire entry to its key's latest touch).
 */
export function foldView(s: Readonly<AuditState>): unknown {
  const sorted = (x: Iterable<string>): string[] => [...x].sort();
  return {
    size: s.size,
    entries: s.entries,
    windowed: s.windowed,
    window: s.window,
    trustVersion: s.trustVersion,
    authorities: sorted(s.authorities),
    gateways: sorted(s.gateways),
    policy: s.policy,
    revokedArtifacts: sorted(s.revokedArtifacts),
    revokedKeys: sorted(s.revokedKeys),
    nonces: sorted(s.consumedNonces.keys()),
    tasks: [...s.tasks].map(([k, t]) => `${k}:${t.status}`).sort(),
    retireTasks: live(s.retire.tasks, (k) => s.tasks.get(k)?.lastSeq),
    retireNonces: live(s.retire.nonces, (k) => s.consumedNonces.get(k)),
    lastCheckpoint: s.lastCheckpoint,
  };
}

/** A decision entry as a gateway with task claims writes it: an allow won both claims, a deny lost the nonce. */
export const claimDecision = (taskId: string, verdict: "allow" | "deny", nonce: string): AuditEntry => ({
  type: "decision",
  taskId,
  input: {
    nonce: { key: nonce, local: "fresh", cluster: verdict === "allow" ? "claimed" : "taken" },
    taskClaim: { taskId, local: "fresh", cluster: verdict === "allow" ? "claimed" : "not-attempted" },
  },
  decision: { verdict, checks: [], reasons: verdict === "deny" ? ["REPLAYED"] : [] },
});
export const claimOutcome = (taskId: string): AuditEntry => ({ type: "outcome", taskId, status: "succeeded", resultDigest: "q".repeat(43) });

/** An AuditIo that keeps what the command printed (not a terminal; exit codes come back from runAudit). */
export function captureIo(): AuditIo & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return { out: (s) => void (out += s), err: (s) => void (err += s), isTTY: false, setExitCode: () => undefined, stdout: () => out, stderr: () => err };
}
