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
// A fork shows here only where two checkpoints name one size. One between different sizes (a
// history rewritten below a size the witness held, re-signed with the gateway's key, and grown
// past it) needs the tree: proveChain asks the gateway for RFC 9162 consistency proofs
// (nats/proof-service.ts) and verifies each against the two signed roots, so every checkpoint
// the witness holds is proved to extend the ones before it; replay checks the same with proofs
// built from the stored log. A proof counts, for or against the gateway, only when the key that
// signed the checkpoints signed it too: anyone on the bus can answer a request, and a forged
// proof must no more convict an honest log than pass a rewritten one.
// Pure but for the proof source it is handed: the NATS side is in nats/checkpoint-feed.ts and
// nats/proof-service.ts, the command in audit/cli.ts.
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import { MAX_MESSAGE_BYTES } from "../nats/contract.ts";
import type { SignedConsistencyProof } from "../core/types.ts";
import { checkSignedProof, type AskProof, type ProofAnswer } from "../nats/proof-service.ts";
import { KEPT_PER_KIND } from "./divergences.ts";
import { verifyConsistency } from "./merkle.ts";
import { checkpointShapeProblem, type CheckpointPayload } from "./records.ts";

export { checkpointShapeProblem };

export type WitnessFindingKind =
  | "MALFORMED" // not JSON, not I-JSON, oversized, or not a signed checkpoint
  | "WRONG_ORIGIN" // a checkpoint of another log on this log's subject (or in this log's file)
  | "BAD_SIGNATURE" // not signed by a trusted gateway key
  | "FORK" // two trusted checkpoints of this log name one size with different roots
  | "INCONSISTENT"; // the gateway's own signed proof says a larger checkpoint's log does not extend a smaller one's

export interface WitnessFinding {
  readonly kind: WitnessFindingKind;
  /** Where it came from: "stream seq N" or "held #N" (the witness file's entry). */
  readonly where: string;
  readonly detail: string;
  /**
   * For a FORK, both signed checkpoints, the one held first: together, signed by one trusted
   * key, they prove the log was shown two ways. For INCONSISTENT, the smaller and the larger
   * checkpoint whose consistency the gateway's own proof fails. Keep the report.
   */
  readonly evidence?: readonly [Signed<CheckpointPayload>, Signed<CheckpointPayload>];
  /**
   * For INCONSISTENT, the gateway's reply, signed by the key of the checkpoints: its proof fails
   * against their roots, or the roots it signed are not theirs.
   */
  readonly proof?: SignedConsistencyProof;
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
  /** The sizes of those it added. */
  readonly addedSizes: ReadonlySet<number>;
  /** The first KEPT_PER_KIND of each kind (every FORK), in the order found. */
  readonly findings: WitnessFinding[];
  /** How many there were in all, and how many were counted but not listed. */
  readonly findingCounts: { readonly total: number; readonly omitted: number; readonly byKind: Partial<Record<WitnessFindingKind, number>> };
}

/**
 * Merge checkpoints read from the stream into those already held, checking each. `held` are
 * re-checked too (the witness file is input like any other). Never throws.
 */
export function witness(held: readonly unknown[], incoming: readonly WitnessInput[], o: { readonly origin: string; readonly gatewayKeys: readonly string[] }): WitnessResult {
  const w = witnessMerge(held, o);
  for (const m of incoming) w.add(m);
  return w.result();
}

/**
 * witness(), one message at a time: what a pass holds is the checkpoints kept and the findings
 * listed (both bounded), never the stream's messages, so a flood on the subject costs time, not
 * memory (found by review: a pass held every message of the subject before checking any).
 */
