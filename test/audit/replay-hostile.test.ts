// Replay against hostile stored logs (written by a review; it found one defect, fixed: see the last test). A real log (written by the store through the
// scenario helpers: trust setup, signed policy, evidence, real decide() decisions, outcomes, a
// revocation, checkpoints, a fold snapshot and an uncheckpointed tail) is mutated at the
// backend level with seeded mutations, and each mutated copy is replayed:
//   - replay resolves (never throws, never hangs past a bound) with a well-formed report;
//   - every mutation that changes the log's stored bytes is reported (a divergence) when the
//     attacker cannot hide it: edited in place (the stored tree still commits to the old bytes),
//     re-chained without the gateway key (a checkpoint signs the old root), or a record that is
//     not a well-formed canonical record at all (even an insider re-signing everything with the
//     gateway key cannot make it one);
//   - for a sample, `failclosed audit replay --db DIR --json` on a LevelDB copy exits 1 with a
//     JSON report or 2 with a one-line message: never 0, never a stack trace.
// Mutations that are a legitimate rewrite for whoever holds the gateway key (a re-signed log
// whose records are all well formed) are replayed for robustness only.
//
// More: FAILCLOSED_HOSTILE_RUNS=2000 FAILCLOSED_HOSTILE_CLI_RUNS=40 FAILCLOSED_HOSTILE_SEED=7 npx vitest run test/audit/replay-hostile.test.ts
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend, MemoryBackend } from "../../src/audit/backend.ts";
import { bundleSlots, encodeBundle, slotNodeCount } from "../../src/audit/entry-bundle.ts";
import { BUNDLE_SIZE, CHECKPOINT_PREFIX, FORMAT_KEY, HEAD_KEY, SNAPSHOT_MANIFEST_KEY, bundleKey, bundleOfKey } from "../../src/audit/keys.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { HASH_SIZE, MerkleFrontier } from "../../src/audit/merkle.ts";
import { recordLeafHash, type CheckpointPayload } from "../../src/audit/records.ts";
import { replay, type ReplayOptions, type ReplayReport } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { makeArtifact, runTask, scenarioTrustRoots, writeScenario } from "./scenario.ts";
import { GATEWAY_KEY, ROGUE_KEY, storeOptions, tempDir } from "./support.ts";
import { makeRng } from "../soak/prng.ts";

const envInt = (name: string, dflt: number): number => {
  const v = process.env[name];
  const n = v === undefined || v === "" ? dflt : Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : dflt;
};
const SEED = envInt("FAILCLOSED_HOSTILE_SEED", 0x5eed);
const RUNS = envInt("FAILCLOSED_HOSTILE_RUNS", 240);
const CLI_RUNS = envInt("FAILCLOSED_HOSTILE_CLI_RUNS", 8);
/** One replay of this small log takes ~100 ms: this is a hang, not a slow run. */
const REPLAY_BOUND_MS = 15_000;
const CLI_BOUND_MS = 60_000;

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TRUST = scenarioTrustRoots();
const enc = new TextEncoder();
const dec = new TextDecoder();
/** Exact: a BOM stays, invalid UTF-8 throws (such bytes are then left exactly as they are). */
const exactDec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Seeded randomness.

type Rng = () => number;
/** The soak's mulberry32, as a bare draw. */
function mulberry32(seed: number): Rng {
  const r = makeRng(seed);
  return () => r.next();
}

const int = (rng: Rng, n: number): number => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

// ---------------------------------------------------------------------------------------------
// The base log, as stored bytes.

type Store = Map<string, Uint8Array>;
const cloneStore = (m: Store): Store => new Map([...m].map(([k, v]) => [k, new Uint8Array(v)]));
const sameStore = (a: Store, b: Store): boolean => a.size === b.size && [...a].every(([k, v]) => b.has(k) && Buffer.from(v).equals(Buffer.from(b.get(k)!)));
const withoutSnapshot = (m: Store): Store => new Map([...m].filter(([k]) => !k.startsWith("s/")));

interface BaseRecord {
  readonly seq: number;
  /** The slot's tree nodes (k, then k hashes), as stored before the record bytes. */
  readonly nodes: Uint8Array;
  readonly bytes: Uint8Array;
  readonly text: string;
  readonly type: string;
}

interface Base {
  readonly store: Store;
  readonly records: readonly BaseRecord[];
  /** Seq of the last checkpoint record: a change to any record before it changes the root it signs. */
  readonly lastCheckpoint: number;
  /** Position of the gateway's fold snapshot: a log cut below it is past the snapshot's end. */
  readonly snapshotAt: number;
}

async function buildBase(): Promise<Base> {
  const backend = new MemoryBackend();
  const store = await AuditStore.open(backend, storeOptions({ checkpointEvery: 16 }));
  await writeScenario(store, 8, 1_700_000_000_000, "reference", true, true);
  await store.writeSnapshot();
  await runTask(store, "task-tail-0", makeArtifact(100, 1_700_000_000_100), 1_700_000_000_100);
  await store.checkpoint();
  // An uncheckpointed tail: only the stored tree and the head stand for it.
  await runTask(store, "task-tail-1", makeArtifact(101, 1_700_000_000_101), 1_700_000_000_101);
  await store.close();
  const map = cloneStore(backend.data.map);
  const records: BaseRecord[] = [];
  for (const [key, value] of [...map].filter(([k]) => k.startsWith("b/")).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const index = bundleOfKey(key)!;
    for (const [i, slot] of bundleSlots(value)!.entries()) {
      const k = slotNodeCount(slot!)!;
      const bytes = slot!.slice(1 + HASH_SIZE * k);
      const text = dec.decode(bytes);
      records.push({ seq: index * BUNDLE_SIZE + i, nodes: slot!.slice(0, 1 + HASH_SIZE * k), bytes, text, type: (JSON.parse(text) as { type: string }).type });
    }
  }
  const lastCheckpoint = Math.max(...records.filter((r) => r.type === "checkpoint").map((r) => r.seq));
  const snapshotAt = (JSON.parse(dec.decode(map.get(SNAPSHOT_MANIFEST_KEY))) as { payload: { size: number } }).payload.size;
  return { store: map, records, lastCheckpoint, snapshotAt };
}

// ---------------------------------------------------------------------------------------------
// JSON text surgery. Records are RFC 8785 canonical JSON: keys sorted by UTF-16 code units,
// numbers and strings as ECMAScript's JSON.stringify writes them. `Raw` splices text verbatim
// (for what no JS value serializes to: duplicate keys, "__proto__", bad escapes, huge numbers).

class Raw {
  constructor(readonly text: string) {}
}
type J = null | boolean | number | string | Raw | J[] | { [k: string]: J };

function ser(v: J): string {
  if (v instanceof Raw) return v.text;
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(ser).join(",")}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${ser(v[k]!)}`)
    .join(",")}}`;
}

