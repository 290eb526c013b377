// The refusal ctx.spawn and ctx.attest give a handler: a stable code to branch on, not a message
// to parse. The message keeps its `LINEAGE_BROKEN: ` prefix for callers that matched on it.

/** Why a gateway refused to sign a spawn lineage for a child. */
export type SpawnRefusal =
  /** The child's task id is not in the parent's namespace (childTaskId(parentTaskId, label)). */
  | "child-id-not-in-namespace"
  /** The parent's handler has returned (or timed out): it spawns nothing more. */
  | "parent-not-executing";

/**
 * Thrown (ctx.attest) or rejected with (ctx.spawn) when the gateway refuses to sign a child's
 * spawn lineage. Nothing was signed or submitted. `code` is the denial code a child with such
 * a lineage would get (DESIGN §3); `reason` says which rule refused it.
 */
export class SpawnRefusedError extends Error {
  override readonly name = "SpawnRefusedError";
  readonly code = "LINEAGE_BROKEN" as const;
  constructor(
    readonly reason: SpawnRefusal,
    detail: string,
  ) {
    super(`LINEAGE_BROKEN: ${detail}`);
  }
}