export function witnessMerge(held: readonly unknown[], o: { readonly origin: string; readonly gatewayKeys: readonly string[] }): { add(m: WitnessInput): void; result(): WitnessResult } {
  // A key that does not decode trusts nothing (the CLI refuses one as a usage error first).
  const keys = o.gatewayKeys.map((k) => fromB64u(k, 32)).filter((k): k is Uint8Array => k !== undefined);
  // Policy: bounded, as replay's divergences are: anyone who may publish on the checkpoint subject
  // can add a finding per message, and a flood must not grow the report (and the memory holding
  // it) without limit. Every FORK is kept whatever the number: it is the evidence a witness exists for.
  const findings: WitnessFinding[] = [];
  const byKind: Partial<Record<WitnessFindingKind, number>> = {};
  let total = 0;
  const found = (f: WitnessFinding): void => {
    total++;
    const n = (byKind[f.kind] = (byKind[f.kind] ?? 0) + 1);
    if (n <= KEPT_PER_KIND || f.kind === "FORK") findings.push(f);
  };
  const bySize = new Map<number, { cp: Signed<CheckpointPayload>; where: string }>();
  const addedSizes = new Set<number>();

  const take = (v: unknown, where: string, isNew: boolean): void => {
    const shape = checkpointShapeProblem(v);
    if (shape !== undefined) {
      found({ kind: "MALFORMED", where, detail: shape });
      return;
    }
    const cp = v as Signed<CheckpointPayload>;
    if (cp.payload.origin !== o.origin) {
      found({ kind: "WRONG_ORIGIN", where, detail: `checkpoint of ${JSON.stringify(cp.payload.origin)}, not ${JSON.stringify(o.origin)}` });
      return;
    }
    if (!keys.some((k) => verifySigned("checkpoint", cp, k))) {
      found({ kind: "BAD_SIGNATURE", where, detail: `size ${cp.payload.size}: not signed by a trusted gateway key` });
      return;
    }
    const seen = bySize.get(cp.payload.size);
    if (seen !== undefined) {
      if (seen.cp.payload.root !== cp.payload.root) {
        found({ kind: "FORK", where, detail: `size ${cp.payload.size} has root ${cp.payload.root} here and ${seen.cp.payload.root} at ${seen.where}`, evidence: [seen.cp, cp] });
      }
      return; // the first one held stays (a re-publication of the same checkpoint is not news)
    }
    bySize.set(cp.payload.size, { cp, where });
    if (isNew) addedSizes.add(cp.payload.size);
  };

  held.forEach((v, i) => take(v, `held #${i}`, false));
  const add = (m: WitnessInput): void => {
    const where = `stream seq ${m.streamSeq}`;
    if (m.bytes.byteLength > MAX_MESSAGE_BYTES) {
      found({ kind: "MALFORMED", where, detail: `${m.bytes.byteLength} bytes, over ${MAX_MESSAGE_BYTES}` });
      return;
    }
    let v: unknown;
    try {
      v = parseStrict(m.bytes, { maxBytes: MAX_MESSAGE_BYTES, maxDepth: 8 });
    } catch (e) {
      found({ kind: "MALFORMED", where, detail: e instanceof Error ? e.message : String(e) });
      return;
    }
    take(v, where, true);
  };

  const result = (): WitnessResult => {
    // (Times are not compared: a gateway's clock may step back without anything being wrong.)
    const checkpoints = [...bySize.values()].sort((a, b) => a.cp.payload.size - b.cp.payload.size).map((c) => c.cp);
    return { checkpoints, added: addedSizes.size, addedSizes: new Set(addedSizes), findings: [...findings], findingCounts: { total, omitted: total - findings.length, byKind: { ...byKind } } };
  };
  return { add, result };
}

/** The witness file: the checkpoints held, and how far they are proved to extend each other. */
export interface WitnessFile {
  readonly kind: typeof WITNESS_FILE_KIND;
  readonly origin: string;
  /**
   * Every held checkpoint up to this size (itself one of them, or 0) has been proved consistent
   * with the others: each is a prefix of the next. Above it, not yet.
   */
  readonly consistentThrough: number;
  readonly checkpoints: readonly Signed<CheckpointPayload>[];
}

export const WITNESS_FILE_KIND = "failclosed/witness/v1";

/**
 * What a witness file holds, or why it is not one. The first format, a bare JSON array of
 * checkpoints, reads as nothing proved yet.
 */
