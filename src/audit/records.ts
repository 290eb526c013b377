// Audit record types and their byte encoding. A record is RFC 8785 canonical JSON; its
// Merkle leaf is SHA-256(0x00 ‖ those bytes) and the next record's `prev` is that leaf hash,
// so the hash chain and the tree commit to exactly the same bytes.
import { parseCanonical, type CanonicalParseOptions } from "../canonical/canonical-parse.ts";
import { CanonicalError } from "../canonical/errors.ts";
import { canonicalBytes, canonicalize, canonicalMembers, mergeCanonicalMembers, type JsonValue } from "../canonical/jcs.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import type { Signed } from "../crypto/signing.ts";
import type { PolicyActivationPayload, SignedRevocation } from "../core/types.ts";
import { HASH_SIZE, leafHash } from "./merkle.ts";

export const RECORD_TYPES = ["trust", "revocation", "evidence", "decision", "outcome", "checkpoint"] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

/** The chain's anchor: `prev` of record 0. */
export const GENESIS_PREV = toB64u(new Uint8Array(HASH_SIZE));

/** Key and policy changes. Keys are named by keyId (base64url public key). */
export type TrustChange =
  | { readonly op: "authority.add" | "authority.remove" | "gateway.add" | "gateway.remove"; readonly keyId: string }
  /**
   * `activation`: the authority's signed activation (policy/activation.ts), always written since
   * policy entries are signed; absent only in logs written before that.
   */
  | { readonly op: "policy.activate"; readonly policyDigest: string; readonly document: JsonValue; readonly activation?: Signed<PolicyActivationPayload> }
  /** The authority withdrew the active policy: until another is activated, every task is denied. */
  | { readonly op: "policy.withdraw" };

export type EvidenceKind = "request" | "artifact" | "lineage";

export interface CheckpointPayload {
  readonly kind: "failclosed/checkpoint/v1";
  readonly origin: string;
  readonly size: number;
  /** base64url RFC 6962 root over records [0, size). */
  readonly root: string;
  readonly time: number;
}

export interface DecisionBody {
  readonly verdict: "allow" | "deny";
  readonly checks: readonly { readonly check: string; readonly ok: boolean; readonly code?: string; readonly detail?: string }[];
  readonly reasons: readonly string[];
}

/** What a caller appends; the store adds `v`, `seq`, `prev` and `time`. */
export type AuditEntry =
  | { readonly type: "trust"; readonly change: TrustChange }
  | { readonly type: "revocation"; readonly revocation: SignedRevocation }
  | { readonly type: "evidence"; readonly taskId: string; readonly kind: EvidenceKind; readonly signed: Signed<JsonValue> }
  | {
      readonly type: "decision";
      readonly taskId: string;
      /** The full DecisionInput as `decide` received it (JSON form). */
      readonly input: JsonValue;
      readonly decision: DecisionBody;
    }
  | {
      readonly type: "outcome";
      readonly taskId: string;
      readonly status: "succeeded" | "failed";
      readonly resultDigest?: string;
      readonly error?: string;
      /**
       * How a handler cut off by its timeout ended after all, following the task's `failed`
       * outcome (gateway.ts #watchLateHandler): the same execution, told in full, never a second
       * one. At most one per task (replay: OUTCOME_WITHOUT_ALLOW otherwise).
       */
      readonly late?: true;
    }
  | { readonly type: "checkpoint"; readonly checkpoint: Signed<CheckpointPayload> };

export type AuditRecord = AuditEntry & {
  readonly v: 1;
  readonly seq: number;
  /** base64url leaf hash of record seq−1 (GENESIS_PREV for seq 0). */
  readonly prev: string;
  readonly time: number;
};

/** The record for an entry. The store's fields win: an entry cannot choose its own seq or prev. */
export function recordOf(entry: AuditEntry, seq: number, prev: string, time: number): AuditRecord {
  // Spread first, then assign: V8 (Node 20) clones `{ ...entry, seq, … }` (properties after a
  // spread) on a slow path: about 4 µs per record, measured, more than the rest of #build.
  const r: Record<string, unknown> = { v: 1, seq, prev, time, ...entry };
  r["v"] = 1;
  r["seq"] = seq;
  r["prev"] = prev;
  r["time"] = time;
  return r as unknown as AuditRecord;
}

/** An entry encoded once (canonical members), ready for the store to add its own fields. */
export interface PreparedEntry {
  readonly entry: AuditEntry;
  readonly members: readonly [string, string][];
}

