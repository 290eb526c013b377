// Fold snapshots: the folded state (fold.ts) at one position of the log, so that opening a
// long log folds only the records after it instead of every record since genesis. A snapshot
// is a cache of derived data, never a source of truth: the store writes it signed by the
// gateway key and bound to the Merkle root and chain at its position (store.ts), and a
// snapshot that fails any check is ignored and the state rebuilt from the log itself.
// Auditors never use snapshots: replay always folds from genesis.
//
// Encoding: a header part, then one part per chunk of each collection, every part a JSON
// document of flat arrays (JSON.stringify/JSON.parse are the fastest codecs V8 has, and
// chunking keeps every part far below V8's string limit however large the state grows).
// Decoding treats every part as hostile input: a wrong type, a duplicate key or a broken
// invariant throws SnapshotError, which the store turns into "rebuild from the log".
import type { JsonValue } from "../canonical/jcs.ts";
import type { CheckpointPayload } from "./records.ts";
import { FOLD_VERSION, emptyState, type AuditState, type Retiring, type TaskState, type TaskStatus } from "./fold.ts";

export const SNAPSHOT_KIND = "failclosed/fold-snapshot/v1";

/** Items per chunk: a part stays a few MB at most. */
export const SNAPSHOT_CHUNK = 32_768;

export class SnapshotError extends Error {
  override readonly name = "SnapshotError";
}

const utf8 = new TextEncoder();
const text = new TextDecoder("utf-8", { fatal: true });

type Section = "authorities" | "gateways" | "revokedArtifacts" | "revokedKeys" | "nonces" | "tasks" | "retireTasks" | "retireNonces";
const SECTIONS: readonly Section[] = ["authorities", "gateways", "revokedArtifacts", "revokedKeys", "nonces", "tasks", "retireTasks", "retireNonces"];

interface Header {
  v: 1;
  /** FOLD_VERSION of the rules the state was folded by. */
  fold: number;
  /** The log position the state stands for (records before it folded). */
  size: number;
  entries: number;
  windowed: boolean;
  window: number;
  trustVersion: number;
  policy: { digest: string; document: JsonValue } | null;
  policyHigh: { version: number; digest: string; issuer: string } | null;
  lastCheckpoint: CheckpointPayload | null;
  /** Item count of each section, in SECTIONS order. */
  counts: number[];
}

const STATUSES: readonly TaskStatus[] = ["evidence", "allowed", "denied", "succeeded", "failed"];
const STATUS_CODE = new Map<TaskStatus, number>(STATUSES.map((s, i) => [s, i]));

/**
 * Cut column arrays into parts of SNAPSHOT_CHUNK items each, with a pause point after each part.
 * A part is one JSON.stringify of a few MB at most: the unit of work between pauses.
 */
function* chunked(section: Section, columns: Record<string, readonly unknown[]>, n: number, out: Uint8Array[]): Generator<null, void> {
  for (let at = 0; at < n; at += SNAPSHOT_CHUNK) {
    const part: Record<string, unknown> = { s: section };
    for (const [name, col] of Object.entries(columns)) part[name] = col.slice(at, at + SNAPSHOT_CHUNK);
    out.push(utf8.encode(JSON.stringify(part)));
    yield null;
  }
}

/** Loop iterations between pause points in the index work: a few ms. */
const STEP = 16_384;

/** A retire queue's pending entries (from its head on), copied. */
interface RetireCopy {
  readonly entries: readonly number[];
  readonly seqs: readonly number[];
  readonly keys: readonly string[];
}

const copyRetiring = (r: Retiring): RetireCopy => ({ entries: r.entries.slice(r.head), seqs: r.seqs.slice(r.head), keys: r.keys.slice(r.head) });

/**
 * A state's contents copied out at one instant, as flat columns: what encoding needs, and
 * nothing the live state can change afterwards (task states are mutated in place, the retire
 * queues advance). Taking it costs one pass over the collections and no encoding, so it can be
 * taken synchronously at the exact point a snapshot stands for; encodeSteps encodes it later,
 * in slices.
 */