type Path = (string | number)[];
function paths(v: J, at: Path = [], out: Path[] = []): Path[] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === "object" && !(v instanceof Raw)) for (const k of Object.keys(v)) paths(v[k]!, [...at, k], out);
  return out;
}
function setAt(root: J, path: Path, value: J): J {
  if (path.length === 0) return value;
  const parent = path.slice(0, -1).reduce<J>((o, k) => (o as Record<string, J>)[k as string]!, root) as Record<string | number, J>;
  parent[path[path.length - 1]!] = value;
  return root;
}

/** [start, end) of a top-level member's value in an object's JSON text, or undefined. */
function topLevelValue(text: string, key: string): [number, number] | undefined {
  let depth = 0;
  let i = 0;
  const want = `${JSON.stringify(key)}:`;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      if (depth === 1 && text.startsWith(want, i) && (text[i - 1] === "{" || text[i - 1] === ",")) {
        const start = i + want.length;
        let j = start;
        let d = 0;
        let inStr = false;
        for (; j < text.length; j++) {
          const ch = text[j]!;
          if (inStr) {
            if (ch === "\\") j++;
            else if (ch === '"') inStr = false;
          } else if (ch === '"') inStr = true;
          else if (ch === "{" || ch === "[") d++;
          else if (ch === "}" || ch === "]") {
            if (d === 0) break;
            d--;
          } else if (ch === "," && d === 0) break;
        }
        return [start, j];
      }
      // skip the string
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
      i++;
      continue;
    }
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    i++;
  }
  return undefined;
}
const replaceTop = (text: string, key: string, value: string): string => {
  const span = topLevelValue(text, key);
  return span === undefined ? text : text.slice(0, span[0]) + value + text.slice(span[1]);
};

// ---------------------------------------------------------------------------------------------
// Writing a log back: bundles from slots, or the whole tree and chain recomputed.

interface Entry {
  readonly bytes: Uint8Array;
  /** Stored nodes to keep (in place); undefined: recompute. */
  readonly nodes?: Uint8Array;
  /** The base record the bytes came from (to fix its prev/seq when re-chaining). */
  readonly from?: BaseRecord;
}

const slotOf = (nodes: Uint8Array, bytes: Uint8Array): Uint8Array => {
  const s = new Uint8Array(nodes.length + bytes.length);
  s.set(nodes);
  s.set(bytes, nodes.length);
  return s;
};

function putBundles(m: Store, slots: readonly Uint8Array[]): void {
  for (const k of [...m.keys()]) if (k.startsWith("b/")) m.delete(k);
  for (let i = 0; i * BUNDLE_SIZE < slots.length; i++) m.set(bundleKey(i), encodeBundle(slots.slice(i * BUNDLE_SIZE, (i + 1) * BUNDLE_SIZE)));
}

/** Records in place: each keeps the tree nodes stored beside it where it came from. */
function writeInPlace(m: Store, entries: readonly Entry[]): void {
  putBundles(
    m,
    entries.map((e) => slotOf(e.nodes!, e.bytes)),
  );
}

/**
 * Records re-chained: prev (and, with `reseq`, seq) of every record taken from the base fixed to
 * its new place, the tree and head recomputed. With `signer`, every checkpoint record taken
 * unchanged from the base is re-signed over the new tree (an insider holding the gateway key);
 * the fold snapshot, which would give the rewrite away, is dropped then.
 */
function writeRechained(m: Store, entries: readonly Entry[], o: { reseq: boolean; signer?: typeof GATEWAY_KEY }): void {
  const frontier = new MerkleFrontier();
  let prev = toB64u(new Uint8Array(HASH_SIZE));
  const slots: Uint8Array[] = [];
  for (const [seq, e] of entries.entries()) {
    let bytes = e.bytes;
    let exact: string | undefined;
    try {
      exact = exactDec.decode(bytes);
    } catch {
      exact = undefined;
    }
    if (e.from !== undefined && exact !== undefined) {
      let text = exact;
      const basePrev = (JSON.parse(e.from.text) as { prev: string }).prev;
      const span = topLevelValue(text, "prev");
      if (span !== undefined && text.slice(span[0], span[1]) === JSON.stringify(basePrev)) text = replaceTop(text, "prev", JSON.stringify(prev));
      const sspan = topLevelValue(text, "seq");
      if (o.reseq && sspan !== undefined && text.slice(sspan[0], sspan[1]) === String(e.from.seq)) text = replaceTop(text, "seq", String(seq));
      if (o.signer !== undefined && e.from.type === "checkpoint" && Buffer.from(e.bytes).equals(Buffer.from(e.from.bytes))) {
        const r = JSON.parse(text) as { checkpoint: Signed<CheckpointPayload> };
        const payload: CheckpointPayload = { ...r.checkpoint.payload, size: seq, root: toB64u(frontier.root()) };
        text = replaceTop(text, "checkpoint", ser(signPayload("checkpoint", payload, o.signer) as unknown as J));
      }
      bytes = enc.encode(text);
    }
    const leaf = recordLeafHash(bytes);
    const created = frontier.append(leaf);
    const nodes = new Uint8Array(1 + HASH_SIZE * created.length);
    nodes[0] = created.length;
    created.forEach((c, i) => nodes.set(c.hash, 1 + HASH_SIZE * i));
    slots.push(slotOf(nodes, bytes));
    prev = toB64u(leaf);
  }
  putBundles(m, slots);
  m.set(HEAD_KEY, enc.encode(ser({ last: prev, size: entries.length })));
  if (o.signer !== undefined) for (const k of [...m.keys()]) if (k.startsWith("s/")) m.delete(k);
}

// ---------------------------------------------------------------------------------------------
// Mutations.

type Mode = "in place" | "re-chained without the key" | "forged with the gateway key";
const MODES: readonly Mode[] = ["in place", "re-chained without the key", "forged with the gateway key"];

interface Mutation {
  readonly name: string;
  readonly apply: (m: Store) => void;
  /**
   * "must": a changed store must be reported; "robust": only never throw or hang (a rewrite
   * the gateway key's holder may make, or bytes replay does not read: indexes and caches).
   */
  readonly expect: "must" | "robust";
  /** Replay options (external checkpoints). */
  readonly opts?: ReplayOptions;
  /** The mutation also drops the fold snapshot (a forger's cleanup): not a change of the log by itself. */
  readonly dropsSnapshot?: boolean;
}

/** A record text edit; `invalid`: the result is no well-formed canonical record at all. */
interface TextEdit {
  readonly name: string;
  readonly invalid: boolean;
  /** Undefined: not applicable to this record. */
  readonly edit: (r: BaseRecord) => Uint8Array | string | undefined;
}

const deep = (n: number, leaf = "0"): Raw => new Raw(`${"[".repeat(n)}${leaf}${"]".repeat(n)}`);
const deepObj = (n: number): Raw => new Raw(`${'{"a":'.repeat(n)}0${"}".repeat(n)}`);
const longString = (n: number): string => "x".repeat(n);

