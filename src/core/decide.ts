// decide(input) → Decision (DESIGN §3). Pure: no I/O, no clock, no randomness; everything it
// reads is in `input`, which the gateway records so an auditor can run this again and compare.
// Deny is the default: `allow` only when every check ran and passed. Any exception inside is a
// bug, and still a deny (GOVERNANCE_UNAVAILABLE), never an escape.
import { canonicalBytes } from "../canonical/jcs.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import { SIGNATURE_LENGTH, verifyEd25519 } from "../crypto/ed25519.ts";
import { sha256 } from "../crypto/hash.ts";
import { signingInputFromCanonical, type SignedKind } from "../crypto/signing.ts";
import { PolicyEngine, type PolicyEvaluation, type PolicyRequest } from "../policy/cedar.ts";
import type { PolicyDocument } from "../policy/policy-document.ts";
import { check, signedArtifactSchema, signedLineageSchema, signedRequestSchema } from "./schema.ts";
import { constraintViolation, scopeAllows, wideningReason } from "./scope.ts";
import { SignatureMemo, type SignatureMemoStats } from "./signature-memo.ts";
import type {
  ArtifactPayload,
  Check,
  CheckName,
  Decision,
  DecisionInput,
  DecisionLimits,
  DenialCode,
  GovernanceHealth,
  LineagePayload,
  SignedArtifact,
  SignedLineage,
  SignedRequest,
  TaskClaimState,
  TrustSnapshot,
  TrustView,
} from "./types.ts";

export type PolicyEvaluator = (doc: PolicyDocument, digest: string, req: PolicyRequest) => PolicyEvaluation;

// One engine per process: its cache of parsed policy sets is keyed by digest, so it cannot
// change an answer, only how fast it comes.
const sharedEngine = new PolicyEngine();
const cedarEvaluate: PolicyEvaluator = (doc, digest, req) => sharedEngine.evaluate(doc, digest, req);

interface Parsed<P> {
  signed: { payload: P; sig: string };
  p: P;
  /** JCS(payload), computed once for both the id and the signature. */
  canonical: Uint8Array;
  id: string;
}

function parsed<P>(signed: { payload: P; sig: string }): Parsed<P> {
  const canonical = canonicalBytes(signed.payload);
  return { signed, p: signed.payload, canonical, id: toB64u(sha256(canonical)) };
}

class Checks {
  readonly list: Check[] = [];
  pass(check: CheckName): void {
    this.list.push({ check, ok: true });
  }
  fail(check: CheckName, code: DenialCode, detail: string): void {
    this.list.push({ check, ok: false, code, detail });
  }
  /** Record the first problem found, or a pass. */
  record(check: CheckName, problem: { code: DenialCode; detail: string } | undefined): void {
    if (problem) this.fail(check, problem.code, problem.detail);
    else this.pass(check);
  }
}

function finish(checks: Checks): Decision {
  const reasons: DenialCode[] = [];
  for (const c of checks.list) if (!c.ok && c.code && !reasons.includes(c.code)) reasons.push(c.code);
  const allOk = checks.list.length > 0 && checks.list.every((c) => c.ok);
  return { verdict: allOk && reasons.length === 0 ? "allow" : "deny", checks: checks.list, reasons };
}

// One memo of verified signatures per thread (signature-memo.ts).
const memo = new SignatureMemo();

function sigOk(kind: SignedKind, item: Parsed<unknown>, signerKeyId: string): boolean {
  const pub = fromB64u(signerKeyId, 32);
  const sig = fromB64u(item.signed.sig, SIGNATURE_LENGTH);
  if (!pub || !sig) return false;
  const msg = signingInputFromCanonical(kind, item.canonical);
  return memo.verified(pub, sig, msg, () => verifyEd25519(pub, msg, sig));
}

/**
 * Record that `sig` verified under `pub` for `msg`, as found by verifyEd25519 on another thread
 * (crypto/verify-pool.ts). Only a success may be recorded; decide then skips re-verifying it.
 */
