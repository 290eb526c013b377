// The on-disk format marker (keys.ts: FORMAT_KEY). Records are never reinterpreted under a
// layout they were not written in: a log in another layout — the earlier one-key-per-record
// layout, a different bundle size, a later version — is refused with AUDIT_FORMAT.
import type { AuditBackend } from "./backend.ts";
import { FORMAT, FORMAT_KEY, legacyRecordRange } from "./keys.ts";
import { AuditStoreError } from "./store-error.ts";

export const FORMAT_MARKER: Uint8Array = new TextEncoder().encode(FORMAT);

const printable = (b: Uint8Array): string => JSON.stringify(Buffer.from(b.subarray(0, 120)).toString("latin1"));

/**
 * Check the marker. Resolves true when the log is in FORMAT, false when the backend is empty
 * (the first commit writes the marker); throws AUDIT_FORMAT otherwise.
 */
export async function checkFormat(backend: AuditBackend): Promise<boolean> {
  const marker = await backend.get(FORMAT_KEY);
  if (marker !== undefined) {
    if (Buffer.from(marker).equals(FORMAT_MARKER)) return true;
    throw new AuditStoreError("AUDIT_FORMAT", `log is stored as ${printable(marker)}; this version reads only ${JSON.stringify(FORMAT)}`);
  }
  for await (const [key] of backend.iterate({ ...legacyRecordRange, limit: 1 })) {
    throw new AuditStoreError("AUDIT_FORMAT", `log holds records in the one-key-per-record layout (${key}) of an earlier version; this version reads only ${JSON.stringify(FORMAT)}`);
  }
  for await (const [key] of backend.iterate({ limit: 1 })) {
    throw new AuditStoreError("AUDIT_FORMAT", `log has keys (${JSON.stringify(key)}) but no format marker ${FORMAT_KEY}`);
  }
  return false;
}
