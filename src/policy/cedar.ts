// The Cedar policy layer: evaluates a request against a content-addressed policy document.
// Policy: every failure here is a deny with the error recorded, never an exception and never a
// pass. Cedar is default-deny; on top of that, a policy that *errors* during evaluation denies
// the request, even when Cedar itself would just skip that policy (an erroring `forbid` must not
// let a `permit` through).
import { createRequire } from "node:module";
import type * as CedarWasm from "@cedar-policy/cedar-wasm/nodejs";
import { isWellFormedString, type JsonValue } from "../canonical/jcs.ts";
import { isPolicyDocument, policyDigest, type PolicyDocument } from "./policy-document.ts";

export type PolicyRequest = {
  /** Agent key id; becomes `Agent::"<id>"`. */
  principal: string;
  /** Becomes `Action::"<name>"`. */
  action: string;
  /** Becomes `Resource::"<path>"`. */
  resource: string;
  context: Record<string, JsonValue>;
};

export type PolicyEvaluation = {
  decision: "allow" | "deny";
  /** Determining policy ids (`@id("…")` annotation, else Cedar's `policyN`). */
  reasons: string[];
  /** Each entry starts with a stable `PolicyErrorCode` followed by `: `. */
  errors: string[];
};

export type PolicyErrorCode =
  | "BAD_DOCUMENT" // not a failclosed/policy/v1 document, or not I-JSON
  | "DIGEST_MISMATCH" // the digest given is not the digest of the document
  | "POLICY_TOO_COMPLEX" // over the size / nesting limits that keep Cedar's wasm stack safe
  | "POLICY_PARSE" // Cedar rejected the text, templates present, or ambiguous policy ids
  | "BAD_REQUEST" // principal / action / resource not a well-formed string
  | "BAD_CONTEXT" // context not representable in Cedar (see toCedarValue)
  | "CEDAR_FAILURE" // Cedar answered with a failure or an answer of unexpected shape
  | "CEDAR_EVAL" // a policy raised an evaluation error
  | "CEDAR_CRASH"; // the wasm module threw; the instance was discarded and reloaded

export type PolicyEngineOptions = {
  /** Parsed policy sets kept, least recently used evicted first. Default 64. */
  cacheSize?: number;
  /** Loads a private Cedar instance; called again after a crash. Default loadCedarWasm. */
  load?: () => CedarModule;
};

export type CedarModule = typeof CedarWasm;

export type PolicyEngineStats = {
  hits: number;
  misses: number;
  /** Policy texts handed to Cedar's parser (a cached rejection is not re-parsed either). */
  parses: number;
  /** wasm instances loaded (1 + crashes recovered). */
  loads: number;
  cached: number;
};

type Cedar = CedarModule;
type CedarValue = CedarWasm.CedarValueJson;

// Policy: Cedar's parser and evaluator recurse on the native and wasm stacks, and an overflow
// can leave the instance corrupt (every later call fails "memory access out of bounds"). On
// 4.13.0 under Node 20 the depth that overflows moves with V8's tiering: measured as low as 76
// nested brackets and 103-105 chained `+`, `.attr`, `&&`/`||` over attribute tests, or
// `if … else if …`. Only policies whose expressions are at most MAX_EXPRESSION_DEPTH deep (an
// upper bound computed from the text, see screenPolicyText) reach Cedar, so whether a policy is
// accepted depends on its text alone, never on the host's stack or JIT state.
const MAX_POLICY_CHARS = 1 << 20;
const MAX_EXPRESSION_DEPTH = 32;
const MAX_CONTEXT_DEPTH = 32;
const MAX_CONTEXT_NODES = 10_000;
/** Cedar's JSON escapes: a record with one of these keys would be read as an entity or extension. */
const RESERVED_KEYS: ReadonlySet<string> = new Set(["__entity", "__extn", "__expr"]);

type CacheEntry =
  | { kind: "parsed"; doc: PolicyDocument; slot: string; labels: ReadonlyMap<string, string> }
  | { kind: "rejected"; doc: PolicyDocument; errors: readonly string[] };

