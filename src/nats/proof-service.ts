// Consistency proofs on request: a gateway answers on failclosed.audit.proof.<gatewayId> (core
// NATS request/reply) with the RFC 9162 consistency proof between two sizes of its audit log, so
// that a witness can check, as each checkpoint arrives, that the log it signs only ever grew:
// a history rewritten below an earlier checkpoint and re-signed with the gateway's own key
// cannot be proved consistent with what the witness already holds (Trillian's
// get-consistency-proof; CT's witnesses). The proof is not trusted: the witness verifies it
// against the two signed roots (audit/witness.ts proveChain), so the reply needs no signature.
//
// Request  {"kind":"consistency","size1":m,"size2":n}       0 < m ≤ n ≤ the log's durable size
// Reply    {"ok":true,"kind":"consistency","size1":m,"size2":n,"proof":["<b64u>",…]}
//          {"ok":false,"code":"MALFORMED"|"BAD_SIZE"|"BUSY"|"UNAVAILABLE","detail":"…"}
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { HASH_SIZE } from "../audit/merkle.ts";
import { SUBJECTS, TASK_ID_RE } from "./contract.ts";

/** Largest proof request a gateway reads. */
export const MAX_PROOF_REQUEST_BYTES = 1024;
/** A consistency proof has at most about 2·log2(n) nodes; 128 covers any safe integer size. */
const MAX_PROOF_NODES = 128;

export type ProofServiceCode =
  | "MALFORMED" // not JSON, not I-JSON, oversized, or not a consistency request
  | "BAD_SIZE" // sizes that are not 0 < size1 ≤ size2 ≤ the durable log size
  | "BUSY" // over the gateway's proof request rate: ask again later
  | "UNAVAILABLE"; // the log could not be read (closed, corrupt)

export type ProofReply =
  | { readonly ok: true; readonly kind: "consistency"; readonly size1: number; readonly size2: number; readonly proof: string[] }
  | { readonly ok: false; readonly code: ProofServiceCode; readonly detail: string };

/** What the service reads: the durable size of the log and proofs from its stored tree. */
export interface ProofSource {
  readonly size: number;
  proveConsistency(size1: number, size2: number): { proof: string[] };
}

