// The auditor's own memory of every allow in a log, never windowed.
//
// The fold forgets a spent nonce and a finished task id a window of entries after it (fold.ts
// FOLD_WINDOW): the gateway's memory must stay flat, and the KV's create-only claims keep them
// cluster-wide for good. But the KV claim a decision records ("claimed") is the gateway's word,
// not in the log, and whoever writes the log decides how fast the window passes (any trust,
// revocation, decision or outcome record is an entry). So an auditor holding only the fold would
// accept one single-use nonce, or one task id, allowed twice a window apart. Replay keeps this
// history beside the fold: it costs a string or two per allow (about 250 bytes each in V8, so
// some 250 MB for a log of a million allows, against the fold's own window of state), which an
// auditor's one pass can afford and a long-lived gateway could not.
//
// It also answers for spawn attestations: a spawn lineage event naming this log's gateway says
// "the parent task was executing here under the allow whose leaf hash is parentDecisionId", and
// this log is where that is true or not.
import type { JsonValue } from "../canonical/jcs.ts";

/** The first allow of a task id in the log. */
export interface AllowRef {
  readonly seq: number;
  /** base64url leaf hash of the allow record: the decision id a spawn attestation names. */
  readonly leaf: string;
  /** The leaf artifact's id as the signed request names it (decide allows only when they agree). */
  readonly artifactId: string | undefined;
}

export type ReuseProblem = { readonly kind: "NONCE_REUSED" | "TASK_REUSED"; readonly detail: string };

const isObj = (v: unknown): v is Record<string, JsonValue> => typeof v === "object" && v !== null && !Array.isArray(v);

/** The nonce key a decision input names, if it names one. */
function nonceKeyOf(input: JsonValue): string | undefined {
  const n = isObj(input) ? input["nonce"] : undefined;
  return isObj(n) && typeof n["key"] === "string" && n["key"] !== "" ? n["key"] : undefined;
}

/** The request's own task id and artifact id, where the recorded input holds them. */
function requestOf(input: JsonValue): { taskId?: string; artifactId?: string } {
  const r = isObj(input) ? input["request"] : undefined;
  const p = isObj(r) ? r["payload"] : undefined;
  if (!isObj(p)) return {};
  return {
    ...(typeof p["taskId"] === "string" ? { taskId: p["taskId"] } : {}),
    ...(typeof p["artifactId"] === "string" ? { artifactId: p["artifactId"] } : {}),
  };
}

export class AllowHistory {
  readonly #tasks = new Map<string, AllowRef>();
  /** Nonce key → seq of the allow that first spent it. */
  readonly #nonces = new Map<string, number>();

  /**
   * Findings for an allow at `seq` filed under `taskId`, before it is added: a nonce or a task id
   * an earlier allow of this log already took. Reported whatever the fold still remembers (within
   * the window the claim checks say so too, as NONCE_STATE or TASK_STATE): this is the fact,
   * those are the gateway's claims about it.
   */
  problems(taskId: string, input: JsonValue): ReuseProblem[] {
    const out: ReuseProblem[] = [];
    const nonce = nonceKeyOf(input);
    const spent = nonce === undefined ? undefined : this.#nonces.get(nonce);
    if (spent !== undefined) out.push({ kind: "NONCE_REUSED", detail: `nonce ${nonce} was already spent by the allow at seq ${spent}` });
    const ids = new Set([taskId, requestOf(input).taskId ?? taskId]);
    for (const id of ids) {
      const first = this.#tasks.get(id);
      if (first !== undefined) out.push({ kind: "TASK_REUSED", detail: `task ${id} was already allowed at seq ${first.seq}` });
    }
    return out;
  }

  /** Remember an allow (the first one of a task id and of a nonce stays). */
  add(seq: number, taskId: string, leaf: string, input: JsonValue): void {
    const nonce = nonceKeyOf(input);
    if (nonce !== undefined && !this.#nonces.has(nonce)) this.#nonces.set(nonce, seq);
    const req = requestOf(input);
    const ref: AllowRef = { seq, leaf, artifactId: req.artifactId };
    if (!this.#tasks.has(taskId)) this.#tasks.set(taskId, ref);
    // An allow filed under another id than its request's (TASK_ID_MISMATCH) spent both.
    if (req.taskId !== undefined && !this.#tasks.has(req.taskId)) this.#tasks.set(req.taskId, ref);
  }

  /** The first allow of a task id in the log so far. */
  allowOf(taskId: string): AllowRef | undefined {
    return this.#tasks.get(taskId);
  }
}

/** A spawn lineage event as an allow's input carries it (fields that are not strings are undefined). */
export interface SpawnClaim {
  readonly index: number;
  readonly signer: string | undefined;
  readonly gatewayId: string | undefined;
  readonly parentTaskId: string | undefined;
  readonly parentDecisionId: string | undefined;
  readonly parentArtifactId: string | undefined;
}

const str = (v: JsonValue | undefined): string | undefined => (typeof v === "string" ? v : undefined);

/** The spawn events in a decision input's lineage (attacker bytes: anything else is skipped). */
export function spawnClaimsOf(input: JsonValue): SpawnClaim[] {
  const lineage = isObj(input) ? input["lineage"] : undefined;
  if (!Array.isArray(lineage)) return [];
  const out: SpawnClaim[] = [];
  lineage.forEach((l, index) => {
    const p = isObj(l) ? l["payload"] : undefined;
    if (!isObj(p) || p["type"] !== "spawn") return;
    out.push({
      index,
      signer: str(p["signer"]),
      gatewayId: str(p["gatewayId"]),
      parentTaskId: str(p["parentTaskId"]),
      parentDecisionId: str(p["parentDecisionId"]),
      parentArtifactId: str(p["parentArtifactId"]),
    });
  });
  return out;
}

/**
 * Why a spawn attestation naming this log's gateway is not borne out by the log, if it is not:
 * its parent task must have an allow earlier in this log, that allow's leaf hash must be the
 * decision id it names, and its leaf artifact the parent artifact it names. `history` holds the
 * allows before the child's decision (a parent spawns only while executing, after its allow).
 */
export function spawnProblem(s: SpawnClaim, childSeq: number, history: AllowHistory): string | undefined {
  const at = `lineage[${s.index}] (spawn attested by this gateway)`;
  if (s.parentTaskId === undefined) return `${at} names no parent task`;
  const parent = history.allowOf(s.parentTaskId);
  if (parent === undefined || parent.seq >= childSeq) return `${at}: parent task ${s.parentTaskId} has no earlier allow in this log`;
  if (s.parentDecisionId !== parent.leaf) return `${at} names decision ${String(s.parentDecisionId)}; the allow of ${s.parentTaskId} at seq ${parent.seq} is ${parent.leaf}`;
  if (s.parentArtifactId !== parent.artifactId) return `${at} names parent artifact ${String(s.parentArtifactId)}; the allow of ${s.parentTaskId} at seq ${parent.seq} ran on ${String(parent.artifactId)}`;
  return undefined;
}