export interface CapturedState {
  readonly header: Omit<Header, "size" | "lastCheckpoint" | "counts">;
  readonly sets: readonly (readonly [Section, readonly string[]])[];
  readonly nonces: { readonly k: readonly string[]; readonly q: readonly number[] };
  readonly tasks: { readonly k: readonly string[]; readonly st: readonly number[]; readonly q: readonly number[]; readonly d: readonly number[] };
  readonly retireTasks: RetireCopy;
  readonly retireNonces: RetireCopy;
}

export function captureState(state: Readonly<AuditState>): CapturedState {
  // Native iteration into preallocated columns: this runs synchronously on the gateway's
  // thread, so it is the one pause a snapshot makes (forEach allocates no entry pairs).
  const nk = Array.from(state.consumedNonces.keys());
  const nq = Array.from(state.consumedNonces.values());
  const n = state.tasks.size;
  const tk = new Array<string>(n);
  const tst = new Array<number>(n);
  const tq = new Array<number>(n);
  const td = new Array<number>(n);
  let i = 0;
  state.tasks.forEach((t, k) => {
    tk[i] = k;
    tst[i] = STATUS_CODE.get(t.status)!;
    tq[i] = t.lastSeq;
    td[i] = t.decisionSeq ?? -1;
    i++;
  });
  return {
    header: { v: 1, fold: FOLD_VERSION, entries: state.entries, windowed: state.windowed, window: state.window, trustVersion: state.trustVersion, policy: state.policy ?? null, policyHigh: state.policyHigh ?? null },
    sets: [
      ["authorities", [...state.authorities]],
      ["gateways", [...state.gateways]],
      ["revokedArtifacts", [...state.revokedArtifacts]],
      ["revokedKeys", [...state.revokedKeys]],
    ],
    nonces: { k: nk, q: nq },
    tasks: { k: tk, st: tst, q: tq, d: td },
    retireTasks: copyRetiring(state.retire.tasks),
    retireNonces: copyRetiring(state.retire.nonces),
  };
}

/** Each key's index in `keys` (keys are distinct: they come from one Map). */
function* indexOf(keys: readonly string[]): Generator<null, Map<string, number>> {
  const index = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) {
    index.set(keys[i]!, i);
    if (i % STEP === STEP - 1) yield null;
  }
  return index;
}

/**
 * The live entries of a retire queue as (entry, index of the key in the captured keys). An
 * entry whose key was touched again since (its seq moved on) would be skipped when it comes
 * due, so it is left out; every live entry's key is still held (a key is deleted only when its
 * live entry comes due, after every earlier one), and its seq is the key's own.
 */
function* liveRetiring(r: RetireCopy, seqs: readonly number[], index: ReadonlyMap<string, number>): Generator<null, { e: number[]; i: number[] }> {
  const e: number[] = [];
  const i: number[] = [];
  for (let at = 0; at < r.seqs.length; at++) {
    const k = index.get(r.keys[at]!);
    if (k !== undefined && seqs[k] === r.seqs[at]) {
      e.push(r.entries[at]!);
      i.push(k);
    }
    if (at % STEP === STEP - 1) yield null;
  }
  return { e, i };
}

/**
 * A state encoded without its position: the store completes the header once it knows where
 * in the log the state stands (sealState).
 */
export interface EncodedState {
  readonly header: Omit<Header, "size" | "lastCheckpoint">;
  readonly parts: readonly Uint8Array[];
}

/**
 * Encode a captured state in resumable steps: each `null` it yields is a point to pause at
 * (the gateway's event loop runs between), every step a few ms of work at most; it returns the
 * encoding. Same bytes as encodeState.
 */