/** A token bucket: `perSec` requests a second, bursts of up to `burst`. */
export class RateLimiter {
  #tokens: number;
  #at: number;
  constructor(
    private readonly perSec: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.#tokens = burst;
    this.#at = now();
  }
  take(): boolean {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#at) / 1000) * this.perSec);
    this.#at = t;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

const refuse = (code: ProofServiceCode, detail: string): ProofReply => ({ ok: false, code, detail });

/** The reply to one request's bytes. Never throws. */
export function answerProofRequest(data: Uint8Array, source: ProofSource, limiter: RateLimiter | undefined): ProofReply {
  if (data.byteLength > MAX_PROOF_REQUEST_BYTES) return refuse("MALFORMED", `request over ${MAX_PROOF_REQUEST_BYTES} bytes`);
  const p = tryParseStrict(data, { maxBytes: MAX_PROOF_REQUEST_BYTES, maxDepth: 4 });
  if (!p.ok) return refuse("MALFORMED", p.error.message);
  const v = p.value;
  if (typeof v !== "object" || v === null || Array.isArray(v)) return refuse("MALFORMED", "expected an object");
  const keys = Object.keys(v).sort().join(",");
  if (keys !== "kind,size1,size2" || v["kind"] !== "consistency") return refuse("MALFORMED", 'expected exactly {"kind":"consistency","size1":m,"size2":n}');
  const m = v["size1"];
  const n = v["size2"];
  if (typeof m !== "number" || typeof n !== "number" || !Number.isSafeInteger(m) || !Number.isSafeInteger(n)) return refuse("MALFORMED", "sizes must be integers");
  let size: number;
  try {
    size = source.size;
  } catch (e) {
    return refuse("UNAVAILABLE", `log unreadable: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (m < 1 || m > n || n > size) return refuse("BAD_SIZE", `need 0 < size1 ≤ size2 ≤ ${size}, got ${m} and ${n}`);
  // Only well-formed requests spend a token: garbage is cheap to refuse, proofs are not.
  if (limiter !== undefined && !limiter.take()) return refuse("BUSY", "over this gateway's proof request rate; ask again later");
  try {
    return { ok: true, kind: "consistency", size1: m, size2: n, proof: source.proveConsistency(m, n).proof };
  } catch (e) {
    return refuse("UNAVAILABLE", `no proof from the log: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export interface ProofServiceOptions {
  /** Proof requests answered per second (bursts up to twice that); over it, BUSY. */
  readonly perSec: number;
  readonly now: () => number;
  readonly onWarning?: (message: string) => void;
}

/** Answer proof requests for `gatewayId` until the returned subscription is unsubscribed. */
export function serveConsistencyProofs(nc: NatsConnection, gatewayId: string, source: ProofSource, o: ProofServiceOptions): Subscription {
  const limiter = new RateLimiter(o.perSec, Math.max(1, 2 * o.perSec), o.now);
  return nc.subscribe(SUBJECTS.proof(gatewayId), {
    callback: (err, msg) => {
      if (err !== null || msg.reply === undefined || msg.reply === "") return;
      try {
        msg.respond(JSON.stringify(answerProofRequest(msg.data, source, limiter)));
      } catch (e) {
        o.onWarning?.(`proof reply failed: ${String(e)}`);
      }
    },
  });
}

export type ProofAnswer = { readonly ok: true; readonly proof: Uint8Array[] } | { readonly ok: false; readonly detail: string; readonly busy?: true };

/**
 * Ask `gatewayId` for the consistency proof between two sizes. Never throws: no answer, a
 * refusal or a reply that is not a well-formed proof for exactly these sizes is `ok: false`
 * (the proof's correctness is for the caller to verify against the signed roots).
 */
export async function requestConsistencyProof(nc: NatsConnection, gatewayId: string, size1: number, size2: number, timeoutMs: number): Promise<ProofAnswer> {
  if (!TASK_ID_RE.test(gatewayId)) return { ok: false, detail: `gateway id ${JSON.stringify(gatewayId)} is not a subject token` };
  let data: Uint8Array;
  try {
    const r = await nc.request(SUBJECTS.proof(gatewayId), JSON.stringify({ kind: "consistency", size1, size2 }), { timeout: timeoutMs });
    data = r.data;
  } catch (e) {
    return { ok: false, detail: `no answer: ${e instanceof Error ? e.message : String(e)}` };
  }
  const p = tryParseStrict(data, { maxBytes: 64 * 1024, maxDepth: 4 });
  if (!p.ok) return { ok: false, detail: `unreadable reply: ${p.error.message}` };
  const v = p.value;
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { ok: false, detail: "reply is not an object" };
  if (v["ok"] !== true) return { ok: false, detail: `refused: ${JSON.stringify(v["code"] ?? null)}: ${JSON.stringify(v["detail"] ?? null)}`, ...(v["code"] === "BUSY" ? { busy: true as const } : {}) };
  if (v["kind"] !== "consistency" || v["size1"] !== size1 || v["size2"] !== size2) return { ok: false, detail: "reply answers another request" };
  const raw = v["proof"];
  if (!Array.isArray(raw) || raw.length > MAX_PROOF_NODES) return { ok: false, detail: "reply carries no proof" };
  const proof: Uint8Array[] = [];
  for (const x of raw) {
    const b = fromB64u(x, HASH_SIZE);
    if (b === undefined) return { ok: false, detail: "proof node is not a base64url SHA-256 hash" };
    proof.push(b);
  }
  return { ok: true, proof };
}

/**
 * A connection that asks `gatewayId` for proofs until `deadline` (a performance.now() time):
 * BUSY is waited out and asked again, anything else is the answer. For the witness command.
 */
export async function openProver(natsUrl: string, gatewayId: string, deadline: number): Promise<{ prove: (size1: number, size2: number) => Promise<ProofAnswer>; close: () => Promise<void> }> {
  const nc = await connect({ servers: natsUrl, name: "failclosed-witness-prover", timeout: Math.max(1, Math.min(10_000, deadline - performance.now())), maxReconnectAttempts: 0 });
  const prove = async (size1: number, size2: number): Promise<ProofAnswer> => {
    for (let wait = 50; ; wait = Math.min(1_000, wait * 2)) {
      const left = deadline - performance.now();
      if (left <= 0) return { ok: false, detail: "out of time" };
      const a = await requestConsistencyProof(nc, gatewayId, size1, size2, Math.min(5_000, left));
      if (a.ok || a.busy !== true) return a;
      if (deadline - performance.now() <= wait) return a;
      await new Promise((r) => setTimeout(r, wait));
    }
  };
  return { prove, close: () => nc.close().catch(() => undefined) };
}