/** Values that any place may take without the record stopping to be canonical JSON. */
const VALID_VALUES: readonly (() => J)[] = [
  () => 0,
  () => -1,
  () => 1.5,
  () => -0.000001,
  () => 1e308,
  () => -1e308,
  () => 9007199254740991,
  () => -9007199254740991,
  () => "",
  () => "0",
  () => "__proto__",
  () => "constructor",
  () => "hasOwnProperty",
  () => "\u2028\u0000\u001f\ud83d\ude00é",
  () => true,
  () => false,
  () => null,
  () => [],
  () => ({}),
  () => ({ constructor: 1, toString: "x", valueOf: [] }),
  () => [null, [{}], "a"],
  () => longString(64 * 1024),
  () => deep(100),
  () => deepObj(100),
  () => Array.from({ length: 5_000 }, (_, i) => i),
];

/** Spellings that are not canonical JSON, not I-JSON, or beyond the record limits. */
const INVALID_VALUES: readonly (() => Raw)[] = [
  () => new Raw('{"__proto__":{"polluted":true}}'),
  () => new Raw('{"a":1,"a":2}'),
  () => new Raw('{"b":1,"a":2}'),
  () => new Raw('"\\u0061"'),
  () => new Raw('"\\/"'),
  () => new Raw('"\\ud800"'),
  () => new Raw('"\\ude00\\ud83d"'),
  () => new Raw("1e400"),
  () => new Raw("9007199254740993"),
  () => new Raw("1e-400"),
  () => new Raw("1.0"),
  () => new Raw("1E3"),
  () => new Raw("01"),
  () => new Raw("-0"),
  () => new Raw("+1"),
  () => new Raw("NaN"),
  () => new Raw("Infinity"),
  () => new Raw(" 1"),
  () => new Raw("[1,]"),
  () => new Raw("'x'"),
  () => new Raw('"a\tb"'),
  () => new Raw("undefined"),
  () => deep(200),
  () => deepObj(200),
];

const TOP_SCHEMA_BREAKS: readonly [string, string][] = [
  ["v", "2"],
  ["v", '"1"'],
  ["seq", "-1"],
  ["seq", "1.5"],
  ["seq", '"0"'],
  ["seq", "9007199254740991"],
  ["seq", "null"],
  ["prev", "42"],
  ["prev", "null"],
  ["time", '"now"'],
  ["time", "null"],
  ["type", '"bogus"'],
  ["type", '"__proto__"'],
  ["type", "null"],
];

/** Per record type: fields whose wrong type or value decodeRecord refuses. */
const TYPE_SCHEMA_BREAKS: Record<string, readonly [string, string][]> = {
  trust: [
    ["change", "null"],
    ["change", '{"keyId":7,"op":"authority.add"}'],
    ["change", '{"keyId":"k","op":"root.add"}'],
    ["change", '{"op":"policy.withdraw","x":1}'],
  ],
  revocation: [
    ["revocation", '{"payload":{"target":{"id":5,"type":"artifact"}},"sig":"s"}'],
    ["revocation", '{"payload":{"target":{"type":"key"}},"sig":"s"}'],
    ["revocation", '"x"'],
  ],
  evidence: [
    ["taskId", "7"],
    ["kind", '"receipt"'],
    ["signed", '{"payload":1,"sig":"s"}'],
  ],
  decision: [
    ["taskId", "null"],
    ["decision", '{"checks":[],"reasons":[],"verdict":"maybe"}'],
    ["decision", '{"checks":{},"reasons":[],"verdict":"allow"}'],
    ["decision", "[]"],
  ],
  outcome: [
    ["status", '"ok"'],
    ["late", "false"],
    ["taskId", "[]"],
  ],
  checkpoint: [
    ["checkpoint", '{"payload":{"kind":"failclosed/checkpoint/v1","origin":"gw-test","root":"x","size":"1","time":0},"sig":"s"}'],
    ["checkpoint", '{"payload":{"kind":"failclosed/checkpoint/v2","origin":"gw-test","root":"x","size":1,"time":0},"sig":"s"}'],
    ["checkpoint", "{}"],
  ],
};

