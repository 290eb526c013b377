// The auditor's view of a gateway's fold snapshot (fold-snapshot.ts, store.ts). A gateway
// trusts its own snapshot at start instead of folding its whole log; replay, which always
// folds from the first record, checks that trust was deserved: the snapshot is signed by a
// trusted gateway key and its state is exactly replay's own fold at its position. A snapshot
// that fails is reported; one made under other fold rules is only noted (a gateway of this
// version would not use it either).
import { canonicalize } from "../canonical/jcs.ts";
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { sha256B64u } from "../crypto/hash.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import { FOLD_VERSION, type AuditState, type Retiring } from "./fold.ts";
import { SNAPSHOT_KIND, decodeState } from "./fold-snapshot.ts";

/** What a log source holds for its snapshot: the stored manifest and parts, unchecked. */
export interface StoredSnapshot {
  readonly manifest: Uint8Array;
  readonly parts: readonly (Uint8Array | undefined)[];
}

/** A snapshot that passed its signature and decoding: to compare at `size`. */
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

interface ManifestFields {
  kind?: unknown;
  origin?: unknown;
  size?: unknown;
  root?: unknown;
  prev?: unknown;
  window?: unknown;
  fold?: unknown;
  parts?: unknown;
}

/** Check what can be checked before folding: signature, origin, window, digests, decoding. */
export function startSnapshotAudit(stored: StoredSnapshot, gatewayKeys: readonly string[], origin: string | undefined, window: number): SnapshotAuditStart {
  let signed: Signed<ManifestFields>;
  try {
    signed = parseStrict(stored.manifest) as unknown as Signed<ManifestFields>;
  } catch {
    return { kind: "problem", seq: 0, detail: "snapshot manifest is not JSON" };
  }
  const m = typeof signed === "object" && signed !== null && typeof signed.payload === "object" && signed.payload !== null ? signed.payload : undefined;
  const size = m !== undefined && Number.isSafeInteger(m.size) && (m.size as number) > 0 ? (m.size as number) : undefined;
  if (m === undefined || size === undefined || typeof m.root !== "string" || typeof m.prev !== "string" || !Array.isArray(m.parts)) {
    return { kind: "problem", seq: 0, detail: "snapshot manifest is malformed" };
  }
  const byTrusted = gatewayKeys.some((k) => {
    const pub = fromB64u(k, 32);
    return pub !== undefined && verifySigned("snapshot", signed, pub);
  });
  if (!byTrusted) return { kind: "problem", seq: size, detail: "snapshot manifest not signed by a trusted gateway key" };
  if (m.kind !== SNAPSHOT_KIND || (origin !== undefined && m.origin !== origin)) return { kind: "problem", seq: size, detail: `snapshot names another log (${String(m.origin)})` };
  if (m.fold !== FOLD_VERSION || m.window !== window) return { kind: "note", at: size, note: `folded by other rules (fold v${String(m.fold)}, window ${String(m.window)}): not compared` };
  const parts: Uint8Array[] = [];
  for (let i = 0; i < m.parts.length; i++) {
    const p = stored.parts[i];
    if (p === undefined || sha256B64u(p) !== m.parts[i]) return { kind: "problem", seq: size, detail: `snapshot part ${i} is missing or differs from its signed digest` };
    parts.push(p);
  }
  try {
    const state = decodeState(parts, window);
    if (state.size !== size) return { kind: "problem", seq: size, detail: "snapshot state is not at its manifest's position" };
    return { kind: "check", snapshot: { size, root: m.root, prev: m.prev, state } };
  } catch (e) {
    return { kind: "problem", seq: size, detail: `snapshot does not decode: ${e instanceof Error ? e.message : String(e)}` };
  }
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
