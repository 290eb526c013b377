// The audit store's error: one class, a stable upper-case code per failure (scripts and the
// gateway's health check match on codes, never on messages).
export type AuditStoreErrorCode =
  | "AUDIT_INVALID_ENTRY" // caller bug: entry not I-JSON or not a known record shape
  | "AUDIT_WRITE_FAILED" // the synced batch holding this append failed
  | "AUDIT_UNWRITABLE" // an earlier write failed: the store refuses writes until reopened
  | "AUDIT_CLOSED" // close() has begun: nothing new is accepted, only what was queued is written
  | "AUDIT_CORRUPT" // the stored log contradicts itself on open
  | "AUDIT_UNREADABLE" // the stored log could not be read (I/O): it cannot vouch for itself
  | "AUDIT_FORMAT" // the log is stored in an on-disk layout this version does not read
  | "AUDIT_NOT_FOUND"
  | "AUDIT_ORIGIN_MISMATCH" // opened under another origin than the one its checkpoints name
  | "AUDIT_STATE_HANDED_OFF" // the folded state now belongs to its owner (handOffState)
  | "AUDIT_SNAPSHOT_DIVERGED"; // the owner's captured state folded an entry the log refused: never written as the log's fold

export class AuditStoreError extends Error {
  override readonly name = "AuditStoreError";
  readonly code: AuditStoreErrorCode;
  constructor(code: AuditStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }
}