export function* encodeSteps(c: CapturedState): Generator<null, EncodedState> {
  const taskIndex = yield* indexOf(c.tasks.k);
  const nonceIndex = yield* indexOf(c.nonces.k);
  const rt = yield* liveRetiring(c.retireTasks, c.tasks.q, taskIndex);
  const rn = yield* liveRetiring(c.retireNonces, c.nonces.q, nonceIndex);
  const parts: Uint8Array[] = [];
  for (const [section, items] of c.sets) yield* chunked(section, { k: items }, items.length, parts);
  yield* chunked("nonces", c.nonces, c.nonces.k.length, parts);
  yield* chunked("tasks", c.tasks, c.tasks.k.length, parts);
  yield* chunked("retireTasks", rt, rt.e.length, parts);
  yield* chunked("retireNonces", rn, rn.e.length, parts);
  return { header: { ...c.header, counts: [...c.sets.map(([, s]) => s.length), c.nonces.k.length, c.tasks.k.length, rt.e.length, rn.e.length] }, parts };
}

/** Encode a state's collections (a gateway's projection or a store's own fold) in one go. */
export function encodeState(state: Readonly<AuditState>): EncodedState {
  const steps = encodeSteps(captureState(state));
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * The parts to store, header first, for a state standing at log position `size` (which
 * overrides state.size: a gateway's projection numbers entries only, never the checkpoints
 * the store inserts), with the log's last checkpoint at that position.
 */
export function sealState(enc: EncodedState, size: number, lastCheckpoint: CheckpointPayload | undefined): Uint8Array[] {
  const header: Header = { ...enc.header, size, lastCheckpoint: lastCheckpoint ?? null };
  return [utf8.encode(JSON.stringify(header)), ...enc.parts];
}

const fail = (what: string): never => {
  throw new SnapshotError(what);
};

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function parsePart(bytes: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text.decode(bytes));
  } catch (e) {
    throw new SnapshotError(`${what} is not JSON (${String(e)})`);
  }
  return isObj(v) ? v : fail(`${what} is not an object`);
}

function strings(v: unknown, n: number, what: string): string[] {
  if (!Array.isArray(v) || v.length !== n) fail(`${what}: expected ${n} strings`);
  for (const s of v as unknown[]) if (typeof s !== "string") fail(`${what}: not a string`);
  return v as string[];
}

function ints(v: unknown, n: number, what: string, below: number, min = 0): number[] {
  if (!Array.isArray(v) || v.length !== n) fail(`${what}: expected ${n} integers`);
  for (const x of v as unknown[]) if (!Number.isSafeInteger(x) || (x as number) < min || (x as number) >= below) fail(`${what}: integer out of range`);
  return v as number[];
}

/**
 * Decode parts written by encodeState, for a fold with `window`. Throws SnapshotError for
 * anything that is not exactly such an encoding: the caller then folds the log instead.
 */