function textEdits(rng: Rng): TextEdit[] {
  const withValue = (name: string, invalid: boolean, value: () => J, keepPath?: (p: Path) => boolean): TextEdit => ({
    name,
    invalid,
    edit: (r) => {
      const v = JSON.parse(r.text) as J;
      const ps = paths(v).filter((p) => p.length > 0 && (keepPath?.(p) ?? true));
      if (ps.length === 0) return undefined;
      const p = pick(rng, ps);
      return ser(setAt(v, p, value()));
    },
  });
  const inner = (p: Path): boolean => p.length >= 2;
  const vi = int(rng, VALID_VALUES.length);
  const ii = int(rng, INVALID_VALUES.length);
  const [tk, tv] = pick(rng, TOP_SCHEMA_BREAKS);
  return [
    // A value anywhere inside the record (not a top-level field): may or may not stay a valid record.
    withValue(`a nested value set to valid JSON #${vi}`, false, VALID_VALUES[vi]!, inner),
    withValue(`a value set to non-canonical / non-I-JSON #${ii} ${INVALID_VALUES[ii]!().text.slice(0, 24)}`, true, INVALID_VALUES[ii]!),
    {
      name: `top-level ${tk} set to ${tv}`,
      invalid: true,
      edit: (r) => replaceTop(r.text, tk, tv),
    },
    {
      name: "a type-specific field broken",
      invalid: true,
      edit: (r) => {
        const breaks = TYPE_SCHEMA_BREAKS[r.type];
        if (breaks === undefined) return undefined;
        const [k, v] = pick(rng, breaks);
        const rec = JSON.parse(r.text) as Record<string, J>;
        rec[k] = new Raw(v);
        return ser(rec);
      },
    },
    { name: "seq off by one", invalid: true, edit: (r) => replaceTop(r.text, "seq", String(r.seq + (rng() < 0.5 ? 1 : -1))) },
    { name: "prev of another record", invalid: true, edit: (r) => (r.seq < 2 ? undefined : replaceTop(r.text, "prev", JSON.stringify(toB64u(recordLeafHash(enc.encode(`x${r.seq}`)))))) },
    { name: "a __proto__ member added at top level", invalid: true, edit: (r) => `{"__proto__":{"type":"checkpoint"},${r.text.slice(1)}` },
    { name: "a duplicate top-level member", invalid: true, edit: (r) => `{"v":1,${r.text.slice(1)}` },
    { name: "an extra top-level member (constructor)", invalid: false, edit: (r) => `{"constructor":{"prototype":null},${r.text.slice(1)}` },
    {
      name: "top-level members out of order",
      invalid: true,
      edit: (r) => {
        const v = JSON.parse(r.text) as Record<string, J>;
        const ks = Object.keys(v).sort().reverse();
        return `{${ks.map((k) => `${JSON.stringify(k)}:${ser(v[k]!)}`).join(",")}}`;
      },
    },
    { name: "a character of a string unicode-escaped", invalid: true, edit: (r) => r.text.replace(/"type":"([a-z])/, (_m, c: string) => `"type":"\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) },
    { name: "whitespace after a colon", invalid: true, edit: (r) => r.text.replace('":', '": ') },
    { name: "CRLF appended", invalid: true, edit: (r) => `${r.text}\r\n` },
    { name: "a UTF-8 BOM prepended", invalid: true, edit: (r) => { const b = new Uint8Array(r.bytes.length + 3); b.set([0xef, 0xbb, 0xbf]); b.set(r.bytes, 3); return b; } },
    { name: "trailing garbage", invalid: true, edit: (r) => `${r.text}{}` },
    { name: "cut short", invalid: true, edit: (r) => r.bytes.slice(0, int(rng, r.bytes.length)) },
    { name: "emptied", invalid: true, edit: () => new Uint8Array(0) },
    { name: "an invalid UTF-8 byte", invalid: true, edit: (r) => { const b = new Uint8Array(r.bytes); b[1 + int(rng, b.length - 2)] = 0xff; return b; } },
    { name: "a NUL byte inside", invalid: true, edit: (r) => { const b = new Uint8Array(r.bytes); b[1 + int(rng, b.length - 2)] = 0x00; return b; } },
    { name: "replaced by a JSON array", invalid: true, edit: (r) => `[${r.text}]` },
    { name: "replaced by a number", invalid: true, edit: () => "1" },
    { name: "replaced by a string", invalid: true, edit: (r) => JSON.stringify(r.text) },
    { name: "nested 127 deep at the top (parses, wrong shape)", invalid: true, edit: () => ser(deep(126)) },
    { name: "a 1 MiB string added", invalid: false, edit: (r) => `{"aaa":${JSON.stringify(longString(1 << 20))},${r.text.slice(1)}` },
    { name: "a record over the 16 MiB limit", invalid: true, edit: (r) => `{"aaa":${JSON.stringify(longString(16 * 1024 * 1024 + 1))},${r.text.slice(1)}` },
    {
      name: "the record of another type in its place (a checkpoint made a decision)",
      invalid: true,
      edit: (r) => (r.type === "checkpoint" ? replaceTop(r.text, "type", '"decision"') : r.type === "decision" ? replaceTop(r.text, "type", '"outcome"') : replaceTop(r.text, "type", '"checkpoint"')),
    },
    {
      name: "a taskId made __proto__",
      invalid: false,
      edit: (r) => (topLevelValue(r.text, "taskId") === undefined ? undefined : replaceTop(r.text, "taskId", '"__proto__"')),
    },
    {
      name: "a trust keyId made __proto__",
      invalid: false,
      edit: (r) => (r.type === "trust" && r.text.includes('"keyId"') ? r.text.replace(/"keyId":"[^"]*"/, '"keyId":"__proto__"') : undefined),
    },
    {
      name: "a decision input replaced by a hostile value",
      invalid: false,
      edit: (r) => (r.type === "decision" ? replaceTop(r.text, "input", ser(pick(rng, VALID_VALUES)())) : undefined),
    },
    {
      name: "a decision's chain and lineage repeated 2,000 times (work for the auditor)",
      invalid: false,
      edit: (r) => {
        if (r.type !== "decision") return undefined;
        const rec = JSON.parse(r.text) as { input: Record<string, J> };
        const chain = rec.input["chain"];
        const lineage = rec.input["lineage"];
        if (!Array.isArray(chain) || !Array.isArray(lineage) || chain.length === 0 || lineage.length === 0) return undefined;
        rec.input["chain"] = Array.from({ length: 2_000 }, () => chain[0]!);
        rec.input["lineage"] = Array.from({ length: 2_000 }, () => lineage[0]!);
        return ser(rec);
      },
    },
    {
      name: "a decision's verdict flipped",
      invalid: false,
      edit: (r) => (r.type === "decision" ? r.text.replace(/"verdict":"(allow|deny)"/, (_m, v: string) => `"verdict":"${v === "allow" ? "deny" : "allow"}"`) : undefined),
    },
  ];
}

function recordMutation(base: Base, rng: Rng): Mutation {
  const edits = textEdits(rng);
  for (;;) {
    const e = pick(rng, edits);
    const r = pick(rng, base.records);
    const out = e.edit(r);
    if (out === undefined) continue;
    const bytes = typeof out === "string" ? enc.encode(out) : out;
    const mode = pick(rng, MODES);
    const entries = (): Entry[] => base.records.map((x) => (x.seq === r.seq ? { bytes, nodes: x.nodes, from: x } : { bytes: x.bytes, nodes: x.nodes, from: x }));
    const hidden = mode === "forged with the gateway key" || (mode === "re-chained without the key" && r.seq >= base.lastCheckpoint);
    // Re-chaining fixes prev: an edit of prev itself is then undone unless it is kept as made.
    return {
      name: `record ${r.seq} (${r.type}): ${e.name}, ${mode}`,
      expect: !hidden || e.invalid ? "must" : "robust",
      dropsSnapshot: mode === "forged with the gateway key",
      apply: (m) => {
        if (mode === "in place") writeInPlace(m, entries());
        else writeRechained(m, entries(), mode === "forged with the gateway key" ? { reseq: true, signer: GATEWAY_KEY } : { reseq: false });
      },
    };
  }
}

function structuralMutation(base: Base, rng: Rng): Mutation {
  const n = base.records.length;
  const a = int(rng, n);
  let b = int(rng, n);
  if (b === a) b = (a + 1) % n;
  const rs = base.records;
  const kinds: [string, () => BaseRecord[]][] = [
    [`records ${a} and ${b} swapped`, () => rs.map((x, i) => (i === a ? rs[b]! : i === b ? rs[a]! : x))],
    [`record ${a} replaced by a copy of ${b}`, () => rs.map((x, i) => (i === a ? rs[b]! : x))],
    [`record ${a} removed`, () => rs.filter((_, i) => i !== a)],
    [`a copy of record ${b} inserted at ${a}`, () => [...rs.slice(0, a), rs[b]!, ...rs.slice(a)]],
    [`the first ${a + 1} records reversed`, () => [...rs.slice(0, a + 1).reverse(), ...rs.slice(a + 1)]],
    [`the log cut to ${a} records`, () => rs.slice(0, a)],
    [`the log cut to ${a} records and the head set to match`, () => rs.slice(0, a)],
  ];
  const [what, order] = pick(rng, kinds);
  const mode = pick(rng, MODES);
  const cutToMatch = what.endsWith("head set to match");
  // A cut whose head still names the old end, or any reorder that keeps seqs, is always visible.
  // Re-sequenced by the key's holder, or a cut of the uncheckpointed tail with the head rewritten
  // to match (re-chaining drops the last record that way too), it may be a valid log.
  // Either leaves a prefix of the log, whole: found only below the snapshot (past its end then).
  const tailCut = (cutToMatch && a >= base.snapshotAt) || (mode !== "in place" && what === `record ${a} removed` && a === n - 1 && a >= base.snapshotAt);
  const hidden = mode === "forged with the gateway key" || tailCut;
  return {
    name: `${what}, ${mode}`,
    expect: hidden ? "robust" : "must",
    dropsSnapshot: mode === "forged with the gateway key",
    apply: (m) => {
      const entries = order().map((x) => ({ bytes: x.bytes, nodes: x.nodes, from: x }));
      if (mode === "in place") {
        writeInPlace(m, entries);
        if (cutToMatch) m.set(HEAD_KEY, enc.encode(ser({ last: toB64u(recordLeafHash(entries.at(-1)?.bytes ?? new Uint8Array(0))), size: entries.length })));
      } else writeRechained(m, entries, mode === "forged with the gateway key" ? { reseq: true, signer: GATEWAY_KEY } : { reseq: false });
      if (!cutToMatch && mode !== "in place") {
        // The head names the new end either way (writeRechained): a plain cut keeps the old head.
        if (what.includes("cut")) m.set(HEAD_KEY, base.store.get(HEAD_KEY)!);
      }
    },
  };
}

function bundleMutation(base: Base, rng: Rng): Mutation {
  const keys = [...base.store.keys()].filter((k) => k.startsWith("b/")).sort();
  const key = pick(rng, keys);
  const value = base.store.get(key)!;
  const other = pick(rng, keys.filter((k) => k !== key));
  const at = int(rng, value.length);
  const kinds: [string, (m: Store) => void][] = [
    [`byte ${at} of ${key} flipped`, (m) => { const v = m.get(key)!; v[at] = v[at]! ^ (1 + int(rng, 255)); }],
    [`byte ${at} of ${key} set to 0xff`, (m) => { const v = m.get(key)!; v[at] = v[at] === 0xff ? 0 : 0xff; }],
    [`${key} cut to ${at} bytes`, (m) => m.set(key, m.get(key)!.slice(0, at))],
    [`${key} extended by junk`, (m) => m.set(key, Buffer.concat([m.get(key)!, Buffer.from([1, 2, 3, int(rng, 256)])]))],
    [`${key} header count set to ${value[1]! + 1}`, (m) => { m.get(key)![1] = value[1]! + 1; }],
    [`${key} header count set to ${Math.max(1, value[1]! - 1)}`, (m) => { m.get(key)![1] = value[1]! === 1 ? 0 : value[1]! - 1; }],
    [`${key} header count set to 0`, (m) => { m.get(key)![1] = 0; }],
    [`${key} first slot offset set to 0xffffffff`, (m) => { m.get(key)!.set([0xff, 0xff, 0xff, 0xff], 2); }],
    [`${key} deleted`, (m) => m.delete(key)],
    [`${key} and ${other} swapped`, (m) => { const x = m.get(key)!; m.set(key, m.get(other)!); m.set(other, x); }],
    [`${key} copied over ${other}`, (m) => m.set(other, new Uint8Array(m.get(key)!))],
    [`${key} copied to a new bundle after the last`, (m) => m.set(bundleKey(keys.length), new Uint8Array(m.get(key)!))],
    [`${key} moved to bundle index 2^56−1`, (m) => { m.set("b/ffffffffffffff", m.get(key)!); m.delete(key); }],
    [`${key} moved to an uppercase-hex key b/0000000000000A`, (m) => { m.set("b/0000000000000A", m.get(key)!); m.delete(key); }],
    [`a junk key b/zz added`, (m) => m.set("b/zz", enc.encode("junk"))],
    [`a junk key b/ (empty index) added`, (m) => m.set("b/", new Uint8Array([1, 1, 0, 0, 0, 0]))],
    [`an empty bundle after the last`, (m) => m.set(bundleKey(keys.length), new Uint8Array(0))],
    [`${key} replaced by a huge count claim`, (m) => m.set(key, new Uint8Array([1, 16, ...new Array<number>(64).fill(0xff)]))],
    [`${key} zeroed`, (m) => m.set(key, new Uint8Array(value.length))],
  ];
  const [what, apply] = pick(rng, kinds);
  return { name: what, expect: "must", apply };
}

function headMutation(base: Base, rng: Rng): Mutation {
  const head = JSON.parse(dec.decode(base.store.get(HEAD_KEY))) as { size: number; last: string };
  const kinds: [string, string | undefined, "must" | "robust"][] = [
    ["m/head deleted (the store refuses such a log: AUDIT_CORRUPT)", undefined, "must"],
    ["m/head not JSON", "{size:", "must"],
    ["m/head empty", "", "must"],
    ["m/head size a string", ser({ last: head.last, size: new Raw(`"${head.size}"`) }), "must"],
    ["m/head size +1", ser({ last: head.last, size: head.size + 1 }), "must"],
    ["m/head size −1", ser({ last: head.last, size: head.size - 1 }), "must"],
    ["m/head size 2^53−1", ser({ last: head.last, size: 9007199254740991 }), "must"],
    ["m/head size negative", ser({ last: head.last, size: -5 }), "must"],
    ["m/head size fractional", ser({ last: head.last, size: head.size + 0.5 }), "must"],
    ["m/head size 1e400", `{"last":"${head.last}","size":1e400}`, "must"],
    ["m/head last of another record", ser({ last: toB64u(recordLeafHash(enc.encode("x"))), size: head.size }), "must"],
    ["m/head with a duplicate size", `{"last":"${head.last}","size":${head.size},"size":${head.size}}`, "must"],
    ["m/head with __proto__", `{"__proto__":{"size":1},"last":"${head.last}","size":${head.size}}`, "must"],
    ["m/head an array", "[]", "must"],
    ["m/head null", "null", "must"],
    ["m/head nested 10k deep", `${"[".repeat(10_000)}${"]".repeat(10_000)}`, "must"],
    // Same meaning, other bytes: the head is not hashed, and the store reads it the same way.
    ["m/head members reordered (same meaning)", `{"size":${head.size},"last":"${head.last}"}`, "robust"],
    ["m/head with an extra member", `{"extra":1,"last":"${head.last}","size":${head.size}}`, "robust"],
  ];
  const [what, text, expect] = pick(rng, kinds);
  return { name: what, expect, apply: (m) => (text === undefined ? m.delete(HEAD_KEY) : m.set(HEAD_KEY, enc.encode(text))) };
}

function snapshotMutation(base: Base, rng: Rng): Mutation {
  const parts = [...base.store.keys()].filter((k) => k.startsWith("s/p"));
  const part = pick(rng, parts);
  const manifest = base.store.get(SNAPSHOT_MANIFEST_KEY)!;
  const at = int(rng, manifest.length);
  const kinds: [string, (m: Store) => void, "must" | "robust"][] = [
    [`snapshot manifest byte ${at} flipped`, (m) => { const v = m.get(SNAPSHOT_MANIFEST_KEY)!; v[at] = v[at]! ^ 0x01; }, "must"],
    [`snapshot part ${part} byte flipped`, (m) => { const v = m.get(part)!; const k = int(rng, v.length); v[k] = v[k]! ^ 0x40; }, "must"],
    [`snapshot part ${part} deleted`, (m) => m.delete(part), "must"],
    [`snapshot part ${part} emptied`, (m) => m.set(part, new Uint8Array(0)), "must"],
    ["snapshot manifest naming 60,000 parts", (m) => m.set(SNAPSHOT_MANIFEST_KEY, enc.encode(`{"payload":{"parts":[${new Array(60_000).fill('"x"').join(",")}],"size":1},"sig":"s"}`)), "must"],
    ["snapshot manifest nested 10k deep", (m) => m.set(SNAPSHOT_MANIFEST_KEY, enc.encode(`${"[".repeat(10_000)}${"]".repeat(10_000)}`)), "must"],
    ["snapshot manifest not JSON", (m) => m.set(SNAPSHOT_MANIFEST_KEY, enc.encode("{")), "must"],
    [
      "snapshot manifest re-signed by a rogue key at a size past the log",
      (m) => {
        const s = JSON.parse(dec.decode(manifest)) as Signed<Record<string, J>>;
        m.set(SNAPSHOT_MANIFEST_KEY, enc.encode(ser(signPayload("snapshot", { ...s.payload, size: 10_000 }, ROGUE_KEY) as unknown as J)));
      },
      "must",
    ],
    // A snapshot is a cache: without its manifest there is none, and the log is all there is.
    ["snapshot manifest deleted (parts left)", (m) => m.delete(SNAPSHOT_MANIFEST_KEY), "robust"],
    ["a stray part in the other slot", (m) => m.set("s/q00000000000000", enc.encode("junk")), "robust"],
  ];
  const [what, apply, expect] = pick(rng, kinds);
  return { name: what, expect, apply };
}

function checkpointForgery(base: Base, rng: Rng): Mutation {
  const cps = base.records.filter((r) => r.type === "checkpoint");
  const cp = pick(rng, cps);
  const r = JSON.parse(cp.text) as { checkpoint: Signed<CheckpointPayload> };
  const p = r.checkpoint.payload;
  const kinds: [string, CheckpointPayload][] = [
    ["size past the log", { ...p, size: base.records.length + 10 }],
    ["size 2^53−1", { ...p, size: 9007199254740991 }],
    ["size of the whole log", { ...p, size: base.records.length }],
    ["size one less", { ...p, size: p.size - 1 }],
    ["another root", { ...p, root: toB64u(recordLeafHash(enc.encode("fork"))) }],
    ["another origin", { ...p, origin: "gw-other" }],
    ["time far in the future", { ...p, time: 8.64e15 }],
    ["time negative", { ...p, time: -1 }],
  ];
  const [what, payload] = pick(rng, kinds);
  const signer = rng() < 0.5 ? GATEWAY_KEY : ROGUE_KEY;
  const inPlace = rng() < 0.5;
  const changesMeaning = what !== "time far in the future" && what !== "time negative";
  const forged = enc.encode(replaceTop(cp.text, "checkpoint", ser(signPayload("checkpoint", payload, signer) as unknown as J)));
  const entries = base.records.map((x) => ({ bytes: x.seq === cp.seq ? forged : x.bytes, nodes: x.nodes, from: x }));
  return {
    name: `checkpoint record ${cp.seq} re-signed by ${signer === GATEWAY_KEY ? "the gateway key" : "a rogue key"}: ${what}, ${inPlace ? "in place" : "the rest forged with the gateway key"}`,
    dropsSnapshot: !inPlace,
    // A re-signed time alone is the key holder's to choose (the clock audit may or may not mind).
    expect: inPlace || changesMeaning || signer === ROGUE_KEY ? "must" : "robust",
    apply: (m) => (inPlace ? writeInPlace(m, entries) : writeRechained(m, entries, { reseq: true, signer: GATEWAY_KEY })),
  };
}

function otherKeyMutation(base: Base, rng: Rng): Mutation {
  const cIndex = [...base.store.keys()].filter((k) => k.startsWith(CHECKPOINT_PREFIX));
  const ck = pick(rng, cIndex);
  const kinds: [string, (m: Store) => void][] = [
    // Not read by replay: the checkpoint index (audit checkpoints / prove read it), the format
    // marker (the CLI checks it before replay), keys outside every range.
    [`checkpoint index ${ck} deleted`, (m) => m.delete(ck)],
    [`checkpoint index ${ck} set to junk`, (m) => m.set(ck, enc.encode("not a seq"))],
    ["a checkpoint index entry past the log", (m) => m.set(`${CHECKPOINT_PREFIX}00000000ffffff`, enc.encode("99999"))],
    ["format marker changed", (m) => m.set(FORMAT_KEY, enc.encode("failclosed/audit-log/entry-bundles/v9"))],
    ["a junk key x/1", (m) => m.set("x/1", enc.encode("junk"))],
  ];
  const [what, apply] = pick(rng, kinds);
  return { name: what, expect: "robust", apply };
}

function externalCheckpoints(base: Base, rng: Rng): Mutation {
  const n = base.records.length;
  const sign = (size: number, root: string, key = GATEWAY_KEY): Signed<CheckpointPayload> => signPayload("checkpoint", { kind: "failclosed/checkpoint/v1", origin: "gw-test", size, root, time: 1_700_000_000_000 }, key);
  const someRoot = toB64u(recordLeafHash(enc.encode("other")));
  const kinds: [string, unknown[], "must" | "robust"][] = [
    ["an external checkpoint past the log", [sign(n + 5, someRoot)], "must"],
    ["an external checkpoint at 2^53−1", [sign(9007199254740991, someRoot)], "must"],
    ["an external checkpoint forking the log", [sign(Math.max(1, n - 3), someRoot)], "must"],
    ["an external checkpoint of size 0 with a root", [sign(0, someRoot)], "must"],
    ["external checkpoints of junk shapes", [null, 1, "x", [], {}, { payload: null, sig: 1 }, { payload: { size: -1 }, sig: "s" }], "must"],
    ["an external checkpoint signed by a rogue key", [sign(n, someRoot, ROGUE_KEY)], "must"],
    ["a thousand external checkpoints past the log", Array.from({ length: 1000 }, (_, i) => sign(n + 1 + i, someRoot)), "must"],
  ];
  const [what, cps, expect] = pick(rng, kinds);
  return { name: what, expect, apply: () => undefined, opts: { checkpoints: cps as Signed<CheckpointPayload>[] } };
}

function makeMutation(base: Base, rng: Rng): Mutation {
  const x = rng();
  if (x < 0.45) return recordMutation(base, rng);
  if (x < 0.58) return structuralMutation(base, rng);
  if (x < 0.73) return bundleMutation(base, rng);
  if (x < 0.81) return headMutation(base, rng);
  if (x < 0.87) return snapshotMutation(base, rng);
  if (x < 0.93) return checkpointForgery(base, rng);
  if (x < 0.97) return externalCheckpoints(base, rng);
  return otherKeyMutation(base, rng);
}

// ---------------------------------------------------------------------------------------------
// Running replay on a mutated store, bounded.

type Outcome = { kind: "report"; report: ReplayReport; ms: number } | { kind: "threw"; error: string } | { kind: "hung" };

async function replayBounded(store: Store, opts: ReplayOptions = {}): Promise<Outcome> {
  const backend = new MemoryBackend({ map: cloneStore(store), keys: [] });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t0 = performance.now();
  try {
    return await Promise.race([
      replay(backendLogSource(backend), TRUST, opts).then((report): Outcome => ({ kind: "report", report, ms: performance.now() - t0 })),
      new Promise<Outcome>((resolve) => (timer = setTimeout(() => resolve({ kind: "hung" }), REPLAY_BOUND_MS))),
    ]);
  } catch (e) {
    return { kind: "threw", error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack?.split("\n").slice(1, 6).join("\n") ?? ""}` : String(e) };
  } finally {
    clearTimeout(timer);
  }
}

const KINDS = new Set([
  "RECORD_MALFORMED",
  "SEQ_MISMATCH",
  "CHAIN_BROKEN",
  "LEAF_MISMATCH",
  "TREE_NODE_MISMATCH",
  "HEAD_MISMATCH",
  "TRUNCATED",
  "CHECKPOINT_SIGNATURE",
  "CHECKPOINT_ROOT",
  "CHECKPOINT_INCONSISTENT",
  "UNTRUSTED_AUTHORITY",
  "UNTRUSTED_GATEWAY",
  "REVOCATION_UNVERIFIED",
  "POLICY_UNVERIFIED",
  "TRUST_STATE",
  "NONCE_STATE",
  "TASK_STATE",
  "TASK_ID_MISMATCH",
  "EVIDENCE_MISSING",
  "INPUT_MALFORMED",
  "DECISION_MISMATCH",
  "OUTCOME_WITHOUT_ALLOW",
  "NONCE_REUSED",
  "TASK_REUSED",
  "GATEWAY_ID_MISMATCH",
  "CLOCK_MISMATCH",
  "CLOCK_BACKWARDS",
  "LIMITS_LOOSER",
  "SPAWN_UNVERIFIED",
  "SNAPSHOT_INVALID",
  "SNAPSHOT_STATE",
]);

/** What is wrong with a report's shape, if anything. */
function reportProblem(rep: ReplayReport): string | undefined {
  if (typeof rep.ok !== "boolean") return "ok is not a boolean";
  const total = rep.divergenceCounts?.total;
  if (total === undefined || rep.ok !== (total === 0)) return `ok ${rep.ok} but ${String(total)} divergences counted`;
  if (!rep.ok && rep.divergences.length === 0) return "not ok, yet no divergence listed";
  for (const d of rep.divergences) {
    if (!Number.isSafeInteger(d.seq) || d.seq < 0) return `divergence seq ${d.seq} is not a position`;
    if (!KINDS.has(d.kind)) return `unknown divergence kind ${String(d.kind)}`;
    if (typeof d.detail !== "string" || d.detail === "") return "divergence without detail";
  }
  try {
    JSON.parse(JSON.stringify(rep));
  } catch (e) {
    return `report does not survive JSON: ${String(e)}`;
  }
  return undefined;
}

interface Result {
  readonly mutation: Mutation;
  readonly changed: boolean;
  readonly outcome: Outcome;
}

/** The defect a result shows, if it shows one. */
function defectOf(r: Result): string | undefined {
  const o = r.outcome;
  if (o.kind === "threw") return `replay threw: ${o.error}`;
  if (o.kind === "hung") return `replay did not resolve within ${REPLAY_BOUND_MS} ms`;
  const shape = reportProblem(o.report);
  if (shape !== undefined) return `malformed report: ${shape}`;
  const changed = r.changed || r.mutation.opts?.checkpoints !== undefined;
  if (r.mutation.expect === "must" && changed && o.report.ok) return "clean report (ok: true, no divergence) for a changed log";
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The CLI, as a child process on a LevelDB copy.

async function writeLevel(dir: string, store: Store): Promise<void> {
  const b = await LevelBackend.open(dir);
  await b.batch(
    [...store].map(([key, value]) => ({ type: "put" as const, key, value })),
    { sync: true },
  );
  await b.close();
}

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

function runCli(args: readonly string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile("npx", ["tsx", "src/cli/main.ts", ...args], { cwd: ROOT, timeout: CLI_BOUND_MS, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, NODE_OPTIONS: "" } }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; killed?: boolean; signal?: unknown }) | null;
      const code = e === null ? 0 : typeof e.code === "number" ? e.code : null;
      resolve({ code, stdout, stderr, timedOut: e?.killed === true || e?.signal === "SIGTERM" });
    });
  });
}

/** What is wrong with how the CLI ended on a log it must find wrong, if anything. */
function cliProblem(run: CliRun): string | undefined {
  if (run.timedOut) return `no exit within ${CLI_BOUND_MS} ms`;
  if (run.code === 0) return "exit 0 on a changed log";
  if (run.code !== 1 && run.code !== 2) return `exit ${String(run.code)}`;
  if (/^\s+at .+[:(]/m.test(run.stdout + run.stderr)) return `a stack trace: ${run.stderr.slice(0, 400)}`;
  if (run.code === 1) {
    let rep: unknown;
    try {
      rep = JSON.parse(run.stdout);
    } catch {
      return `exit 1 without a JSON report on stdout: ${run.stdout.slice(0, 200)}`;
    }
    const r = rep as ReplayReport;
    if (r.ok !== false || !Array.isArray(r.divergences) || r.divergences.length === 0) return "exit 1 with a report that is not a divergence";
  } else if (!/^failclosed( audit)?: \S/m.test(run.stderr)) return `exit 2 without a clear message: ${run.stderr.slice(0, 300)}`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------

describe("replay of hostile stored logs", () => {
  let base: Base;
  const results: Result[] = [];
  const t = tempDir("fc-hostile-");
  const trustFile = join(t.dir, "trust.json");

  beforeAll(async () => {
    base = await buildBase();
    writeFileSync(trustFile, JSON.stringify(TRUST));
  }, 60_000);
  afterAll(() => t.cleanup());

  it("the base log replays clean, and the test's own re-encoding reproduces it byte for byte", async () => {
    const o = await replayBounded(base.store);
    expect(o.kind).toBe("report");
    const rep = (o as { report: ReplayReport }).report;
    expect(rep.divergences).toEqual([]);
    expect(rep.snapshot?.result).toBe("matches");
    expect(rep.uncheckpointedTail).toBeGreaterThan(0);
    expect(base.records.length).toBeGreaterThan(2 * BUNDLE_SIZE);
    for (const r of base.records) expect(ser(JSON.parse(r.text) as J)).toBe(r.text);
    // Re-chaining an untouched log (without or with re-signing) changes nothing.
    for (const o2 of [{ reseq: false }, { reseq: true, signer: GATEWAY_KEY }]) {
      const m = cloneStore(base.store);
      writeRechained(
        m,
        base.records.map((x) => ({ bytes: x.bytes, from: x })),
        o2,
      );
      for (const [k, v] of m) if (!k.startsWith("s/")) expect(Buffer.from(v).equals(Buffer.from(base.store.get(k)!)), k).toBe(true);
      const again = await replayBounded(m);
      expect(again.kind === "report" && again.report.ok).toBe(true);
    }
    // And in place: the same bundles.
    const m = cloneStore(base.store);
    writeInPlace(
      m,
      base.records.map((x) => ({ bytes: x.bytes, nodes: x.nodes })),
    );
    expect(sameStore(m, base.store)).toBe(true);
  });

  it(`${RUNS} seeded mutations (seed ${SEED}): replay resolves with a well-formed report, and finds every change it must`, async () => {
    const rng = mulberry32(SEED);
    for (let i = 0; i < RUNS; i++) {
      const mutation = makeMutation(base, rng);
      const m = cloneStore(base.store);
      mutation.apply(m);
      // Now and then with a worker thread recomputing the decisions (decide-pool.ts): the same findings, by another path.
      const workers = i % 40 === 39 ? 1 : 0;
      const outcome = await replayBounded(m, { ...mutation.opts, workers });
      const changed = mutation.dropsSnapshot === true ? !sameStore(withoutSnapshot(m), withoutSnapshot(base.store)) : !sameStore(m, base.store);
      results.push({ mutation, changed, outcome });
    }
    const defects = results.map((r, i) => ({ i, name: r.mutation.name, defect: defectOf(r) })).filter((d) => d.defect !== undefined);
    const byKind = new Map<string, number>();
    for (const r of results) byKind.set(r.mutation.expect, (byKind.get(r.mutation.expect) ?? 0) + 1);
    const slowest = results.reduce<{ ms: number; name: string }>((w, r) => (r.outcome.kind === "report" && r.outcome.ms > w.ms ? { ms: r.outcome.ms, name: r.mutation.name } : w), { ms: 0, name: "" });
    console.log(`hostile replay: slowest ${slowest.ms.toFixed(0)} ms (${slowest.name})`);
    if (process.env["FAILCLOSED_HOSTILE_VERBOSE"] !== undefined) {
      for (const r of results) if (r.mutation.expect === "robust" && r.changed && r.outcome.kind === "report" && r.outcome.report.ok) console.log(`  not found (robust only): ${r.mutation.name}`);
    }
    console.log(`hostile replay: ${results.length} mutations (${[...byKind].map(([k, n]) => `${k} ${n}`).join(", ")}), ${results.filter((r) => !r.changed).length} left the bytes as they were, ${defects.length} defects`);
    expect(defects.map((d) => `#${d.i} ${d.name}: ${d.defect!}`)).toEqual([]);
  }, 120_000);

  it(`the CLI on ${CLI_RUNS} sampled mutations (LevelDB copies): exit 1 with a JSON report or 2 with a message, never 0, never a stack trace`, async () => {
    const rng = mulberry32(SEED ^ 0xc11);
    const sample: Mutation[] = [];
    // The sample: some drawn at random from those that must be found, plus one of each class that reaches the CLI differently.
    const mustBeFound = results.filter((r) => r.mutation.expect === "must" && r.changed && r.mutation.opts === undefined).map((r) => r.mutation);
    for (let i = 0; i < CLI_RUNS && mustBeFound.length > 0; i++) sample.push(pick(rng, mustBeFound));
    sample.push(
      { name: "format marker changed (CLI: AUDIT_FORMAT)", expect: "must", apply: (m) => m.set(FORMAT_KEY, enc.encode("failclosed/audit-log/entry-bundles/v9")) },
      { name: "m/head nested 10k deep", expect: "must", apply: (m) => m.set(HEAD_KEY, enc.encode(`${"[".repeat(10_000)}${"]".repeat(10_000)}`)) },
      { name: "every bundle zeroed", expect: "must", apply: (m) => { for (const [k, v] of m) if (k.startsWith("b/")) m.set(k, new Uint8Array(v.length)); } },
    );
    // Checkpoints kept outside the log (--checkpoints): one past the log's end, and a file of junk.
    const pastEnd = join(t.dir, "witness-past-end.json");
    const n = base.records.length;
    writeFileSync(pastEnd, JSON.stringify([signPayload("checkpoint", { kind: "failclosed/checkpoint/v1", origin: "gw-test", size: n + 5, root: toB64u(recordLeafHash(enc.encode("x"))), time: 1_700_000_000_000 }, GATEWAY_KEY)]));
    const junk = join(t.dir, "witness-junk.json");
    writeFileSync(junk, `{"kind":${"[".repeat(5_000)}${"]".repeat(5_000)}}`);
    const unchanged: Mutation = { name: "(log unchanged)", expect: "must", apply: () => undefined };
    const problems: string[] = [];
    const queue: { mutation: Mutation; i: number; extra?: string[] }[] = sample.map((mutation, i) => ({ mutation, i }));
    queue.push({ mutation: { ...unchanged, name: "an external checkpoint past the log's end" }, i: queue.length, extra: ["--checkpoints", pastEnd] });
    queue.push({ mutation: { ...unchanged, name: "a --checkpoints file nested 5,000 deep" }, i: queue.length, extra: ["--checkpoints", junk] });
    const worker = async (): Promise<void> => {
      for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
        const dir = join(t.dir, `db-${job.i}`);
        const m = cloneStore(base.store);
        job.mutation.apply(m);
        await writeLevel(dir, m);
        // verify (structure only) finds every change that must be found as well: none rests on re-derivation alone.
        const cmd = job.i % 2 === 0 ? ["replay", "--workers", "0"] : ["verify"];
        const run = await runCli(["audit", ...cmd, "--db", dir, "--json", "--trust", trustFile, ...(job.extra ?? [])]);
        const p = cliProblem(run);
        if (p !== undefined) problems.push(`audit ${cmd[0]!}: ${job.mutation.name}: ${p}`);
      }
    };
    await Promise.all([worker(), worker()]);
    expect(problems).toEqual([]);
  }, 300_000);

  // Found by this review (fixed): a log whose m/head key was deleted replayed clean, and the CLI
  // exited 0, while the store refuses to open it. log-source.ts now reads a missing head as the
  // store does (an empty log's), so the records beyond it are a HEAD_MISMATCH.
  it("a log whose m/head key was deleted is reported (HEAD_MISMATCH), and `audit verify|replay` exit 1, as the store refuses to open it (AUDIT_CORRUPT)", async () => {
    const m = cloneStore(base.store);
    m.delete(HEAD_KEY);
    await expect(AuditStore.open(new MemoryBackend({ map: cloneStore(m), keys: [] }), storeOptions({ checkpointEvery: 16 }))).rejects.toThrow(/AUDIT_CORRUPT/);
    const o = await replayBounded(m);
    expect(o.kind).toBe("report");
    const rep = (o as { report: ReplayReport }).report;
    expect.soft(rep.ok, "replay of a log without its head").toBe(false);
    expect.soft(rep.divergences.some((d) => d.kind === "HEAD_MISMATCH" || d.kind === "TRUNCATED"), "a head finding").toBe(true);
    const dir = join(t.dir, "db-head-deleted");
    await writeLevel(dir, m);
    for (const cmd of ["verify", "replay"]) {
      const run = await runCli(["audit", cmd, "--db", dir, "--json", "--trust", trustFile]);
      expect.soft(run.code, `audit ${cmd} on a log without its head: ${run.stdout.slice(0, 120)}`).toBe(1);
    }
  }, 120_000);
});
