// Checking a gateway's fold snapshot (fold-snapshot.ts), the one way both its readers do: the
// store at open (store.ts #readSnapshot, which also binds it to the stored tree) and the
// auditor (replay.ts, which compares it with its own fold from the first record: a gateway
// trusts its snapshot at start, and replay checks that trust was deserved).
import { canonicalize } from "../canonical/jcs.ts";
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { sha256B64u } from "../crypto/hash.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import type { AuditBackend } from "./backend.ts";
import { FOLD_VERSION, type AuditState, type Retiring } from "./fold.ts";
import { SNAPSHOT_KIND, decodeState } from "./fold-snapshot.ts";
import { SNAPSHOT_MANIFEST_KEY, snapshotPartKey, type SnapshotSlot } from "./keys.ts";

/** The signed manifest of a fold snapshot, stored under s/manifest. */
export interface SnapshotManifest {
  readonly kind: typeof SNAPSHOT_KIND;
  /** The log's origin (the gateway id); a snapshot from another log is never used. */
  readonly origin: string;
  /** Log position: the state is the fold of records [0, size). */
  readonly size: number;
  /** base64url Merkle root of records [0, size): binds the snapshot to this very log. */
  readonly root: string;
  /** base64url leaf hash of record size − 1: the chain link of the next record. */
  readonly prev: string;
  /** Records since the last checkpoint at that position (the checkpoint cadence goes on). */
  readonly since: number;
  readonly window: number;
  /** FOLD_VERSION of the rules the state was folded by: a snapshot made under others is not used. */
  readonly fold: number;
  /** base64url SHA-256 of each part, header first. */
  readonly parts: string[];
  /** Which slot holds the parts (keys.ts); absent in snapshots written before there were two: 0. */
  readonly slot?: SnapshotSlot;
  readonly time: number;
}

/** A snapshot as stored, unchecked: the manifest and the parts it names (undefined where missing). */
export interface StoredSnapshot {
  readonly manifest: Uint8Array;
  /** The slot the parts were read from: the one the manifest names, when it can be read. */
  readonly slot: SnapshotSlot;
  readonly parts: readonly (Uint8Array | undefined)[];
}

/** Parts read for one manifest at most: far more than any window's state needs. */
const MAX_PARTS = 1 << 16;

/**
 * Where a stored manifest says its parts are: its slot (0 unless it names 1) and how many it
 * names (0 when it cannot be read). Only where to look, never whether to trust them: the
 * signature check (checkStoredSnapshot) covers both. Never throws.
 */
export function manifestLocation(bytes: Uint8Array): { slot: SnapshotSlot; parts: number } {
  try {
    const payload = (parseStrict(bytes) as { payload?: { parts?: unknown; slot?: unknown } }).payload;
    return { slot: payload?.slot === 1 ? 1 : 0, parts: Array.isArray(payload?.parts) ? payload.parts.length : 0 };
  } catch {
    return { slot: 0, parts: 0 };
  }
}

/** The stored snapshot: its manifest and as many parts as the manifest names, if it can be read that far. */
export async function readStoredSnapshot(backend: AuditBackend): Promise<StoredSnapshot | undefined> {
  const manifest = await backend.get(SNAPSHOT_MANIFEST_KEY);
  if (manifest === undefined) return undefined;
  const { slot, parts } = manifestLocation(manifest);
  return { manifest, slot, parts: await backend.getMany(Array.from({ length: Math.min(parts, MAX_PARTS) }, (_, i) => snapshotPartKey(i, slot))) };
}

export type SnapshotCheck =
  | { readonly ok: true; readonly manifest: SnapshotManifest; readonly state: AuditState }
  | {
      readonly ok: false;
      readonly problem: string;
      /** The log position the manifest names (0 when it cannot be read). */
      readonly at: number;
      /** Parts the manifest names (0 when it cannot be read). */
      readonly parts: number;
      /** Made by other fold rules (FOLD_VERSION or window): unusable, but not a sign of damage. */
      readonly otherRules?: true;
      /**
       * Set when the manifest itself is genuine (signed by a trusted key, of this log) though the
       * snapshot is unusable: where it says the log stood still binds the log (see LogPosition).
       */
      readonly position?: LogPosition;
    };

