// The refusal ctx.spawn and ctx.attest give a handler: a stable code to branch on, not a message
// to parse. The message keeps its `LINEAGE_BROKEN: ` prefix for callers that matched on it.

/** Why a gateway refused to sign a spawn lineage for a child. */
export type SpawnRefusal =
  /** The child's task id is not in the parent's namespace (childTaskId(parentTaskId, label)). */
  | "child-id-not-in-namespace"
  /** The parent's handler has returned (or timed out): it spawns nothing more. */
  | "parent-not-executing"
  /** A revocation in force touches the parent (its chain's artifacts, their issuers or holders, its lineage's signers). */
  | "parent-revoked";

/**
 * Thrown (ctx.attest) or rejected with (ctx.spawn) when the gateway refuses to sign a child's
 * spawn lineage. Nothing was signed or submitted. `code` is the denial code a child with such
 * a lineage would get (DESIGN §3): REVOKED for a revoked parent, else LINEAGE_BROKEN; `reason`
 * says which rule refused it. The message starts with the code and a colon.
 */
export class SpawnRefusedError extends Error {
  override readonly name = "SpawnRefusedError";
  readonly code: "LINEAGE_BROKEN" | "REVOKED";
  constructor(
    readonly reason: SpawnRefusal,
    detail: string,
  ) {
    const code = reason === "parent-revoked" ? "REVOKED" : "LINEAGE_BROKEN";
    super(`${code}: ${detail}`);
    this.code = code;
  }
}

/**
 * The reason ctx.signal is aborted with when a revocation touching an executing task arrives
 * (its artifact, a key in its chain or lineage). The handler is told; it is not stopped: an
 * action already under way may still take effect, and its outcome is recorded as it ends.
 */
export class TaskRevokedError extends Error {
  override readonly name = "TaskRevokedError";
  readonly code = "REVOKED" as const;
  constructor(readonly target: string) {
    super(`REVOKED: ${target} was revoked while the task executed`);
  }
}
