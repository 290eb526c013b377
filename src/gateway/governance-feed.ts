// The revocation feed (FAILCLOSED_GOV): signed revocations and authority heartbeats, read in
// stream order from the beginning, so a heartbeat at time T means every revocation published
// before it has been applied. Only what a trusted authority signed is believed.
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { canonicalBytes } from "../canonical/jcs.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import { sha256 } from "../crypto/hash.ts";
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

/** HeartbeatPayload.revokedDigest of a set of target names (revocationTargetKey). */
export function revokedSetDigest(targets: Iterable<string>): string {
  return toB64u(sha256(canonicalBytes([...targets].sort())));
}

/**
 * What the feed has shown of each authority's revocations against what its latest heartbeat
 * announces (HeartbeatPayload.revocations and .revokedDigest). An authority is short when this
 * gateway has seen fewer of its revocations than it announces, or as many but other ones (the
 * digests differ: one was deleted and another of its revocations published in its place). Having
 * seen more is not short: another process with the same key revoked something its heartbeat does
 * not count yet. The count held against is the largest any heartbeat of the authority announced
 * (a heartbeat of another process with the same key and a clock ahead cannot lower it); the
 * digest is that of its latest heartbeat (by issuedAt), checked when the counts agree.
 */
/** What a gateway that has seen none of an authority's revocations compares with. */
const EMPTY_SET_DIGEST = revokedSetDigest([]);

export class RevocationTally {
  readonly #seen = new Map<string, { targets: Set<string>; digest: string | undefined }>();
  readonly #announced = new Map<string, { maxCount: number; count: number; digest: string | undefined; issuedAt: number }>();

  revocation(r: SignedRevocation): void {
    const issuer = r.payload.issuer;
    let seen = this.#seen.get(issuer);
    if (seen === undefined) this.#seen.set(issuer, (seen = { targets: new Set(), digest: undefined }));
    const key = revocationTargetKey(r.payload.target);
    if (!seen.targets.has(key)) {
      seen.targets.add(key);
      seen.digest = undefined;
    }
  }

  heartbeat(h: HeartbeatPayload): void {
    if (h.revocations === undefined) return;
    const prev = this.#announced.get(h.issuer);
    const maxCount = Math.max(prev?.maxCount ?? 0, h.revocations);
    if (prev !== undefined && h.issuedAt < prev.issuedAt) {
      prev.maxCount = maxCount;
      return;
    }
    this.#announced.set(h.issuer, { maxCount, count: h.revocations, digest: h.revokedDigest, issuedAt: h.issuedAt });
  }

  /** Revocations announced and not seen, summed over authorities (1 for a set that differs at equal size). */
  get missing(): number {
    let n = 0;
    for (const [issuer, a] of this.#announced) {
      const seen = this.#seen.get(issuer);
      const size = seen?.targets.size ?? 0;
      if (a.maxCount > size) n += a.maxCount - size;
      else if (a.count === size && a.digest !== undefined && this.#digestOf(seen) !== a.digest) n += 1;
    }
    return n;
  }

  #digestOf(seen: { targets: Set<string>; digest: string | undefined } | undefined): string {
    if (seen === undefined) return EMPTY_SET_DIGEST;
    return (seen.digest ??= revokedSetDigest(seen.targets));
  }
}