/**
 * Encode an entry's members now; throws CanonicalError when it is not I-JSON, or when the log
 * could not read the record back (recordTextProblem): nesting, size, a "__proto__" key.
 */
export function prepareEntry(entry: AuditEntry): PreparedEntry {
  // The store's fields win (recordOf), so an entry's own are never encoded: never written.
  const e = entry as unknown as Record<string, unknown>;
  let members: [string, string][];
  if (typeof e === "object" && e !== null && ("v" in e || "seq" in e || "prev" in e || "time" in e)) {
    const { v: _v, seq: _s, prev: _p, time: _t, ...rest } = e;
    members = canonicalMembers(rest, RECORD_LIMITS.maxDepth);
  } else members = canonicalMembers(entry, RECORD_LIMITS.maxDepth);
  // The store's own fields add well under RECORD_HEADER_BYTES. The members are looked at one by
  // one (no joined copy) unless something needs the exact check.
  let length = 0;
  let suspect = false;
  for (const [, m] of members) {
    length += m.length + 1;
    suspect ||= m.includes("__proto__");
  }
  if (suspect || 3 * length > RECORD_LIMITS.maxBytes - RECORD_HEADER_BYTES) {
    const problem = recordTextProblem(`{${members.map((m) => m[1]).join(",")}}`, RECORD_HEADER_BYTES);
    if (problem !== undefined) throw problem;
  }
  return { entry, members };
}

/** Room left for the store's own fields (v, seq, prev, time) beside an entry's. */
const RECORD_HEADER_BYTES = 256;

/**
 * Why the log could not read this record text back (decodeRecord), when it could not; the
 * store refuses to acknowledge such a record (its nesting is bounded where it is encoded). Cheap
 * for what the log holds: exact checks run only when the text is large or names "__proto__".
 */
export function recordTextProblem(json: string, reserve = 0): CanonicalError | undefined {
  const max = RECORD_LIMITS.maxBytes - reserve;
  if (json.length > max || (3 * json.length > max && Buffer.byteLength(json, "utf8") > max)) return new CanonicalError("TOO_LARGE", `record over ${max} bytes`);
  if (json.includes("__proto__")) {
    try {
      parseCanonical(new TextEncoder().encode(json), RECORD_LIMITS);
    } catch (e) {
      return e instanceof CanonicalError ? e : new CanonicalError("NOT_JSON", String(e));
    }
  }
  return undefined;
}

/**
 * canonicalize(recordOf(entry, seq, prev, time)), from the prepared members: the entry is not
 * encoded again. (Tested byte for byte against that definition.)
 */
export function canonicalRecord(p: PreparedEntry, seq: number, prev: string, time: number): string {
  const header: [string, string][] = [
    ["prev", `"prev":${canonicalize(prev)}`],
    ["seq", `"seq":${canonicalize(seq)}`],
    ["time", `"time":${canonicalize(time)}`],
    ["v", `"v":1`],
  ];
  return mergeCanonicalMembers(p.members, header);
}

export function encodeRecord(record: AuditRecord): Uint8Array {
  return canonicalBytes(record);
}

export function recordLeafHash(bytes: Uint8Array): Uint8Array {
  return leafHash(bytes);
}