export function readWitnessFile(v: unknown): { readonly held: readonly unknown[]; readonly consistentThrough: number; readonly origin?: string } | { readonly problem: string } {
  if (Array.isArray(v)) return { held: v, consistentThrough: 0 };
  if (typeof v !== "object" || v === null) return { problem: "not a witness file (expected a JSON object or array)" };
  const o = v as Record<string, unknown>;
  if (Object.keys(o).sort().join(",") !== "checkpoints,consistentThrough,kind,origin" || o["kind"] !== WITNESS_FILE_KIND) return { problem: `not a ${WITNESS_FILE_KIND} file` };
  const through = o["consistentThrough"];
  if (typeof through !== "number" || !Number.isSafeInteger(through) || through < 0) return { problem: "consistentThrough is not a size" };
  if (!Array.isArray(o["checkpoints"]) || typeof o["origin"] !== "string") return { problem: "checkpoints or origin missing" };
  return { held: o["checkpoints"], consistentThrough: through, origin: o["origin"] };
}

export interface ChainResult {
  /** The new watermark: every checkpoint up to this size is proved consistent with the others. */
  readonly consistentThrough: number;
  /** Proofs asked for and verified. */
  readonly proved: number;
  /** Held checkpoints not (yet) proved: above the watermark, or added below it unproved. */
  readonly unproven: number;
  /** Why proving stopped short, when the gateway did not answer (not a finding: ask again). */
  readonly stopped?: string;
  readonly findings: WitnessFinding[];
}

/**
 * Prove the held checkpoints (trusted, one per size, by size: witness().checkpoints) consistent,
 * from the watermark of an earlier run: each checkpoint above it must be proved to extend the
 * one before it, and each added below it to be a prefix of the next (proved) one, which makes it
 * consistent with all of them. `prove` fetches a proof (nats/proof-service.ts), asking for one
 * signed by a key (of `gatewayKeys`) that signed one of the held checkpoints; each reply is checked
 * again here, signature and all, then verified against the two signed roots, so a lying or
 * broken proof source can neither pass a rewritten log nor convict an honest one. A proof the
 * gateway signed that fails is a finding; no answer, or one that proves nothing (unsigned,
 * signed by another key, for other sizes), stops the walk where it stands (the watermark stays
 * below what was not proved, so the next run asks again). Never throws on what the source
 * hands back; `gatewayKeys` missing is a TypeError.
 */