export function primeVerified(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): void {
  memo.prime(pub, sig, msg);
}

/** Forget memoized verifications (benchmarks measure the cold path with it). */
export function clearSignatureMemo(): void {
  memo.clear();
}

/** This thread's signature memo counters (tests, benchmarks). */
export function signatureMemoStats(): SignatureMemoStats {
  return memo.stats();
}

type Problem = { code: DenialCode; detail: string } | undefined;

/**
 * `trust`: the trust state, when `input.trust` refers to the log's (TrustFromLog) rather than
 * carrying a snapshot. Given with a snapshot, or missing for a reference, it is a deny
 * (GOVERNANCE_UNAVAILABLE): which of two trust states was meant cannot be known.
 */
export function decide(input: DecisionInput, evaluate: PolicyEvaluator = cedarEvaluate, trust?: TrustView): Decision {
  try {
    return decideChecked(input, evaluate, trust);
  } catch (e) {
    // Policy: an internal error is a governance failure, never a pass.
    return {
      verdict: "deny",
      checks: [{ check: "governance", ok: false, code: "GOVERNANCE_UNAVAILABLE", detail: `internal error: ${e instanceof Error ? e.message : String(e)}` }],
      reasons: ["GOVERNANCE_UNAVAILABLE"],
    };
  }
}

