// Consistency proofs on request: a gateway answers on failclosed.audit.proof.<gatewayId> (core
// NATS request/reply) with the RFC 9162 consistency proof between two sizes of its audit log, so
// that a witness can check, as each checkpoint arrives, that the log it signs only ever grew:
// a history rewritten below an earlier checkpoint and re-signed with the gateway's own key
// cannot be proved consistent with what the witness already holds (Trillian's
// get-consistency-proof; CT's witnesses).
//
// Anyone on the bus can answer a request, and a wrong proof for the right sizes fails to verify
// just as a rewritten history's would. So the gateway signs what it answers with the key that
// signs its checkpoints, binding the sizes, the two roots and the proof, and the witness
// (audit/witness.ts proveChain) counts only a reply that key signed: an unsigned or
// foreign-signed one proves nothing either way (no answer, and the witness keeps listening for
// the gateway's), while a signed one that fails is the gateway's own word against itself.
//
// Request  {"kind":"consistency","size1":m,"size2":n}       0 < m ≤ n ≤ the log's durable size
// Reply    {"ok":true,"signed":{"payload":{"kind":"failclosed/consistency-proof/v1","origin":id,
//            "signer":keyId,"size1":m,"size2":n,"root1":"<b64u>","root2":"<b64u>",
//            "proof":["<b64u>",…]},"sig":"<b64u>"}}            (domain tag failclosed/consistency-proof/v1)
//          {"ok":false,"code":"MALFORMED"|"BAD_SIZE"|"BUSY"|"UNAVAILABLE","detail":"…"}  (unsigned:
//            a refusal proves nothing, and the witness treats it as no answer)
import { connect, createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { check, signedConsistencyProofSchema } from "../core/schema.ts";
import { CONSISTENCY_PROOF_KIND, type ConsistencyProofPayload, type SignedConsistencyProof } from "../core/types.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload, verifySigned } from "../crypto/signing.ts";
import { HASH_SIZE } from "../audit/merkle.ts";
import { SUBJECTS, TASK_ID_RE } from "./contract.ts";

/** Largest proof request a gateway reads. */
export const MAX_PROOF_REQUEST_BYTES = 1024;
/** Largest proof reply a witness reads (a proof of 128 nodes is under 8 KiB). */
const MAX_PROOF_REPLY_BYTES = 64 * 1024;
/**
 * How long a witness keeps listening after an unsigned refusal (or a no-responders status) for a
 * signed proof from the gateway: anyone can send a refusal, so one must not silence the gateway,
 * but a real one (BUSY) should not cost the whole timeout either.
 */
const REFUSAL_GRACE_MS = 250;

export type ProofServiceCode =
  | "MALFORMED" // not JSON, not I-JSON, oversized, or not a consistency request
  | "BAD_SIZE" // sizes that are not 0 < size1 ≤ size2 ≤ the durable log size
  | "BUSY" // over the gateway's proof request rate: ask again later
  | "UNAVAILABLE"; // the log could not be read (closed, corrupt), or there is no key to sign with

export type ProofReply = { readonly ok: true; readonly signed: SignedConsistencyProof } | { readonly ok: false; readonly code: ProofServiceCode; readonly detail: string };

/** What the service reads: the durable size of the log, its roots, and proofs from its stored tree. */
export interface ProofSource {
  readonly size: number;
  proveConsistency(size1: number, size2: number): { proof: string[] };
  rootAt(size: number): Uint8Array;
}

/** Who answers: the log's origin (the gateway id) and the key that signs its checkpoints. */
export interface ProofSigner {
  readonly origin: string;
  readonly gatewayKey: KeyPair;
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

/** The reply to one request's bytes, signed by `signer` (without one, UNAVAILABLE). Never throws. */
export function answerProofRequest(data: Uint8Array, source: ProofSource, limiter: RateLimiter | undefined, signer: ProofSigner | undefined): ProofReply {
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
  // An unsigned proof would count for nothing with a witness: say so rather than send one.
  if (signer === undefined) return refuse("UNAVAILABLE", "this gateway was given no key to sign consistency proofs with");
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
    // The roots are signed with the proof: a witness holds the gateway to every byte it relies on.
    const payload: ConsistencyProofPayload = {
      kind: CONSISTENCY_PROOF_KIND,
      origin: signer.origin,
      signer: signer.gatewayKey.keyId,
      size1: m,
      size2: n,
      root1: toB64u(source.rootAt(m)),
      root2: toB64u(source.rootAt(n)),
      proof: source.proveConsistency(m, n).proof,
    };
    return { ok: true, signed: signPayload("consistency", payload, signer.gatewayKey) };
  } catch (e) {
    return refuse("UNAVAILABLE", `no proof from the log: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export interface ProofServiceOptions {
  /** Proof requests answered per second (bursts up to twice that); over it, BUSY. */
  readonly perSec: number;
  readonly now: () => number;
  /**
   * The key that signs this gateway's checkpoints; proofs are signed with it. Without it every
   * well-formed request is refused UNAVAILABLE (and a warning says why): a witness counts only
   * signed proofs.
   */
  readonly gatewayKey?: KeyPair;
  readonly onWarning?: (message: string) => void;
}

/** Answer proof requests for `gatewayId` until the returned subscription is unsubscribed. */
export function serveConsistencyProofs(nc: NatsConnection, gatewayId: string, source: ProofSource, o: ProofServiceOptions): Subscription {
  const limiter = new RateLimiter(o.perSec, Math.max(1, 2 * o.perSec), o.now);
  const signer = o.gatewayKey !== undefined ? { origin: gatewayId, gatewayKey: o.gatewayKey } : undefined;
  if (signer === undefined) o.onWarning?.(`consistency proofs for ${gatewayId}: no gateway key given to sign them with; every proof request is refused UNAVAILABLE`);
  return nc.subscribe(SUBJECTS.proof(gatewayId), {
    callback: (err, msg) => {
      if (err !== null || msg.reply === undefined || msg.reply === "") return;
      try {
        msg.respond(JSON.stringify(answerProofRequest(msg.data, source, limiter, signer)));
      } catch (e) {
        o.onWarning?.(`proof reply failed: ${String(e)}`);
      }
    },
  });
}

/** What a witness takes from a reply: the signed proof, checked, with its nodes and roots decoded. */
export interface CheckedProof {
  readonly signed: SignedConsistencyProof;
  readonly proof: Uint8Array[];
  readonly root1: Uint8Array;
  readonly root2: Uint8Array;
}

/**
 * `v` as a consistency proof signed for exactly this request: the exact shape, this origin and
 * these sizes, a signer among `signers` (key ids) and a valid signature by it. Never throws:
 * anything else is the reason it proves nothing. Whether the proof holds is the caller's check.
 */
export function checkSignedProof(v: unknown, want: { readonly origin: string; readonly size1: number; readonly size2: number; readonly signers: readonly string[] }): { readonly ok: true; readonly proof: CheckedProof } | { readonly ok: false; readonly detail: string } {
  const c = check(signedConsistencyProofSchema, v);
  if (!c.ok) return { ok: false, detail: `not a signed consistency proof (${c.error})` };
  const s = c.value;
  const p = s.payload;
  if (p.origin !== want.origin || p.size1 !== want.size1 || p.size2 !== want.size2) return { ok: false, detail: `a proof of ${JSON.stringify(p.origin)} from ${p.size1} to ${p.size2}, not of ${JSON.stringify(want.origin)} from ${want.size1} to ${want.size2}` };
  if (!want.signers.includes(p.signer)) return { ok: false, detail: `signed by ${p.signer}, not by the key of the checkpoints` };
  const key = fromB64u(p.signer, 32);
  // Policy: only the checkpoints' own key can speak for the log, in proof as in accusation.
  if (key === undefined || !verifySigned("consistency", s, key)) return { ok: false, detail: `bad signature for ${p.signer}` };
  const root1 = fromB64u(p.root1, HASH_SIZE);
  const root2 = fromB64u(p.root2, HASH_SIZE);
  const proof = p.proof.map((x) => fromB64u(x, HASH_SIZE));
  if (root1 === undefined || root2 === undefined || proof.some((x) => x === undefined)) return { ok: false, detail: "a root or proof node is not a base64url SHA-256 hash" };
  return { ok: true, proof: { signed: s, proof: proof as Uint8Array[], root1, root2 } };
}

export type ProofAnswer = { readonly ok: true; readonly signed: SignedConsistencyProof } | { readonly ok: false; readonly detail: string; readonly busy?: true };

/** Ask for the proof from `size1` to `size2`, accepting only a reply one of `signers` (key ids) signed. */
export type AskProof = (size1: number, size2: number, signers: readonly string[]) => Promise<ProofAnswer>;

/** One message on the reply inbox: a proof for us, a refusal (anyone's), or a reply that proves nothing. */
function readReply(msg: Msg, want: Parameters<typeof checkSignedProof>[1]): { readonly r: "proof"; readonly signed: SignedConsistencyProof } | { readonly r: "refusal"; readonly answer: ProofAnswer } | { readonly r: "ignored"; readonly why: string } {
  if (msg.data.byteLength === 0 && msg.headers?.code === 503) return { r: "refusal", answer: { ok: false, detail: "no answer: no responders (503)" } };
  const p = tryParseStrict(msg.data, { maxBytes: MAX_PROOF_REPLY_BYTES, maxDepth: 6 });
  if (!p.ok) return { r: "ignored", why: `unreadable reply: ${p.error.message}` };
  const v = p.value;
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { r: "ignored", why: "reply is not an object" };
  if (v["ok"] === false) return { r: "refusal", answer: { ok: false, detail: `refused: ${JSON.stringify(v["code"] ?? null)}: ${JSON.stringify(v["detail"] ?? null)}`, ...(v["code"] === "BUSY" ? { busy: true as const } : {}) } };
  if (v["ok"] !== true || Object.keys(v).length !== 2) return { r: "ignored", why: 'reply is not {"ok":true,"signed":…}' };
  const c = checkSignedProof(v["signed"], want);
  return c.ok ? { r: "proof", signed: c.proof.signed } : { r: "ignored", why: c.detail };
}

/**
 * Ask `gatewayId` for the consistency proof between two sizes, signed by one of `signers`
 * (key ids). Never throws. Every reply is read until one is a proof signed for exactly this
 * request or `timeoutMs` passes: anyone on the bus can answer first, so an unsigned,
 * foreign-signed or mis-addressed reply is skipped, and an (unsigned) refusal is the answer only
 * if nothing better follows within a short grace. The proof's correctness is for the caller to
 * verify against the signed roots.
 */
export function requestConsistencyProof(nc: NatsConnection, gatewayId: string, size1: number, size2: number, timeoutMs: number, signers: readonly string[]): Promise<ProofAnswer> {
  if (!TASK_ID_RE.test(gatewayId)) return Promise.resolve({ ok: false, detail: `gateway id ${JSON.stringify(gatewayId)} is not a subject token` });
  if (signers.length === 0) return Promise.resolve({ ok: false, detail: "no gateway key to check a proof's signature with" });
  const want = { origin: gatewayId, size1, size2, signers };
  return new Promise<ProofAnswer>((resolve) => {
    let done = false;
    let refusal: ProofAnswer | undefined;
    let ignored: string | undefined;
    let ignoredCount = 0;
    let grace: ReturnType<typeof setTimeout> | undefined;
    let sub: Subscription | undefined;
    const finish = (a: ProofAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(grace);
      sub?.unsubscribe();
      resolve(a);
    };
    const noAnswer = (): ProofAnswer => ({ ok: false, detail: `no answer: timeout after ${Math.round(timeoutMs)} ms${ignored !== undefined ? `; ignored ${ignoredCount} ${ignoredCount === 1 ? "reply" : "replies"} (${ignored})` : ""}` });
    const timer = setTimeout(() => finish(refusal ?? noAnswer()), timeoutMs);
    try {
      const inbox = createInbox();
      sub = nc.subscribe(inbox, {
        callback: (err, msg) => {
          if (err !== null) return finish({ ok: false, detail: `no answer: ${err.message}` });
          const r = readReply(msg, want);
          switch (r.r) {
            case "proof":
              return finish({ ok: true, signed: r.signed });
            case "refusal":
              refusal ??= r.answer;
              grace ??= setTimeout(() => finish(refusal ?? noAnswer()), REFUSAL_GRACE_MS);
              return;
            case "ignored":
              ignored ??= r.why;
              ignoredCount++;
              return;
          }
        },
      });
      nc.publish(SUBJECTS.proof(gatewayId), JSON.stringify({ kind: "consistency", size1, size2 }), { reply: inbox });
    } catch (e) {
      finish({ ok: false, detail: `no answer: ${e instanceof Error ? e.message : String(e)}` });
    }
  });
}

/**
 * A connection that asks `gatewayId` for proofs until `deadline` (a performance.now() time):
 * BUSY is waited out and asked again, anything else is the answer. For the witness command.
 */
export async function openProver(natsUrl: string, gatewayId: string, deadline: number): Promise<{ prove: AskProof; close: () => Promise<void> }> {
  const nc = await connect({ servers: natsUrl, name: "failclosed-witness-prover", timeout: Math.max(1, Math.min(10_000, deadline - performance.now())), maxReconnectAttempts: 0 });
  const prove: AskProof = async (size1, size2, signers) => {
    for (let wait = 50; ; wait = Math.min(1_000, wait * 2)) {
      const left = deadline - performance.now();
      if (left <= 0) return { ok: false, detail: "out of time" };
      const a = await requestConsistencyProof(nc, gatewayId, size1, size2, Math.min(5_000, left), signers);
      if (a.ok || a.busy !== true) return a;
      if (deadline - performance.now() <= wait) return a;
      await new Promise((r) => setTimeout(r, wait));
    }
  };
  return { prove, close: () => nc.close().catch(() => undefined) };
}
