// A witness of one gateway's audit log (DESIGN §5): it keeps the signed checkpoints the gateway
// published on NATS (failclosed.audit.checkpoint.<gatewayId>), outside the gateway's reach, so
// that an auditor can later hold the log to them (`audit replay --checkpoints`): a truncated
// tail, a rewritten tail or a forked log no longer reproduces a root the witness holds. The
// witness itself checks what it can without the log:
//   - every checkpoint is well formed, of this origin, and signed by a trusted gateway key;
//   - no two trusted checkpoints of the origin name one size with different roots (a fork:
//     the gateway, or whoever holds its key, showed two histories), counting those the witness
//     already held from earlier runs, so a log rewritten after being witnessed shows even if the
//     stream was purged and refilled.
// A fork shows here only where two checkpoints name one size; one between different sizes needs
// the tree itself: replay checks consistency between successive sizes with proofs built from
// the stored log, for every checkpoint the witness kept.
// Pure: the NATS side is in nats/checkpoint-feed.ts, the command in audit/cli.ts.
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import { MAX_MESSAGE_BYTES } from "../nats/contract.ts";
import { checkpointShapeProblem, type CheckpointPayload } from "./records.ts";

export { checkpointShapeProblem };

export type WitnessFindingKind =
  | "MALFORMED" // not JSON, not I-JSON, oversized, or not a signed checkpoint
  | "WRONG_ORIGIN" // a checkpoint of another log on this log's subject (or in this log's file)
  | "BAD_SIGNATURE" // not signed by a trusted gateway key
  | "FORK"; // two trusted checkpoints of this log name one size with different roots

export interface WitnessFinding {
  readonly kind: WitnessFindingKind;
  /** Where it came from: "stream seq N" or "held #N" (the witness file's entry). */
  readonly where: string;
  readonly detail: string;
  /**
   * For a FORK, both signed checkpoints, the one held first: together, signed by one trusted
   * key, they prove the log was shown two ways. Keep the report.
   */
  readonly evidence?: readonly [Signed<CheckpointPayload>, Signed<CheckpointPayload>];
}

export interface WitnessInput {
  /** Raw message bytes and the stream sequence it was stored at. */
  readonly bytes: Uint8Array;
  readonly streamSeq: number;
}

export interface WitnessResult {
  /** Every trusted checkpoint of the origin, held before or new, one per size, by size. */
  readonly checkpoints: Signed<CheckpointPayload>[];
  /** How many of them this run added. */
  readonly added: number;
  readonly findings: WitnessFinding[];
}

/**
 * Merge checkpoints read from the stream into those already held, checking each. `held` are
 * re-checked too (the witness file is input like any other). Never throws.
 */
export function witness(held: readonly unknown[], incoming: readonly WitnessInput[], o: { readonly origin: string; readonly gatewayKeys: readonly string[] }): WitnessResult {
  // A key that does not decode trusts nothing (the CLI refuses one as a usage error first).
  const keys = o.gatewayKeys.map((k) => fromB64u(k, 32)).filter((k): k is Uint8Array => k !== undefined);
  const findings: WitnessFinding[] = [];
  const bySize = new Map<number, { cp: Signed<CheckpointPayload>; where: string }>();
  let added = 0;

  const take = (v: unknown, where: string, isNew: boolean): void => {
    const shape = checkpointShapeProblem(v);
    if (shape !== undefined) {
      findings.push({ kind: "MALFORMED", where, detail: shape });
      return;
    }
    const cp = v as Signed<CheckpointPayload>;
    if (cp.payload.origin !== o.origin) {
      findings.push({ kind: "WRONG_ORIGIN", where, detail: `checkpoint of ${JSON.stringify(cp.payload.origin)}, not ${JSON.stringify(o.origin)}` });
      return;
    }
    if (!keys.some((k) => verifySigned("checkpoint", cp, k))) {
      findings.push({ kind: "BAD_SIGNATURE", where, detail: `size ${cp.payload.size}: not signed by a trusted gateway key` });
      return;
    }
    const seen = bySize.get(cp.payload.size);
    if (seen !== undefined) {
      if (seen.cp.payload.root !== cp.payload.root) {
        findings.push({ kind: "FORK", where, detail: `size ${cp.payload.size} has root ${cp.payload.root} here and ${seen.cp.payload.root} at ${seen.where}`, evidence: [seen.cp, cp] });
      }
      return; // the first one held stays (a re-publication of the same checkpoint is not news)
    }
    bySize.set(cp.payload.size, { cp, where });
    if (isNew) added++;
  };

  held.forEach((v, i) => take(v, `held #${i}`, false));
  for (const m of incoming) {
    const where = `stream seq ${m.streamSeq}`;
    if (m.bytes.byteLength > MAX_MESSAGE_BYTES) {
      findings.push({ kind: "MALFORMED", where, detail: `${m.bytes.byteLength} bytes, over ${MAX_MESSAGE_BYTES}` });
      continue;
    }
    let v: unknown;
    try {
      v = parseStrict(m.bytes, { maxBytes: MAX_MESSAGE_BYTES, maxDepth: 8 });
    } catch (e) {
      findings.push({ kind: "MALFORMED", where, detail: e instanceof Error ? e.message : String(e) });
      continue;
    }
    take(v, where, true);
  }

  // (Times are not compared: a gateway's clock may step back without anything being wrong.)
  const checkpoints = [...bySize.values()].sort((a, b) => a.cp.payload.size - b.cp.payload.size).map((c) => c.cp);
  return { checkpoints, added, findings };
}
