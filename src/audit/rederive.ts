// Re-derivation of what a recorded decision claimed about log-derived state (DESIGN §5). The
// decision input carries a trust snapshot and a nonce state; both must be exactly what the fold
// of the log says at that point. A recorded input that says "not revoked" or "nonce unused"
// when the log says otherwise is a divergence, whatever verdict `decide` gives on it.
import { canonicalize, type JsonValue } from "../canonical/jcs.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { contentId, verifySigned, type Signed } from "../crypto/signing.ts";
import { taskDecided, type AuditState } from "./fold.ts";
import type { AuditRecord, TrustChange } from "./records.ts";
import { judgeActivation } from "../policy/activation.ts";
import { isTrustFromLog } from "./trust-view.ts";
import { assertNever } from "../infra/assert-never.ts";

export type ClaimProblem = { readonly kind: "TRUST_STATE" | "NONCE_STATE" | "TASK_STATE" | "EVIDENCE_MISSING" | "INPUT_MALFORMED"; readonly detail: string };

const isObj = (v: unknown): v is Record<string, JsonValue> => typeof v === "object" && v !== null && !Array.isArray(v);

function setDiff(label: string, claimed: unknown, actual: ReadonlySet<string>): string | undefined {
  if (!Array.isArray(claimed) || !claimed.every((x) => typeof x === "string")) return `${label} is not a list of strings`;
  const c = new Set(claimed);
  const missing = [...actual].filter((x) => !c.has(x));
  const extra = [...c].filter((x) => !actual.has(x));
  if (missing.length === 0 && extra.length === 0) return undefined;
  const parts: string[] = [];
  if (missing.length > 0) parts.push(`omits ${missing.join(",")}`);
  if (extra.length > 0) parts.push(`adds ${extra.join(",")}`);
  return `${label} ${parts.join(" and ")}`;
}

/** Trust and nonce claims of one decision input against the fold before it. */
export function checkDecisionClaims(input: JsonValue, state: AuditState): ClaimProblem[] {
  if (!isObj(input)) return [{ kind: "INPUT_MALFORMED", detail: "decision input is not an object" }];
  const out: ClaimProblem[] = [];
  const trust = input["trust"];
  if (isTrustFromLog(trust)) {
    // By reference: the trust state is the fold itself (trust-view.ts), so there is no claim to
    // compare; replay recomputes the decision on the fold as it stood at this record.
  } else if (!isObj(trust)) {
    out.push({ kind: "INPUT_MALFORMED", detail: "input.trust missing" });
  } else {
    const diffs = [
      setDiff("authorities", trust["authorities"], state.authorities),
      setDiff("gateways", trust["gateways"], state.gateways),
      setDiff("revokedArtifacts", trust["revokedArtifacts"], state.revokedArtifacts),
      setDiff("revokedKeys", trust["revokedKeys"], state.revokedKeys),
    ].filter((d): d is string => d !== undefined);
    const p = trust["policy"];
    const foldPolicy = state.policy === undefined ? null : canonicalize({ digest: state.policy.digest, document: state.policy.document });
    const claimedPolicy = p === null || p === undefined ? null : canonicalize(p);
    if (foldPolicy !== claimedPolicy) diffs.push("active policy differs from the log's");
    for (const d of diffs) out.push({ kind: "TRUST_STATE", detail: d });
  }
  const n = input["nonce"];
  if (!isObj(n) || typeof n["key"] !== "string") {
    out.push({ kind: "INPUT_MALFORMED", detail: "input.nonce missing" });
  } else {
    const consumed = state.consumedNonces.has(n["key"]);
    if (n["local"] === "fresh" && consumed) out.push({ kind: "NONCE_STATE", detail: `nonce ${n["key"]} claimed unused but the log already spent it` });
    if (n["local"] === "consumed" && !consumed) out.push({ kind: "NONCE_STATE", detail: `nonce ${n["key"]} claimed spent but the log never spent it` });
  }
  // Absent in logs from before task-id claims; decide() judges a malformed one.
  const t = input["taskClaim"];
  if (isObj(t) && typeof t["taskId"] === "string") {
    const decided = taskDecided(state, t["taskId"]);
    if (t["local"] === "fresh" && decided) out.push({ kind: "TASK_STATE", detail: `task ${t["taskId"]} claimed undecided but the log already allowed it` });
    if (t["local"] === "decided" && !decided) out.push({ kind: "TASK_STATE", detail: `task ${t["taskId"]} claimed decided but the log never allowed it` });
  }
  return out;
}

/**
 * One execution per task id: an allow for an id the log already allowed is a divergence even
 * in a log from before task claims (an input with a claim is judged by checkDecisionClaims).
 */
export function secondAllowProblem(taskId: string, input: JsonValue, state: AuditState): ClaimProblem | undefined {
  if (isObj(input) && input["taskClaim"] !== undefined) return undefined;
  return taskDecided(state, taskId) ? { kind: "TASK_STATE", detail: `second allow for task ${taskId}` } : undefined;
}