function decideChecked(input: DecisionInput, evaluate: PolicyEvaluator, given: TrustView | undefined): Decision {
  const c = new Checks();
  const { now, limits } = input;

  // Governance state first: without it nothing else can be trusted.
  const trust = trustViewOf(input.trust, given);
  if (typeof trust === "string") {
    c.fail("governance", "GOVERNANCE_UNAVAILABLE", trust);
    return finish(c);
  }
  c.record("governance", governanceProblem(input, trust));

  // MALFORMED before any other check on the evidence (DESIGN §2).
  const req = check(signedRequestSchema, input.request);
  let argsCanonical: Uint8Array | undefined;
  let schemaProblem: string | undefined = input.intakeErrors.length > 0 ? `intake: ${input.intakeErrors.join("; ")}` : undefined;
  if (!req.ok) schemaProblem ??= `request ${req.error}`;
  try {
    argsCanonical = canonicalBytes(input.args);
  } catch (e) {
    schemaProblem ??= `args not I-JSON: ${e instanceof Error ? e.message : String(e)}`;
  }
  const chainRaw: SignedArtifact[] = [];
  input.chain.forEach((a, i) => {
    const r = check(signedArtifactSchema, a);
    if (r.ok) chainRaw.push(r.value);
    else schemaProblem ??= `artifact[${i}] ${r.error}`;
  });
  const lineageRaw: SignedLineage[] = [];
  input.lineage.forEach((l, i) => {
    const r = check(signedLineageSchema, l);
    if (r.ok) lineageRaw.push(r.value);
    else schemaProblem ??= `lineage[${i}] ${r.error}`;
  });
  if (schemaProblem !== undefined || !req.ok || argsCanonical === undefined) {
    c.fail("schema", "MALFORMED", schemaProblem ?? "malformed");
    return finish(c);
  }
  // The canonical form of every signed payload, once: a value the schema lets through but that is
  // not I-JSON (a lone surrogate, an unsafe integer, a non-JSON value in metadata) is MALFORMED.
  let request: Parsed<SignedRequest["payload"]>;
  let chain: Parsed<ArtifactPayload>[];
  let lineage: Parsed<LineagePayload>[];
  try {
    request = parsed(req.value);
    chain = chainRaw.map((a) => parsed(a));
    lineage = lineageRaw.map((l) => parsed(l));
  } catch (e) {
    c.fail("schema", "MALFORMED", `not I-JSON: ${e instanceof Error ? e.message : String(e)}`);
    return finish(c);
  }
  c.pass("schema");
  if (chainRaw.length === 0) {
    c.fail("evidence", "NO_ARTIFACT", "no artifact arrived before the evidence deadline");
    return finish(c);
  }
  c.pass("evidence");
  const leaf = chain[chain.length - 1]!;
  const r = request.p;

  // Signatures: request (proof of possession by the agent), every artifact, every lineage event.
  c.record(
    "request-signature",
    !sigOk("request", request, r.agent)
      ? { code: "BAD_SIGNATURE", detail: "request signature does not verify under its agent key" }
      : toB64u(sha256(argsCanonical)) !== r.argsDigest
        ? { code: "BAD_SIGNATURE", detail: "args do not match the signed argsDigest" }
        : undefined,
  );
  const badArtifact = chain.findIndex((a) => !sigOk("artifact", a, a.p.issuer));
  c.record("chain-signatures", badArtifact >= 0 ? { code: "BAD_SIGNATURE", detail: `artifact[${badArtifact}] signature does not verify under its issuer` } : undefined);
  const badLineage = lineage.findIndex((l) => !sigOk("lineage", l, l.p.signer));
  c.record("lineage-signatures", badLineage >= 0 ? { code: "BAD_SIGNATURE", detail: `lineage[${badLineage}] signature does not verify under its signer` } : undefined);

  const root = chain[0]!;
  c.record(
    "issuer",
    trust.isAuthority(root.p.issuer) ? undefined : { code: "UNTRUSTED_ISSUER", detail: "root artifact not signed by a trusted authority" },
  );

  c.record(
    "identity",
    r.agent !== leaf.p.holder
      ? { code: "IDENTITY_MISMATCH", detail: "request not signed by the artifact's holder" }
      : r.artifactId !== leaf.id
        ? { code: "IDENTITY_MISMATCH", detail: "request names another artifact" }
        : undefined,
  );

  c.record("validity", validityProblem(chain, r.createdAt, now, limits.maxSkewMs, limits.maxRequestAgeMs, r.notAfter));
  c.record("delegation", delegationProblem(chain, limits.maxDepth));
  c.record("lineage", lineageProblem(chain, lineage, r, trust, now, limits.maxSkewMs));
  c.record("revocation", revocationProblem(chain, lineage, r, trust));
  c.record("environment", environmentProblem(chain, input));
  c.record("policy", policyProblem(chain, input, trust, evaluate));

  // The task id: one execution per id, whatever artifact is presented for it. A problem known
  // without the claim (decided here already, or another gateway's claim) is recorded before the
  // nonce, so such a duplicate is REPLAYED without spending its nonce.
  const t = taskClaimOf(input);
  let taskUnclaimed = false;
  if (t === "malformed") c.fail("task", "GOVERNANCE_UNAVAILABLE", "task claim is malformed");
  else if (t !== undefined) {
    const problem: Problem =
      t.taskId !== r.taskId
        ? { code: "REPLAYED", detail: "claimed task id is not the request's" }
        : t.local === "decided"
          ? { code: "REPLAYED", detail: "task id already decided on this gateway" }
          : t.cluster === "taken"
            ? { code: "REPLAYED", detail: "task id already claimed in the cluster" }
            : t.cluster === "unavailable"
              ? { code: "GOVERNANCE_UNAVAILABLE", detail: "task-claim store unavailable" }
              : undefined;
    if (problem !== undefined || t.cluster === "claimed") c.record("task", problem);
    else taskUnclaimed = true;
  }

  const n = input.nonce;
  if (n.cluster === "not-attempted" && c.list.some((x) => !x.ok) && n.key === leaf.p.nonce && n.local === "fresh") {
    // The gateway spends a nonce only after everything else passed; here something did not,
    // so the unclaimed nonce is a consequence, not a reason: no code of its own. (A nonce
    // this gateway already saw spent is still REPLAYED, below.) Likewise the task id.
    if (taskUnclaimed) c.list.push({ check: "task", ok: false, detail: "not claimed: denied before the claim" });
    c.list.push({ check: "nonce", ok: false, detail: "not claimed: denied before the claim" });
    return finish(c);
  }
  // Only the two known-good states pass; anything else a recorded input may hold is a deny.
  const nonceProblem: Problem =
    n.key !== leaf.p.nonce
      ? { code: "REPLAYED", detail: "claimed nonce is not the artifact's" }
      : n.local === "consumed"
        ? { code: "REPLAYED", detail: "nonce already consumed on this gateway" }
        : n.cluster === "taken"
          ? { code: "REPLAYED", detail: "nonce already claimed in the cluster" }
          : n.cluster === "unavailable"
            ? { code: "GOVERNANCE_UNAVAILABLE", detail: "nonce store unavailable" }
            : n.cluster === "not-attempted"
              ? { code: "GOVERNANCE_UNAVAILABLE", detail: "nonce not claimed" }
              : n.local !== "fresh" || n.cluster !== "claimed"
                ? { code: "GOVERNANCE_UNAVAILABLE", detail: "nonce claim state is malformed" }
                : undefined;
  c.record("nonce", nonceProblem);
  // The gateway claims the task id only once the nonce is won: unclaimed after a lost nonce is
  // a consequence (no code of its own), unclaimed after a won one a governance failure.
  if (taskUnclaimed) {
    if (nonceProblem !== undefined) c.list.push({ check: "task", ok: false, detail: "not claimed: the nonce was not won" });
    else c.fail("task", "GOVERNANCE_UNAVAILABLE", "task id not claimed");
  }
  return finish(c);
}