export async function proveChain(
  checkpoints: readonly Signed<CheckpointPayload>[],
  consistentThrough: number,
  addedSizes: ReadonlySet<number>,
  prove: AskProof,
  gatewayKeys: readonly string[],
): Promise<ChainResult> {
  const given: unknown = gatewayKeys; // a caller from before the keys were needed passes none
  if (!Array.isArray(given)) throw new TypeError("proveChain needs the gateway keys (key ids) its checkpoints are signed with");
  const findings: WitnessFinding[] = [];
  let proved = 0;
  const keys = gatewayKeys.flatMap((k) => {
    const b = fromB64u(k, 32);
    return b === undefined ? [] : [{ id: k, key: b }];
  });
  const signedBy = new Map<Signed<CheckpointPayload>, string[]>();
  const signersOf = (cp: Signed<CheckpointPayload>): string[] => {
    let s = signedBy.get(cp);
    if (s === undefined) signedBy.set(cp, (s = keys.filter((k) => verifySigned("checkpoint", cp, k.key)).map((k) => k.id)));
    return s;
  };
  let origin: string[] | undefined;
  const originSigners = (): string[] => (origin ??= [...new Set(checkpoints.flatMap(signersOf))]);
  // "ok", "bad" (a finding), or no answer (why).
  type Checked = { readonly r: "ok" } | { readonly r: "bad" } | { readonly r: "none"; readonly why: string };
  const check = async (a: Signed<CheckpointPayload>, b: Signed<CheckpointPayload>): Promise<Checked> => {
    const m = a.payload.size;
    const n = b.payload.size;
    // Policy: the gateway speaks for its log with a key that signed one of the checkpoints held
    // for it (this origin's): after a key rotation it signs with the new key, also for two
    // checkpoints the old key signed. No other trusted key (another gateway's) answers for it.
    const signers = originSigners();
    let answer: ProofAnswer;
    try {
      answer = await prove(m, n, signers);
    } catch (e) {
      return { r: "none", why: `no proof: ${e instanceof Error ? e.message : String(e)}` };
    }
    if (!answer.ok) return { r: "none", why: answer.detail };
    const c = checkSignedProof(answer.signed, { origin: b.payload.origin, size1: m, size2: n, signers });
    if (!c.ok) return { r: "none", why: `a reply that proves nothing: ${c.detail}` };
    const reply = c.proof.signed;
    const evidence = [a, b] as const;
    if (reply.payload.root1 !== a.payload.root || reply.payload.root2 !== b.payload.root) {
      findings.push({
        kind: "INCONSISTENT",
        where: `size ${n}`,
        detail: `the gateway's signed proof is for roots ${reply.payload.root1} at size ${m} and ${reply.payload.root2} at size ${n}, but its checkpoints sign ${a.payload.root} and ${b.payload.root}: its log is not the one it checkpointed (history rewritten, or the gateway is broken)`,
        evidence,
        proof: reply,
      });
      return { r: "bad" };
    }
    const v = verifyConsistency(m, n, c.proof.proof, c.proof.root1, c.proof.root2);
    if (v.ok) {
      proved++;
      return { r: "ok" };
    }
    findings.push({
      kind: "INCONSISTENT",
      where: `size ${n}`,
      detail: `the gateway's signed proof that its log of size ${n} (root ${b.payload.root}) extends its log of size ${m} (root ${a.payload.root}) fails (${v.code}): history below size ${m} was rewritten, or the gateway is broken`,
      evidence,
      proof: reply,
    });
    return { r: "bad" };
  };
  // The watermark stands on a checkpoint held before this run; one that names no such size is
  // taken down to the largest below it (what is above was not proved to anything held). One
  // added this run is never an anchor: it is proved like the others.
  const cps = [...checkpoints].sort((a, b) => a.payload.size - b.payload.size);
  let anchor = -1;
  for (let i = 0; i < cps.length && cps[i]!.payload.size <= consistentThrough; i++) if (!addedSizes.has(cps[i]!.payload.size)) anchor = i;
  let through = anchor >= 0 ? cps[anchor]!.payload.size : 0;
  let stopped: string | undefined;
  let unprovenBelow = 0;
  // Added below the watermark: a prefix of the next held one, itself proved.
  for (let i = 0; i < anchor; i++) {
    if (!addedSizes.has(cps[i]!.payload.size)) continue;
    const c = await check(cps[i]!, cps[i + 1]!);
    if (c.r === "ok") continue;
    unprovenBelow++;
    if (c.r === "none") stopped ??= c.why;
  }
  if (unprovenBelow > 0) {
    // Not all proved to the rest: the watermark drops below the first one added, so the next
    // run proves the chain again from there.
    const firstAdded = cps.findIndex((c, i) => i < anchor && addedSizes.has(c.payload.size));
    through = firstAdded > 0 ? cps[firstAdded - 1]!.payload.size : 0;
  } else {
    // Above it: each extends the one before. The first checkpoint ever held has nothing to extend.
    if (anchor < 0 && cps.length > 0) {
      anchor = 0;
      through = cps[0]!.payload.size;
    }
    for (let i = anchor + 1; i < cps.length; i++) {
      const c = await check(cps[i - 1]!, cps[i]!);
      if (c.r !== "ok") {
        if (c.r === "none") stopped = c.why;
        break;
      }
      through = cps[i]!.payload.size;
    }
  }
  const unproven = cps.filter((c) => c.payload.size > through).length;
  return { consistentThrough: through, proved, unproven, findings, ...(stopped !== undefined ? { stopped } : {}) };
}