/**
 * Why an outcome record shows an execution the log does not authorize, if it does. The gateway
 * writes an outcome only for a task whose allow it committed: once the handler ran (or was cut
 * off by its timeout), once when it was stopped between commit and execution ("denied before
 * execution"), and at a restart for an allow the process died executing ("interrupted"). Each is
 * `failed` or `succeeded`, and each ends the task: so the task must be `allowed` in the fold just
 * before it. The fold never forgets an allowed task (fold.ts finished(): only settled ones leave
 * the window), so this holds however long the execution took.
 */
export function outcomeProblem(taskId: string, state: Readonly<AuditState>): string | undefined {
  const t = state.tasks.get(taskId);
  if (t === undefined) return `outcome for task ${taskId}, which the log never allowed`;
  switch (t.status) {
    case "allowed":
      return undefined;
    case "evidence":
      return `outcome for task ${taskId}, which has evidence but no decision`;
    case "denied":
      return `outcome for task ${taskId}, which the log denied at seq ${t.decisionSeq ?? t.lastSeq}`;
    case "succeeded":
    case "failed":
      return `second outcome for task ${taskId}, already ${t.status}: one allow, two executions`;
    default:
      return assertNever(t.status, "task status");
  }
}

/**
 * A late outcome (records.ts `late`): how a handler its timeout cut off ended after all. It tells
 * the rest of one execution, so it must follow that task's `failed` outcome, once: `awaiting`
 * holds the tasks whose execution ended failed and has had no late outcome yet (replay.ts), kept
 * apart from the fold, whose window may let the task go meanwhile and where a copy's later deny
 * may stand for the task id (found by review: both hid or faked a second execution).
 */
export function lateOutcomeProblem(taskId: string, awaiting: ReadonlySet<string>): string | undefined {
  return awaiting.has(taskId) ? undefined : `late outcome for task ${taskId}, which has no failed execution waiting for one: only a timed-out execution has one, once`;
}

/** The error a gateway records for an allow it stopped before running it (gateway.ts recordDenial). */
export const DENIED_BEFORE_EXECUTION = "denied before execution";

/** Evidence recorded per task, by content id of the signed object. */
export class EvidenceIndex {
  readonly #byTask = new Map<string, Set<string>>();

  add(taskId: string, signed: Signed<JsonValue>): void {
    let s = this.#byTask.get(taskId);
    if (s === undefined) this.#byTask.set(taskId, (s = new Set()));
    s.add(contentId(signed));
  }

  /**
   * An allow must rest on evidence the log shows was consumed: the request, every artifact and
   * every lineage event in the input must have been recorded for this task before the decision.
   */
  checkAllow(taskId: string, input: JsonValue): ClaimProblem[] {
    if (!isObj(input)) return [];
    const have = this.#byTask.get(taskId) ?? new Set<string>();
    const out: ClaimProblem[] = [];
    const need: [string, unknown][] = [["request", input["request"]]];
    const chain = input["chain"];
    const lineage = input["lineage"];
    if (Array.isArray(chain)) chain.forEach((a, i) => need.push([`chain[${i}]`, a]));
    if (Array.isArray(lineage)) lineage.forEach((l, i) => need.push([`lineage[${i}]`, l]));
    for (const [label, item] of need) {
      let id: string | undefined;
      try {
        id = contentId(item);
      } catch {
        id = undefined;
      }
      if (id === undefined || !have.has(id)) out.push({ kind: "EVIDENCE_MISSING", detail: `${label} of task ${taskId} was never recorded as evidence` });
    }
    return out;
  }

  /** A decided task's evidence is no longer needed (keeps memory flat on long logs). */
  forget(taskId: string): void {
    this.#byTask.delete(taskId);
  }
}

/** A revocation is in force only if an authority in force signed it. */
export function revocationProblem(r: AuditRecord & { type: "revocation" }, state: AuditState): string | undefined {
  const issuer = r.revocation.payload.issuer;
  if (!state.authorities.has(issuer)) return `revocation issuer ${issuer} is not an authority in the log`;
  const pub = fromB64u(issuer, 32);
  if (pub === undefined || !verifySigned("revocation", r.revocation, pub)) return "revocation signature does not verify";
  return undefined;
}

/**
 * Why a policy activation in the log should not have been taken, if it should not: not signed
 * by an authority the log trusts at that point (or by a key the log revoked), a signature that
 * does not verify, or a version not above the one before it (a rollback, two policies under one
 * version). An unsigned activation is accepted only before the log's first signed one (logs
 * written before policy entries were signed).
 */
export function policyActivationProblem(c: TrustChange & { op: "policy.activate" }, state: AuditState): string | undefined {
  const a = c.activation;
  // The fold holds a floor from the log's first signed activation on.
  if (a === undefined) return state.policyHigh !== undefined ? "an unsigned policy activation after signed ones" : undefined;
  const p = a.payload;
  if (p.policyDigest !== c.policyDigest) return "the activation names another policy";
  const pub = fromB64u(p.issuer, 32);
  if (pub === undefined || !verifySigned("policy", a, pub)) return "policy activation signature does not verify";
  const judged = judgeActivation(p, state.policyHigh, state.policy?.digest, { isAuthority: (k) => state.authorities.has(k), isRevokedKey: (k) => state.revokedKeys.has(k) });
  // The same activation again changes nothing (the gateway does not write one, but it is harmless).
  return judged.take || judged.same ? undefined : judged.why;
}