const CLAIM_LOCAL: ReadonlySet<unknown> = new Set(["fresh", "decided"]);
const CLAIM_CLUSTER: ReadonlySet<unknown> = new Set(["claimed", "taken", "unavailable", "not-attempted"]);

/** The input's task claim: absent (a log from before claims), well-formed, or "malformed". */
function taskClaimOf(input: DecisionInput): TaskClaimState | undefined | "malformed" {
  const t: unknown = input.taskClaim;
  if (t === undefined) return undefined;
  if (typeof t !== "object" || t === null || Array.isArray(t)) return "malformed";
  const o = t as Record<string, unknown>;
  if (typeof o["taskId"] !== "string" || !CLAIM_LOCAL.has(o["local"]) || !CLAIM_CLUSTER.has(o["cluster"])) return "malformed";
  return t as TaskClaimState;
}

const isFiniteNumber = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);

/**
 * Why the gateway's own inputs to a decision (clock, limits, health) cannot be used, if they
 * cannot: every bound below is a comparison, and a comparison with NaN, undefined or a string
 * is false, which would wave a check through. So they are checked, not trusted (replay feeds
 * decide what a log recorded).
 */
function gatewayInputProblem(input: DecisionInput): string | undefined {
  const { health, now, limits } = input as unknown as { health?: Partial<Record<keyof GovernanceHealth, unknown>>; now?: unknown; limits?: Partial<Record<keyof DecisionLimits, unknown>> };
  if (!isFiniteNumber(now)) return "clock reading is not a number";
  if (typeof limits !== "object" || limits === null) return "limits missing";
  for (const k of ["maxSkewMs", "maxDepth", "maxFeedAgeMs", "maxRequestAgeMs"] as const) {
    const v = limits[k];
    if (!isFiniteNumber(v) || v < 0) return `limit ${k} is not a number ≥ 0`;
  }
  if (typeof health !== "object" || health === null) return "health missing";
  if (typeof health.busConnected !== "boolean" || typeof health.auditWritable !== "boolean") return "health flags are not booleans";
  if (health.revocationFeedAt !== null && !isFiniteNumber(health.revocationFeedAt)) return "revocation feed time is neither null nor a number";
  const missing = health.revocationsMissing;
  if (missing !== undefined && !(Number.isSafeInteger(missing) && (missing as number) >= 0)) return "missing-revocation count is not an integer ≥ 0";
  return undefined;
}