/**
 * What a genuine manifest says of its log: it had `size` records, with this Merkle root and
 * this last leaf. Its writer signs it only once those records are durable, so a log that is
 * shorter, or differs there, was truncated or rewritten since.
 */
export interface LogPosition {
  readonly size: number;
  readonly root: string;
  readonly prev: string;
}

/**
 * Everything that can be checked of a snapshot on its own: a well-formed manifest signed by one
 * of `gatewayKeys`, of this origin (when given), folded by this code's rules and window, every
 * part matching its signed digest, and decoding to a state at the manifest's position. Binding
 * it to a log (root and chain link at its position) is the caller's part. Never throws.
 */
export function checkStoredSnapshot(stored: StoredSnapshot, o: { readonly gatewayKeys: readonly string[]; readonly origin?: string; readonly window: number }): SnapshotCheck {
  let signed: Signed<Partial<SnapshotManifest>>;
  try {
    signed = parseStrict(stored.manifest) as unknown as Signed<Partial<SnapshotManifest>>;
  } catch {
    return { ok: false, problem: "snapshot manifest is not JSON", at: 0, parts: 0 };
  }
  const m = typeof signed === "object" && signed !== null && typeof signed.payload === "object" && signed.payload !== null ? signed.payload : undefined;
  if (
    m === undefined ||
    !Number.isSafeInteger(m.size) ||
    m.size! < 1 ||
    !Number.isSafeInteger(m.since) ||
    m.since! < 0 ||
    typeof m.root !== "string" ||
    typeof m.prev !== "string" ||
    !Array.isArray(m.parts) ||
    !m.parts.every((d) => typeof d === "string") ||
    !(m.slot === undefined || m.slot === 0 || m.slot === 1) ||
    (m.slot ?? 0) !== stored.slot
  ) {
    return { ok: false, problem: "snapshot manifest is malformed", at: 0, parts: Array.isArray(m?.parts) ? m.parts.length : 0 };
  }
  const fail = (problem: string, more: { readonly otherRules?: true; readonly position?: LogPosition } = {}): SnapshotCheck => ({ ok: false, problem, at: m.size!, parts: m.parts!.length, ...more });
  const byTrusted = o.gatewayKeys.some((k) => {
    const pub = fromB64u(k, 32);
    return pub !== undefined && verifySigned("snapshot", signed, pub);
  });
  if (!byTrusted) return fail("snapshot manifest signature does not verify under a trusted gateway key");
  if (m.kind !== SNAPSHOT_KIND || (o.origin !== undefined && m.origin !== o.origin)) return fail(`snapshot is of another log (origin ${String(m.origin)})`);
  // Genuine from here on: whatever else fails, what it says of the log stands.
  const position: LogPosition = { size: m.size!, root: m.root, prev: m.prev };
  if (m.fold !== FOLD_VERSION || m.window !== o.window) {
    return fail(`snapshot was folded by other rules (fold v${String(m.fold)}, window ${String(m.window)}; this version folds by v${FOLD_VERSION}, window ${o.window})`, { otherRules: true, position });
  }
  const parts: Uint8Array[] = [];
  for (let i = 0; i < m.parts.length; i++) {
    const p = stored.parts[i];
    if (p === undefined || sha256B64u(p) !== m.parts[i]) return fail(`snapshot part ${i} is missing or differs from its signed digest`, { position });
    parts.push(p);
  }
  try {
    const state = decodeState(parts, o.window);
    if (state.size !== m.size) return fail("snapshot state is not at its manifest's position", { position });
    return { ok: true, manifest: m as SnapshotManifest, state };
  } catch (e) {
    return fail(`snapshot does not decode (${e instanceof Error ? e.message : String(e)})`, { position });
  }
}

/** A snapshot that passed checkStoredSnapshot: replay compares it when its fold reaches `size`. */
export interface SnapshotUnderAudit {
  readonly size: number;
  readonly root: string;
  readonly prev: string;
  readonly state: AuditState;
}