export type RecordProblem = "NOT_CANONICAL" | "SCHEMA";
export type DecodeResult = { ok: true; record: AuditRecord } | { ok: false; problem: RecordProblem; detail: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === "string";
const isSigned = (v: unknown): boolean => isObj(v) && isObj(v["payload"]) && isStr(v["sig"]);

export function entryShapeProblem(r: Record<string, unknown>): string | undefined {
  const t = r["type"];
  switch (t) {
    case "trust": {
      const c = r["change"];
      if (!isObj(c)) return "trust.change";
      if (c["op"] === "authority.add" || c["op"] === "authority.remove" || c["op"] === "gateway.add" || c["op"] === "gateway.remove") {
        return isStr(c["keyId"]) ? undefined : "trust.keyId";
      }
      if (c["op"] === "policy.activate") {
        if (!isStr(c["policyDigest"]) || !("document" in c)) return "trust.policy";
        if (!("activation" in c)) return undefined;
        const a = c["activation"];
        if (!isSigned(a)) return "trust.activation";
        const p = (a as { payload: Record<string, unknown> }).payload;
        return p["policyDigest"] === c["policyDigest"] && Number.isSafeInteger(p["version"]) && isStr(p["issuer"]) ? undefined : "trust.activation";
      }
      if (c["op"] === "policy.withdraw") return Object.keys(c).length === 1 ? undefined : "trust.policy";
      return "trust.op";
    }
    case "revocation": {
      if (!isSigned(r["revocation"])) return "revocation.revocation";
      const tg = (r["revocation"] as { payload: Record<string, unknown> }).payload["target"];
      if (!isObj(tg)) return "revocation.target";
      if (tg["type"] === "artifact" && isStr(tg["id"])) return undefined;
      if (tg["type"] === "key" && isStr(tg["keyId"])) return undefined;
      return "revocation.target";
    }
    case "evidence":
      if (!isStr(r["taskId"])) return "evidence.taskId";
      if (r["kind"] !== "request" && r["kind"] !== "artifact" && r["kind"] !== "lineage") return "evidence.kind";
      return isSigned(r["signed"]) ? undefined : "evidence.signed";
    case "decision": {
      if (!isStr(r["taskId"]) || !("input" in r)) return "decision.input";
      const d = r["decision"];
      if (!isObj(d) || (d["verdict"] !== "allow" && d["verdict"] !== "deny")) return "decision.verdict";
      return Array.isArray(d["checks"]) && Array.isArray(d["reasons"]) ? undefined : "decision.checks";
    }
    case "outcome":
      if (r["late"] !== undefined && r["late"] !== true) return "outcome.late";
      return isStr(r["taskId"]) && (r["status"] === "succeeded" || r["status"] === "failed") ? undefined : "outcome";
    case "checkpoint": {
      const c = r["checkpoint"];
      if (!isSigned(c)) return "checkpoint.signed";
      const p = (c as { payload: Record<string, unknown> }).payload;
      const ok =
        p["kind"] === "failclosed/checkpoint/v1" &&
        isStr(p["origin"]) &&
        Number.isSafeInteger(p["size"]) &&
        isStr(p["root"]) &&
        typeof p["time"] === "number";
      return ok ? undefined : "checkpoint.payload";
    }
    default:
      return "type";
  }
}

export const RECORD_LIMITS: CanonicalParseOptions = { maxBytes: 16 * 1024 * 1024, maxDepth: 128 };

/** Parse stored bytes back into a record. Attacker bytes give a problem, never a throw. */
export function decodeRecord(bytes: Uint8Array): DecodeResult {
  let value: JsonValue;
  try {
    // Only the canonical spelling is a valid record: two spellings would mean two leaf hashes.
    value = parseCanonical(bytes, RECORD_LIMITS);
  } catch (e) {
    if (e instanceof CanonicalError && e.code === "NOT_CANONICAL") return { ok: false, problem: "NOT_CANONICAL", detail: "record bytes are not RFC 8785 canonical" };
    return { ok: false, problem: "NOT_CANONICAL", detail: e instanceof Error ? e.message : "unparseable" };
  }
  if (!isObj(value)) return { ok: false, problem: "SCHEMA", detail: "record is not an object" };
  if (value["v"] !== 1 || !Number.isSafeInteger(value["seq"]) || !isStr(value["prev"]) || typeof value["time"] !== "number") {
    return { ok: false, problem: "SCHEMA", detail: "bad v/seq/prev/time" };
  }
  const problem = entryShapeProblem(value);
  if (problem !== undefined) return { ok: false, problem: "SCHEMA", detail: `bad ${problem}` };
  return { ok: true, record: value as unknown as AuditRecord };
}

const sameKeys = (o: Record<string, unknown>, keys: readonly string[]): boolean => {
  const k = Object.keys(o);
  return k.length === keys.length && keys.every((x) => Object.hasOwn(o, x));
};

/** The reason `v` is not exactly a signed checkpoint (as a witness or an auditor receives one), or undefined. */
export function checkpointShapeProblem(v: unknown): string | undefined {
  if (!isObj(v) || !sameKeys(v, ["payload", "sig"])) return "not {payload, sig}";
  if (typeof v["sig"] !== "string") return "sig is not a string";
  const p = v["payload"];
  if (!isObj(p) || !sameKeys(p, ["kind", "origin", "size", "root", "time"])) return "payload is not {kind, origin, size, root, time}";
  if (p["kind"] !== "failclosed/checkpoint/v1") return `kind ${JSON.stringify(p["kind"])}`;
  if (typeof p["origin"] !== "string" || p["origin"] === "") return "origin is not a string";
  if (!Number.isSafeInteger(p["size"]) || (p["size"] as number) < 0) return "size is not a non-negative integer";
  if (fromB64u(p["root"], 32) === undefined) return "root is not 32 base64url bytes";
  if (!Number.isSafeInteger(p["time"])) return "time is not an integer";
  return undefined;
}