function governanceProblem(input: DecisionInput, trust: TrustView): Problem {
  const malformed = gatewayInputProblem(input);
  if (malformed !== undefined) return { code: "GOVERNANCE_UNAVAILABLE", detail: `gateway inputs malformed: ${malformed}` };
  const { health, now, limits } = input;
  if (!health.busConnected) return { code: "GOVERNANCE_UNAVAILABLE", detail: "bus disconnected" };
  if (!health.auditWritable) return { code: "GOVERNANCE_UNAVAILABLE", detail: "audit store not writable" };
  if (health.revocationFeedAt === null) return { code: "GOVERNANCE_UNAVAILABLE", detail: "no revocation feed heartbeat yet" };
  const age = now - health.revocationFeedAt;
  if (age > limits.maxFeedAgeMs) return { code: "GOVERNANCE_UNAVAILABLE", detail: `revocation feed stale (${age} ms)` };
  if (age < -limits.maxSkewMs) return { code: "GOVERNANCE_UNAVAILABLE", detail: "revocation heartbeat from the future" };
  const missing = health.revocationsMissing ?? 0;
  if (missing > 0) return { code: "GOVERNANCE_UNAVAILABLE", detail: `revocation feed incomplete: ${missing} revocation(s) announced by authority heartbeats have not arrived` };
  if (trust.policy === null) return { code: "GOVERNANCE_UNAVAILABLE", detail: "active policy unknown" };
  return undefined;
}

function validityProblem(chain: Parsed<ArtifactPayload>[], createdAt: number, now: number, skew: number, maxAge: number, notAfter: number | undefined): Problem {
  for (const [i, a] of chain.entries()) {
    const v = a.p.validity;
    if (v.notBefore >= v.expiresAt) return { code: "EXPIRED", detail: `artifact[${i}] has an empty validity window` };
    if (now + skew < v.notBefore) return { code: "NOT_YET_VALID", detail: `artifact[${i}] not valid before ${v.notBefore}` };
    if (now - skew >= v.expiresAt) return { code: "EXPIRED", detail: `artifact[${i}] expired at ${v.expiresAt}` };
  }
  if (createdAt > now + skew) return { code: "NOT_YET_VALID", detail: "request created in the future" };
  if (now - createdAt > maxAge) return { code: "EXPIRED", detail: `request older than ${maxAge} ms` };
  // No skew allowance here: the submitter allows for skew when it concludes from the deadline
  // (runtime/client.ts), and a gateway must never allow past it by its own clock.
  if (notAfter !== undefined && now > notAfter) return { code: "EXPIRED", detail: `request past its decision deadline ${notAfter}` };
  return undefined;
}

function delegationProblem(chain: Parsed<ArtifactPayload>[], maxDepth: number): Problem {
  const ids = new Set<string>();
  for (const [i, a] of chain.entries()) {
    if (ids.has(a.id)) return { code: "LINEAGE_BROKEN", detail: `artifact[${i}] repeats an ancestor (cycle)` };
    ids.add(a.id);
    if (a.p.depth !== i) return { code: "LINEAGE_BROKEN", detail: `artifact[${i}] claims depth ${a.p.depth}` };
    if (i === 0) {
      if (a.p.parent !== undefined) return { code: "LINEAGE_BROKEN", detail: "root artifact names a parent: chain incomplete" };
      continue;
    }
    const parent = chain[i - 1]!;
    if (a.p.parent !== parent.id) return { code: "LINEAGE_BROKEN", detail: `artifact[${i}] does not name artifact[${i - 1}] as parent` };
    if (a.p.issuer !== parent.p.holder) return { code: "LINEAGE_BROKEN", detail: `artifact[${i}] not issued by its parent's holder` };
    const why = wideningReason(parent.p, a.p);
    if (why !== undefined) return { code: "LINEAGE_BROKEN", detail: `artifact[${i}] widens its parent: ${why}` };
  }
  if (chain.length - 1 > maxDepth) return { code: "LINEAGE_BROKEN", detail: `delegation depth ${chain.length - 1} over ${maxDepth}` };
  return undefined;
}

