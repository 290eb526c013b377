// The revocation feed (FAILCLOSED_GOV): signed revocations and authority heartbeats, read in
// stream order from the beginning, so a heartbeat at time T means every revocation published
// before it has been applied. Only what a trusted authority signed is believed.
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { verifySigned } from "../crypto/signing.ts";
import { check, signedHeartbeatSchema, signedRevocationSchema } from "../core/schema.ts";
import type { HeartbeatPayload, RevocationTarget, SignedRevocation } from "../core/types.ts";
import { MAX_MESSAGE_BYTES, SUBJECTS } from "../nats/contract.ts";

export interface FeedEffects {
  isAuthority(keyId: string): boolean;
  /** A verified revocation, in stream order. */
  onRevocation(r: SignedRevocation): void;
  /** A verified heartbeat. */
  onHeartbeat(h: HeartbeatPayload): void;
  /** A message that was dropped, with why (recorded, never fatal). */
  onRejected(subject: string, why: string): void;
}

function signedBy(kind: "revocation" | "heartbeat", signed: { payload: { issuer: string }; sig: string }, fx: FeedEffects): string | undefined {
  if (!fx.isAuthority(signed.payload.issuer)) return "issuer is not a trusted authority";
  const pub = fromB64u(signed.payload.issuer, 32);
  if (!pub || !verifySigned(kind, signed, pub)) return "bad signature";
  return undefined;
}

/** Apply one message of the governance stream. Never throws. */
export function applyGovernanceMessage(subject: string, data: Uint8Array, fx: FeedEffects): void {
  const parsed = tryParseStrict(data, { maxBytes: MAX_MESSAGE_BYTES });
  if (!parsed.ok) {
    fx.onRejected(subject, parsed.error.code);
    return;
  }
  if (subject === SUBJECTS.revocation) {
    const r = check(signedRevocationSchema, parsed.value);
    if (!r.ok) return fx.onRejected(subject, `MALFORMED: ${r.error}`);
    const why = signedBy("revocation", r.value, fx);
    if (why !== undefined) return fx.onRejected(subject, why);
    fx.onRevocation(r.value);
    return;
  }
  if (subject === SUBJECTS.heartbeat) {
    const h = check(signedHeartbeatSchema, parsed.value);
    if (!h.ok) return fx.onRejected(subject, `MALFORMED: ${h.error}`);
    const why = signedBy("heartbeat", h.value, fx);
    if (why !== undefined) return fx.onRejected(subject, why);
    fx.onHeartbeat(h.value.payload);
    return;
  }
  fx.onRejected(subject, "unknown governance subject");
}

/** One name per revocation target, as HeartbeatPayload.revocations counts them. */
export function revocationTargetKey(t: RevocationTarget): string {
  return t.type === "artifact" ? `artifact:${t.id}` : `key:${t.keyId}`;
}

/**
 * What the feed has shown of each authority's revocations against what its heartbeats announce
 * (HeartbeatPayload.revocations): `missing` is the sum of the shortfalls. Counts only grow, so a
 * replayed old heartbeat can never lower what is announced.
 */
export class RevocationTally {
  readonly #seen = new Map<string, Set<string>>();
  readonly #announced = new Map<string, number>();

  revocation(r: SignedRevocation): void {
    const issuer = r.payload.issuer;
    let seen = this.#seen.get(issuer);
    if (seen === undefined) this.#seen.set(issuer, (seen = new Set()));
    seen.add(revocationTargetKey(r.payload.target));
  }

  heartbeat(h: HeartbeatPayload): void {
    if (h.revocations === undefined) return;
    if (h.revocations > (this.#announced.get(h.issuer) ?? 0)) this.#announced.set(h.issuer, h.revocations);
  }

  get missing(): number {
    let n = 0;
    for (const [issuer, announced] of this.#announced) n += Math.max(0, announced - (this.#seen.get(issuer)?.size ?? 0));
    return n;
  }
}