export function decodeState(parts: readonly Uint8Array[], window: number): AuditState {
  if (parts.length === 0) fail("no header");
  const h = parsePart(parts[0]!, "header");
  if (h["v"] !== 1) fail("unknown header version");
  if (h["fold"] !== FOLD_VERSION) fail(`state folded by fold rules v${String(h["fold"])}, this code folds by v${FOLD_VERSION}`);
  const size = h["size"];
  const entries = h["entries"];
  const trustVersion = h["trustVersion"];
  if (!count(size) || !count(entries) || !count(trustVersion) || entries > size) fail("header counters out of range");
  if (typeof h["windowed"] !== "boolean") fail("header.windowed is not a boolean");
  if (h["window"] !== window) fail(`snapshot folded with window ${String(h["window"])}, this store folds with ${window}`);
  const policy = h["policy"];
  if (policy !== null && !(isObj(policy) && typeof policy["digest"] === "string" && "document" in policy)) fail("header.policy is malformed");
  const high = h["policyHigh"];
  const goodHigh = (x: unknown): x is { version: number; digest: string; issuer: string } =>
    isObj(x) && Object.keys(x).length === 3 && Number.isSafeInteger(x["version"]) && (x["version"] as number) >= 1 && typeof x["digest"] === "string" && typeof x["issuer"] === "string";
  if (high !== null && !goodHigh(high)) fail("header.policyHigh is malformed");
  const cp = h["lastCheckpoint"];
  if (cp !== null && !(isObj(cp) && cp["kind"] === "failclosed/checkpoint/v1" && count(cp["size"]) && typeof cp["root"] === "string" && typeof cp["origin"] === "string" && Number.isSafeInteger(cp["time"]))) {
    fail("header.lastCheckpoint is malformed");
  }
  const counts = h["counts"];
  if (!Array.isArray(counts) || counts.length !== SECTIONS.length || !counts.every(count)) fail("header.counts is malformed");

  const state = emptyState(window);
  state.size = size as number;
  state.entries = entries as number;
  state.windowed = h["windowed"] as boolean;
  state.trustVersion = trustVersion as number;
  state.policy = policy === null ? undefined : (policy as { digest: string; document: JsonValue });
  state.policyHigh = goodHigh(high) ? { version: high.version, digest: high.digest, issuer: high.issuer } : undefined;
  state.lastCheckpoint = cp === null ? undefined : (cp as unknown as CheckpointPayload);

  const seqBound = size as number;
  const entryBound = (entries as number) + 1;
  // Keys and seqs in section order: retire entries name their key by its index here.
  const nonceKeys: string[] = [];
  const nonceSeqs: number[] = [];
  const taskKeys: string[] = [];
  const taskSeqs: number[] = [];
  let p = 1;
  for (let si = 0; si < SECTIONS.length; si++) {
    const section = SECTIONS[si]!;
    let left = (counts as number[])[si]!;
    while (left > 0) {
      if (p >= parts.length) fail(`${section}: parts missing`);
      const part = parsePart(parts[p]!, `part ${p}`);
      p++;
      if (part["s"] !== section) fail(`part ${p - 1} is not in section ${section}`);
      const n = Math.min(left, SNAPSHOT_CHUNK);
      left -= n;
      switch (section) {
        case "authorities":
        case "gateways":
        case "revokedArtifacts":
        case "revokedKeys": {
          const set = state[section];
          for (const k of strings(part["k"], n, section)) set.add(k);
          break;
        }
        case "nonces": {
          const k = strings(part["k"], n, section);
          const q = ints(part["q"], n, section, seqBound);
          for (let i = 0; i < n; i++) {
            state.consumedNonces.set(k[i]!, q[i]!);
            nonceKeys.push(k[i]!);
            nonceSeqs.push(q[i]!);
          }
          break;
        }
        case "tasks": {
          const k = strings(part["k"], n, section);
          const st = ints(part["st"], n, section, STATUSES.length);
          const q = ints(part["q"], n, section, seqBound);
          const d = ints(part["d"], n, section, seqBound, -1);
          for (let i = 0; i < n; i++) {
            const t: TaskState = { status: STATUSES[st[i]!]!, lastSeq: q[i]! };
            if (d[i]! >= 0) t.decisionSeq = d[i]!;
            state.tasks.set(k[i]!, t);
            taskKeys.push(k[i]!);
            taskSeqs.push(q[i]!);
          }
          break;
        }
        case "retireTasks":
        case "retireNonces": {
          const tasks = section === "retireTasks";
          const r = tasks ? state.retire.tasks : state.retire.nonces;
          const keys = tasks ? taskKeys : nonceKeys;
          const seqs = tasks ? taskSeqs : nonceSeqs;
          const e = ints(part["e"], n, section, entryBound);
          const at = ints(part["i"], n, section, keys.length);
          let last = r.entries[r.entries.length - 1] ?? 0;
          for (let i = 0; i < n; i++) {
            if (e[i]! < last) fail(`${section}: entries out of order`);
            last = e[i]!;
            r.entries.push(e[i]!);
            r.seqs.push(seqs[at[i]!]!);
            r.keys.push(keys[at[i]!]!);
          }
          break;
        }
        default:
          return section satisfies never;
      }
    }
  }
  if (p !== parts.length) fail("parts left over");
  const c = counts as number[];
  // Duplicate keys would have collapsed in the sets and maps.
  const sizes = [state.authorities.size, state.gateways.size, state.revokedArtifacts.size, state.revokedKeys.size, state.consumedNonces.size, state.tasks.size];
  if (sizes.some((s, i) => s !== c[i])) fail("duplicate keys");
  if (!state.windowed && (state.retire.tasks.keys.length > 0 || state.retire.nonces.keys.length > 0)) fail("retire queues in a fold that does not forget");
  return state;
}