function lineageProblem(
  chain: Parsed<ArtifactPayload>[],
  lineage: Parsed<LineagePayload>[],
  r: SignedRequest["payload"],
  trust: TrustView,
  now: number,
  skew: number,
): Problem {
  if (lineage.length !== chain.length) {
    return { code: "LINEAGE_BROKEN", detail: `${lineage.length} lineage events for a chain of ${chain.length}` };
  }
  const tasks = new Set<string>();
  for (const [i, l] of lineage.entries()) {
    const e = l.p;
    const art = chain[i]!;
    if (tasks.has(e.childTaskId)) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] repeats a task (cycle)` };
    tasks.add(e.childTaskId);
    if (e.childArtifactId !== art.id) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] names another artifact` };
    if (e.emittedAt > now + skew) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] emitted in the future` };
    if (i === 0) {
      if (e.type !== "origin") return { code: "LINEAGE_BROKEN", detail: "lineage does not start at an origin" };
      if (!trust.isAuthority(e.signer)) return { code: "LINEAGE_BROKEN", detail: "origin not signed by a trusted authority" };
      continue;
    }
    if (e.type !== "spawn") return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] is not a spawn event` };
    const prev = lineage[i - 1]!.p;
    const parentArt = chain[i - 1]!;
    if (!trust.isGateway(e.signer)) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] not signed by a trusted gateway` };
    if (e.parentTaskId !== prev.childTaskId) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] splices in another parent task` };
    if (e.parentArtifactId !== parentArt.id) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] names another parent artifact` };
    // The parent could only spawn while its own authorization was in force.
    const pv = parentArt.p.validity;
    if (e.emittedAt < pv.notBefore || e.emittedAt >= pv.expiresAt) {
      return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] emitted outside the parent's validity` };
    }
    if (e.emittedAt < prev.emittedAt) return { code: "LINEAGE_BROKEN", detail: `lineage[${i}] precedes its parent's lineage` };
  }
  const last = lineage[lineage.length - 1]!.p;
  if (last.childTaskId !== r.taskId) return { code: "LINEAGE_BROKEN", detail: "lineage ends at another task" };
  const expectedParent = last.type === "spawn" ? last.parentTaskId : undefined;
  if (r.parentTaskId !== expectedParent) return { code: "LINEAGE_BROKEN", detail: "request's parentTaskId disagrees with its lineage" };
  return undefined;
}

function revocationProblem(
  chain: Parsed<ArtifactPayload>[],
  lineage: Parsed<LineagePayload>[],
  r: SignedRequest["payload"],
  trust: TrustView,
): Problem {
  for (const [i, a] of chain.entries()) {
    // Revoking an ancestor revokes every descendant: the whole chain is checked.
    if (trust.isRevokedArtifact(a.id)) return { code: "REVOKED", detail: `artifact[${i}] is revoked` };
    if (trust.isRevokedKey(a.p.issuer)) return { code: "REVOKED", detail: `artifact[${i}] issuer key is revoked` };
    if (trust.isRevokedKey(a.p.holder)) return { code: "REVOKED", detail: `artifact[${i}] holder key is revoked` };
  }
  if (trust.isRevokedKey(r.agent)) return { code: "REVOKED", detail: "agent key is revoked" };
  for (const [i, l] of lineage.entries()) if (trust.isRevokedKey(l.p.signer)) return { code: "REVOKED", detail: `lineage[${i}] signer key is revoked` };
  return undefined;
}

/** True for a decision input's trust given by reference to the log (core/types TrustFromLog). */
export function isTrustFromLog(t: unknown): boolean {
  if (typeof t !== "object" || t === null || Array.isArray(t)) return false;
  const keys = Object.keys(t);
  return keys.length === 1 && keys[0] === "source" && (t as { source?: unknown }).source === "log";
}

/** The trust `decide` judges on, or why there is none (a GOVERNANCE_UNAVAILABLE detail). */
function trustViewOf(recorded: DecisionInput["trust"], given: TrustView | undefined): TrustView | string {
  if (isTrustFromLog(recorded)) return given ?? "decision input refers to the log's trust state, and none was given";
  if (given !== undefined) return "decision input carries a trust snapshot and was given another trust state";
  return snapshotView(recorded as TrustSnapshot);
}