class ContextRejected extends Error {
  override readonly name = "ContextRejected";
}

/** One bracket level of the depth estimate. */
type Level = {
  /** `&&` `||` `if` seen in the current element: each nests the rest one level deeper. */
  chain: number;
  /** Operators in the current segment (between chain operators) and its deepest bracket. */
  ops: number;
  child: number;
  /** Deepest finished segment of the current element, and deepest finished element (`,`). */
  segmentMax: number;
  elementMax: number;
};

const newLevel = (): Level => ({ chain: 0, ops: 0, child: 0, segmentMax: 0, elementMax: 0 });
const levelDepth = (l: Level): number => Math.max(l.elementMax, l.chain + Math.max(l.segmentMax, l.ops + l.child));
const OPERATOR_WORDS: ReadonlySet<string> = new Set(["has", "like", "is", "in"]);

/**
 * Why `text` is refused as too complex, or undefined. The estimate is an upper bound on the depth
 * of every expression tree in it, following Cedar's grammar: within a bracket level, chains of
 * `||` `&&` `if` nest left to right; between them, every unary, binary or access operator can add
 * a level on top of the deepest bracket beside it; `,` separates independent elements.
 * Syntax errors are left for Cedar to report.
 */
export function screenPolicyText(text: string): string | undefined {
  if (text.length > MAX_POLICY_CHARS) return `policy text over ${MAX_POLICY_CHARS} characters`;
  const stack: Level[] = [newLevel()];
  const tooDeep = `an expression may nest deeper than ${MAX_EXPRESSION_DEPTH}`;
  const endSegment = (l: Level): void => {
    l.segmentMax = Math.max(l.segmentMax, l.ops + l.child);
    l.ops = 0;
    l.child = 0;
  };
  const close = (): void => {
    const inner = stack.pop();
    const outer = stack[stack.length - 1];
    if (inner !== undefined && outer !== undefined) outer.child = Math.max(outer.child, 1 + levelDepth(inner));
  };
  for (let i = 0; i < text.length; i++) {
    const level = stack[stack.length - 1] ?? newLevel();
    const ch = text[i] ?? "";
    const next = text[i + 1] ?? "";
    if (ch === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
    } else if (ch === "/" && next === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (ch === "(" || ch === "[" || ch === "{") {
      stack.push(newLevel());
      if (stack.length > MAX_EXPRESSION_DEPTH) return tooDeep;
    } else if (ch === ")" || ch === "]" || ch === "}") {
      if (stack.length > 1) close();
    } else if (ch === ";" && stack.length === 1) {
      stack[0] = newLevel(); // the next policy
    } else if (ch === ",") {
      level.elementMax = levelDepth(level);
      Object.assign(level, { chain: 0, ops: 0, child: 0, segmentMax: 0 });
    } else if ((ch === "&" && next === "&") || (ch === "|" && next === "|")) {
      i++;
      endSegment(level);
      level.chain++;
    } else if (ch === ":" && next === ":") {
      i++; // a path separator, not an operator
    } else if ("!=<>".includes(ch) && next === "=") {
      i++;
      level.ops++;
    } else if (".+-*!<>".includes(ch)) {
      level.ops++;
    } else if (/[A-Za-z_]/.test(ch)) {
      const start = i;
      while (/[A-Za-z0-9_]/.test(text[i + 1] ?? "")) i++;
      const word = text.slice(start, i + 1);
      if (word === "if") {
        endSegment(level);
        level.chain++;
      } else if (word === "then" || word === "else") {
        endSegment(level);
      } else if (OPERATOR_WORDS.has(word)) {
        level.ops++;
      }
    }
    // A level's depth reaches the root when its bracket closes; unclosed ones are closed below.
    if (levelDepth(stack[0] ?? newLevel()) > MAX_EXPRESSION_DEPTH) return tooDeep;
  }
  while (stack.length > 1) close();
  return levelDepth(stack[0] ?? newLevel()) > MAX_EXPRESSION_DEPTH ? tooDeep : undefined;
}

/**
 * JSON → Cedar value. Choices, all deterministic:
 * - non-integer numbers become their RFC 8785 string form ("0.5"): Cedar's Long is an integer, and
 *   dropping the member instead would silently disarm a `has`-guarded `forbid`; a numeric
 *   comparison on the string is an evaluation error, hence a deny;
 * - integers outside ±(2^53−1), non-finite numbers, lone surrogates, non-plain objects,
 *   `undefined`, sparse arrays and Cedar's escape keys (`__entity`, `__extn`, `__expr`, which
 *   would let an agent forge entity references) are refused;
 * - `null` members and elements are left out (Cedar has no null; `has` sees them as absent);
 * - arrays become Cedar sets (unordered, duplicates merged).
 */
function toCedarValue(value: unknown, depth: number, budget: { nodes: number }, path: string): CedarValue | undefined {
  if (++budget.nodes > MAX_CONTEXT_NODES) throw new ContextRejected(`over ${MAX_CONTEXT_NODES} values`);
  if (value === null) return undefined;
  switch (typeof value) {
    case "boolean":
      return value;
    case "string":
      if (!isWellFormedString(value)) throw new ContextRejected(`${path}: lone surrogate`);
      return value;
    case "number":
      if (Number.isInteger(value)) {
        if (!Number.isSafeInteger(value)) throw new ContextRejected(`${path}: integer beyond ±(2^53−1)`);
        return value === 0 ? 0 : value; // -0 → 0
      }
      if (!Number.isFinite(value)) throw new ContextRejected(`${path}: non-finite number`);
      return String(value);
    case "object":
      break;
    case "bigint":
    case "undefined":
    case "function":
    case "symbol":
      throw new ContextRejected(`${path}: a ${typeof value} is not JSON`);
  }
  if (depth >= MAX_CONTEXT_DEPTH) throw new ContextRejected(`${path}: nested deeper than ${MAX_CONTEXT_DEPTH}`);
  if (Array.isArray(value)) {
    const out: CedarValue[] = [];
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) throw new ContextRejected(`${path}[${i}]: sparse array`);
      const v = toCedarValue(value[i], depth + 1, budget, `${path}[${i}]`);
      if (v !== undefined) out.push(v);
    }
    return out;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw new ContextRejected(`${path}: not a plain object`);
  // A null-prototype record, so an own "__proto__" member stays an ordinary member.
  const out = Object.create(null) as Record<string, CedarValue>;
  for (const [k, member] of Object.entries(value)) {
    if (!isWellFormedString(k)) throw new ContextRejected(`${path}: key with a lone surrogate`);
    if (RESERVED_KEYS.has(k)) throw new ContextRejected(`${path}: reserved key ${k}`);
    const v = toCedarValue(member, depth + 1, budget, `${path}.${k}`);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function toCedarContext(context: unknown): Record<string, CedarValue> {
  if (typeof context !== "object" || context === null || Array.isArray(context)) {
    throw new ContextRejected("context is not an object");
  }
  return toCedarValue(context, 0, { nodes: 0 }, "context") as Record<string, CedarValue>;
}

function errorMessages(errors: readonly CedarWasm.DetailedError[]): string[] {
  return errors.map((e) => (e.help ? `${e.message} (${e.help})` : e.message));
}

function fail(code: PolicyErrorCode, details: readonly string[]): PolicyEvaluation {
  return { decision: "deny", reasons: [], errors: details.map((d) => `${code}: ${d}`) };
}

function sameDocument(a: PolicyDocument, b: PolicyDocument): boolean {
  return a.kind === b.kind && a.id === b.id && a.version === b.version && a.cedar === b.cedar;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/**
 * A fresh, private instance of cedar-wasm's Node build (its module body instantiates the wasm,
 * so requiring it past the module cache yields a new instance, ~10-25 ms).
 */
export function loadCedarWasm(): CedarModule {
  // Policy: each engine owns its instance, so a crash is recovered from by loading a new one,
  // and the preparsed slots of two engines never collide.
  const require = createRequire(import.meta.url);
  const path = require.resolve("@cedar-policy/cedar-wasm/nodejs");
  delete require.cache[path];
  try {
    return require(path) as CedarModule;
  } finally {
    delete require.cache[path];
  }
}

/**
 * Cedar names unannotated policies policy0, policy1… in text order, and `policySetTextToParts`
 * returns them sorted by that id as a string. The `@id` labels are mapped onto Cedar's ids
 * through that order, so check it once per instance; if it ever changes, reasons fall back to
 * Cedar's own ids instead of risking a wrong label.
 */
function probeIdOrder(cedar: Cedar): boolean {
  const n = 12;
  const text = Array.from({ length: n }, (_, i) => `permit(principal, action == Action::"p${i}", resource);`).join("\n");
  const parts = cedar.policySetTextToParts(text);
  if (parts.type !== "success" || parts.policies.length !== n) return false;
  const ids = defaultIdsInPartsOrder(n);
  return parts.policies.every((p, i) => p.includes(`Action::"p${ids[i]?.slice("policy".length) ?? ""}"`));
}

function defaultIdsInPartsOrder(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `policy${i}`).sort();
}

/** Insertion sort without a comparator callback (see #interpret); the lists are a handful long. */
function sortStrings(xs: string[]): string[] {
  for (let i = 1; i < xs.length; i++) {
    const v = xs[i]!;
    let j = i - 1;
    while (j >= 0 && xs[j]! > v) {
      xs[j + 1] = xs[j]!;
      j--;
    }
    xs[j + 1] = v;
  }
  return xs;
}

export class PolicyEngine {
  readonly #capacity: number;
  readonly #load: () => Cedar;
  readonly #cache = new Map<string, CacheEntry>(); // digest → entry, least recently used first
  readonly #freeSlots: string[] = [];
  #cedar: Cedar | undefined;
  #sortedIds = false;
  #stats = { hits: 0, misses: 0, parses: 0, loads: 0 };

  constructor(options: PolicyEngineOptions = {}) {
    const capacity = options.cacheSize ?? 64;
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 4096) {
      throw new RangeError("PolicyEngine: cacheSize must be an integer in [1, 4096]");
    }
    this.#capacity = capacity;
    this.#load = options.load ?? loadCedarWasm;
    this.#resetSlots();
  }

  stats(): PolicyEngineStats {
    return { ...this.#stats, cached: this.#cache.size };
  }

  /**
   * Decide `req` under `doc` (whose digest must be `digest`). Never throws. The result depends
   * on the arguments alone (the cache only saves work), except that a Cedar crash, which the
   * complexity screen exists to prevent, is a deny whose error text names the host's failure.
   */
  evaluate(doc: PolicyDocument, digest: string, req: PolicyRequest): PolicyEvaluation {
    try {
      return this.#evaluate(doc, digest, req);
    } catch (e) {
      // Unreachable by design; still a deny, never an exception.
      return fail("CEDAR_FAILURE", [`internal error: ${errorText(e)}`]);
    }
  }

  #evaluate(doc: PolicyDocument, digest: string, req: PolicyRequest): PolicyEvaluation {
    if (!isPolicyDocument(doc)) return fail("BAD_DOCUMENT", ["not a failclosed/policy/v1 document"]);
    if (typeof digest !== "string") return fail("DIGEST_MISMATCH", ["digest is not a string"]);
    const entry = this.#lookup(doc, digest);
    if (entry.kind === "rejected") return { decision: "deny", reasons: [], errors: [...entry.errors] };

    if (typeof req !== "object" || req === null) return fail("BAD_REQUEST", ["request is not an object"]);
    const { principal, action, resource } = req;
    for (const [name, v] of [["principal", principal], ["action", action], ["resource", resource]] as const) {
      if (typeof v !== "string" || !isWellFormedString(v)) return fail("BAD_REQUEST", [`${name} is not a well-formed string`]);
    }
    let context: Record<string, CedarValue>;
    try {
      context = toCedarContext(req.context);
    } catch (e) {
      // ContextRejected, or whatever a hostile getter throws.
      return fail("BAD_CONTEXT", [e instanceof ContextRejected ? e.message : errorText(e)]);
    }

    const answer = this.#call((cedar) =>
      cedar.statefulIsAuthorized({
        principal: { type: "Agent", id: principal },
        action: { type: "Action", id: action },
        resource: { type: "Resource", id: resource },
        context,
        entities: [],
        preparsedPolicySetId: entry.slot,
      }),
    );
    if (!answer.ok) return fail("CEDAR_CRASH", [answer.error]);
    return this.#interpret(answer.value, entry.labels);
  }

  #interpret(answer: CedarWasm.AuthorizationAnswer, labels: ReadonlyMap<string, string>): PolicyEvaluation {
    if (answer.type === "failure") return fail("CEDAR_FAILURE", errorMessages(answer.errors));
    const { decision, diagnostics } = answer.response;
    // Plain loops, not map/sort with callbacks: on Node 20's V8 a lazy deopt of this hot frame
    // while inside an array builtin's callback hit "Fatal error: unreachable code" in
    // Deoptimizer::DoComputeBuiltinContinuation and killed the process (seen under load in the
    // gateway tests). Sorted: Cedar collects these in hash sets; the log must not depend on hash order.
    const reasonSet = new Set<string>();
    for (const id of diagnostics.reason) reasonSet.add(labels.get(id) ?? id);
    const reasons = sortStrings([...reasonSet]);
    if (diagnostics.errors.length > 0) {
      const errs: string[] = [];
      for (const e of diagnostics.errors) errs.push(`CEDAR_EVAL: ${labels.get(e.policyId) ?? e.policyId}: ${e.error.message}`);
      const errors = sortStrings(errs);
      // A forbid that fired still explains the deny; permits that fired explain nothing now.
      return { decision: "deny", reasons: decision === "deny" ? reasons : [], errors };
    }
    if (decision === "allow") {
      // Cedar allows only on a satisfied permit; an allow without one is not an answer we trust.
      if (reasons.length === 0) return fail("CEDAR_FAILURE", ["allow without a determining policy"]);
      return { decision: "allow", reasons, errors: [] };
    }
    return { decision: "deny", reasons, errors: [] };
  }

  /** The cache entry for this document, parsing it on a miss. The digest is checked either way. */
  #lookup(doc: PolicyDocument, digest: string): CacheEntry {
    const cached = this.#cache.get(digest);
    // A hit needs the same four fields as the document whose digest was verified on the miss.
    if (cached !== undefined && sameDocument(cached.doc, doc)) {
      this.#stats.hits++;
      this.#cache.delete(digest);
      this.#cache.set(digest, cached);
      return cached;
    }
    let actual: string;
    try {
      actual = policyDigest(doc);
    } catch (e) {
      return { kind: "rejected", doc, errors: [`BAD_DOCUMENT: ${errorText(e)}`] };
    }
    if (actual !== digest) {
      return { kind: "rejected", doc, errors: [`DIGEST_MISMATCH: expected ${digest}, document hashes to ${actual}`] };
    }
    this.#stats.misses++;
    const snapshot: PolicyDocument = { kind: doc.kind, id: doc.id, version: doc.version, cedar: doc.cedar };
    const entry = this.#parse(snapshot);
    // A crash is not a property of the document: do not remember it.
    if (entry.kind === "parsed" || !entry.errors.some((e) => e.startsWith("CEDAR_CRASH"))) this.#insert(digest, entry);
    return entry;
  }

  #parse(doc: PolicyDocument): CacheEntry {
    const rejected = (code: PolicyErrorCode, details: readonly string[]): CacheEntry => ({
      kind: "rejected",
      doc,
      errors: details.map((d) => `${code}: ${d}`),
    });
    const tooComplex = screenPolicyText(doc.cedar);
    if (tooComplex !== undefined) return rejected("POLICY_TOO_COMPLEX", [tooComplex]);

    this.#stats.parses++;
    const labelled = this.#call((cedar) => this.#labels(cedar, doc.cedar));
    if (!labelled.ok) return rejected("CEDAR_CRASH", [labelled.error]);
    if ("errors" in labelled.value) return rejected("POLICY_PARSE", labelled.value.errors);

    // As many slots as cache entries, so with none free every entry holds one: evicting frees one.
    if (this.#freeSlots.length === 0) this.#evictOldest();
    const slot = this.#freeSlots.pop();
    if (slot === undefined) return rejected("CEDAR_FAILURE", ["no free policy slot"]); // unreachable
    const parsed = this.#call((cedar) => cedar.preparsePolicySet(slot, { staticPolicies: doc.cedar }));
    if (!parsed.ok) return rejected("CEDAR_CRASH", [parsed.error]); // the reload reset the slots
    if (parsed.value.type === "failure") {
      // Cedar leaves the slot untouched on failure; nothing maps to it, so it is free again.
      this.#freeSlots.push(slot);
      return rejected("POLICY_PARSE", errorMessages(parsed.value.errors));
    }
    return { kind: "parsed", doc, slot, labels: labelled.value.labels };
  }

  /** Cedar id → reported id: the `@id` annotation when present, which must be unambiguous. */
  #labels(cedar: Cedar, text: string): { labels: Map<string, string> } | { errors: string[] } {
    const parts = cedar.policySetTextToParts(text);
    if (parts.type === "failure") return { errors: errorMessages(parts.errors) };
    // Policy: nothing links templates, so an unlinked one would be dead text that looks live.
    if (parts.policy_templates.length > 0) return { errors: ["policy templates are not supported"] };
    const labels = new Map<string, string>();
    if (!this.#sortedIds) return { labels };
    const ids = defaultIdsInPartsOrder(parts.policies.length);
    const seen = new Set<string>();
    for (const [i, policy] of parts.policies.entries()) {
      const json = cedar.policyToJson(policy);
      if (json.type === "failure") return { errors: errorMessages(json.errors) };
      const cedarId = ids[i] ?? `policy${i}`;
      const annotated = json.json.annotations?.["id"];
      const id = typeof annotated === "string" && annotated !== "" ? annotated : cedarId;
      if (seen.has(id)) return { errors: [`policy id "${id}" is used twice`] };
      seen.add(id);
      labels.set(cedarId, id);
    }
    return { labels };
  }

  #insert(digest: string, entry: CacheEntry): void {
    if (this.#cache.size >= this.#capacity) this.#evictOldest();
    this.#cache.set(digest, entry);
  }

  #evictOldest(): void {
    const oldest = this.#cache.entries().next();
    if (oldest.done === true) return;
    const [digest, entry] = oldest.value;
    this.#cache.delete(digest);
    // The slot keeps the old policy set until the next preparse overwrites it; nothing maps to it.
    if (entry.kind === "parsed") this.#freeSlots.push(entry.slot);
  }

  #resetSlots(): void {
    this.#cache.clear();
    this.#freeSlots.length = 0;
    for (let i = this.#capacity - 1; i >= 0; i--) this.#freeSlots.push(`slot${i}`);
  }

  /** Runs `f` on the wasm instance; any exception discards the instance (it may be corrupt). */
  #call<T>(f: (cedar: Cedar) => T): { ok: true; value: T } | { ok: false; error: string } {
    try {
      if (this.#cedar === undefined) {
        const cedar = this.#load();
        this.#stats.loads++;
        this.#sortedIds = probeIdOrder(cedar);
        this.#cedar = cedar;
      }
      return { ok: true, value: f(this.#cedar) };
    } catch (e) {
      this.#cedar = undefined;
      this.#resetSlots();
      return { ok: false, error: `${errorText(e)} (Cedar instance discarded)` };
    }
  }
}