export type SnapshotAuditStart =
  | { readonly kind: "check"; readonly snapshot: SnapshotUnderAudit }
  | { readonly kind: "note"; readonly at: number; readonly note: string }
  | { readonly kind: "problem"; readonly seq: number; readonly detail: string };

/**
 * The auditor's start: a snapshot to compare, one made under other rules to note only (a
 * gateway of this version would not use it either), or a problem to report.
 */
export function startSnapshotAudit(stored: StoredSnapshot, gatewayKeys: readonly string[], origin: string | undefined, window: number): SnapshotAuditStart {
  const c = checkStoredSnapshot(stored, { gatewayKeys, ...(origin !== undefined ? { origin } : {}), window });
  if (c.ok) return { kind: "check", snapshot: { size: c.manifest.size, root: c.manifest.root, prev: c.manifest.prev, state: c.state } };
  if (c.otherRules === true) return { kind: "note", at: c.at, note: `${c.problem}: not compared` };
  return { kind: "problem", seq: c.at, detail: c.problem };
}

/** The live entries of a retire queue, in order: what is still to be forgotten, and when. */
function live(r: Retiring, seqOf: (k: string) => number | undefined): string[] {
  const out: string[] = [];
  for (let i = r.head; i < r.keys.length; i++) if (seqOf(r.keys[i]!) === r.seqs[i]) out.push(`${r.entries[i]!}:${r.keys[i]!}`);
  return out;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const sorted = (x: Iterable<string>): string[] => [...x].sort();

/**
 * The first way two folds differ in what they mean, or undefined when they agree. Seq numbers
 * are not compared (a gateway's projection numbers entries only; seqs serve only to match a
 * retire entry to its key's latest touch), everything else is: trust, policy, revocations,
 * spent nonces, task statuses, the window's clock and what it will forget when.
 */
export function foldDifference(a: Readonly<AuditState>, b: Readonly<AuditState>): string | undefined {
  const scalars: [string, unknown, unknown][] = [
    ["size", a.size, b.size],
    ["entries", a.entries, b.entries],
    ["windowed", a.windowed, b.windowed],
    ["window", a.window, b.window],
    ["trustVersion", a.trustVersion, b.trustVersion],
    // The whole policy, document included: a gateway decides on the document.
    ["policy", canonicalize(a.policy ?? null), canonicalize(b.policy ?? null)],
    // The floor a retired policy's entry must clear to be taken again.
    ["policy floor", canonicalize(a.policyHigh ?? null), canonicalize(b.policyHigh ?? null)],
    ["last checkpoint", canonicalize(a.lastCheckpoint ?? null), canonicalize(b.lastCheckpoint ?? null)],
  ];
  for (const [what, x, y] of scalars) if (x !== y) return `${what}: ${String(x)} vs ${String(y)}`;
  const sets: [string, Iterable<string>, Iterable<string>][] = [
    ["authorities", a.authorities, b.authorities],
    ["gateways", a.gateways, b.gateways],
    ["revoked artifacts", a.revokedArtifacts, b.revokedArtifacts],
    ["revoked keys", a.revokedKeys, b.revokedKeys],
    ["spent nonces", a.consumedNonces.keys(), b.consumedNonces.keys()],
    // A task's decision seq is numbered differently in a projection; whether it has one is not.
    ["tasks", [...a.tasks].map(([k, t]) => `${k}=${t.status}${t.decisionSeq !== undefined ? "+d" : ""}`), [...b.tasks].map(([k, t]) => `${k}=${t.status}${t.decisionSeq !== undefined ? "+d" : ""}`)],
  ];
  for (const [what, x, y] of sets) if (!sameList(sorted(x), sorted(y))) return `${what} differ`;
  if (!sameList(live(a.retire.tasks, (k) => a.tasks.get(k)?.lastSeq), live(b.retire.tasks, (k) => b.tasks.get(k)?.lastSeq))) return "tasks due to be forgotten differ";
  if (!sameList(live(a.retire.nonces, (k) => a.consumedNonces.get(k)), live(b.retire.nonces, (k) => b.consumedNonces.get(k)))) return "nonces due to be forgotten differ";
  return undefined;
}