// A snapshot's lists are scanned, as they always were: snapshots are what older logs recorded
// and what tests build, not the gateway's or the auditor's path (they pass a TrustView). A list
// that is not an array throws here, inside decide, and so denies (GOVERNANCE_UNAVAILABLE).
// Policy: checked with Array.isArray, not left to `.includes`: a string has `.includes` too, and
// a revocation list recorded as "" would read "not revoked", an authority list as a substring.
function snapshotView(t: TrustSnapshot): TrustView {
  const list = (name: "authorities" | "gateways" | "revokedArtifacts" | "revokedKeys"): readonly unknown[] => {
    const l: unknown = t[name];
    if (!Array.isArray(l)) throw new TypeError(`trust snapshot: ${name} is not a list`);
    return l;
  };
  return {
    policy: t.policy,
    isAuthority: (k) => list("authorities").includes(k),
    isGateway: (k) => list("gateways").includes(k),
    isRevokedArtifact: (id) => list("revokedArtifacts").includes(id),
    isRevokedKey: (k) => list("revokedKeys").includes(k),
  };
}

function environmentProblem(chain: Parsed<ArtifactPayload>[], input: DecisionInput): Problem {
  const env = input.environment;
  for (const [i, a] of chain.entries()) {
    const b = a.p.bindings;
    if (b.gateways && !b.gateways.includes(env.gatewayId)) return { code: "ENVIRONMENT_MISMATCH", detail: `artifact[${i}] not bound to gateway ${env.gatewayId}` };
    if (b.agentCodeDigest !== undefined && b.agentCodeDigest !== env.agentCodeDigest) {
      return { code: "ENVIRONMENT_MISMATCH", detail: `artifact[${i}] agent code digest differs from the measured one` };
    }
    for (const [k, v] of Object.entries(b.environment ?? {})) {
      if (!Object.hasOwn(env.attributes, k) || env.attributes[k] !== v) {
        return { code: "ENVIRONMENT_MISMATCH", detail: `artifact[${i}] binds ${k}=${v}, measured ${env.attributes[k] ?? "(none)"}` };
      }
    }
  }
  return undefined;
}

function policyProblem(chain: Parsed<ArtifactPayload>[], input: DecisionInput, trust: TrustView, evaluate: PolicyEvaluator): Problem {
  const active = trust.policy;
  if (active === null) return { code: "GOVERNANCE_UNAVAILABLE", detail: "active policy unknown" };
  const r = (input.request as SignedRequest).payload;
  for (const [i, a] of chain.entries()) {
    if (a.p.policy.digest !== active.digest) return { code: "POLICY_MISMATCH", detail: `artifact[${i}] issued under another policy digest` };
    if (!scopeAllows(a.p.scope, r.action, r.resource)) {
      return { code: "POLICY_MISMATCH", detail: `${r.action} on ${r.resource} outside artifact[${i}] scope` };
    }
    const v = constraintViolation(a.p.scope, input.args);
    if (v !== undefined) return { code: "POLICY_MISMATCH", detail: `artifact[${i}]: ${v}` };
  }
  const env = input.environment;
  const result = evaluate(active.document, active.digest, {
    principal: r.agent,
    action: r.action,
    resource: r.resource,
    context: {
      args: input.args as PolicyRequest["context"][string],
      // Attributes first so a measured attribute can never shadow the gateway id or code digest.
      environment: { ...env.attributes, gatewayId: env.gatewayId, agentCodeDigest: env.agentCodeDigest ?? "" },
      lineage: { depth: chain.length - 1 },
      time: input.now,
    },
  });
  if (result.decision !== "allow") {
    const why = result.errors.length > 0 ? `cedar errors: ${result.errors.join("; ")}` : "cedar policy does not permit the request";
    return { code: "POLICY_MISMATCH", detail: why };
  }
  return undefined;
}
