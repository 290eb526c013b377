// A policy authority on the bus: publishes the active policy, heartbeats that keep the
// revocation feed fresh, revocations, and root grants with their origin lineage.
import { jetstream, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "../crypto/keys.ts";
import { heartbeat, issueArtifact, originLineage, revoke, type IssueOptions } from "../core/artifacts.ts";
import type { RevocationTarget, SignedArtifact, SignedLineage, SignedRevocation } from "../core/types.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { PolicyEngine, screenPolicyText } from "../policy/cedar.ts";
import { isPolicyDocument, policyDigest, type PolicyDocument } from "../policy/policy-document.ts";
import { MAX_MESSAGE_BYTES, POLICY_KEY, STREAMS, SUBJECTS, TASK_ID_RE } from "../nats/contract.ts";
import { ensureBus } from "../nats/setup.ts";
import { check, signedRevocationSchema } from "../core/schema.ts";
import { verifySigned } from "../crypto/signing.ts";
import { revocationTargetKey } from "../gateway/governance-feed.ts";
import { systemClock, type Clock } from "./clock.ts";

export interface GrantOptions extends Omit<IssueOptions, "policy"> {
  /** The root task this grant authorizes; its origin lineage event names it. */
  taskId: string;
  /** Policy to bind; default: the one this authority last published. */
  policy?: { id: string; digest: string };
}

export class Authority {
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The policy this authority last made active, and when: its heartbeats announce it. */
  #policy: { id: string; digest: string; publishedAt: number } | undefined;
  #lastHeartbeatAt: number | undefined;
  /** Stream sequence of this authority's last heartbeat (deleted once the next one lands). */
  #heartbeatSeq: number | undefined;
  /**
   * The targets this key has revoked on the feed: those already there when it connected, and
   * each it published since. Every heartbeat announces how many (HeartbeatPayload.revocations).
   */
  readonly #revoked = new Set<string>();

  private constructor(
    readonly key: KeyPair,
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly policyKv: KV,
    private readonly clock: Clock,
    private readonly ownsConnection: boolean,
  ) {}

  static async connect(o: { natsUrl?: string; nc?: NatsConnection; key: KeyPair; clock?: Clock }): Promise<Authority> {
    const nc = o.nc ?? (await connect({ servers: o.natsUrl ?? "nats://127.0.0.1:4222", name: `failclosed-authority`, maxReconnectAttempts: -1, reconnectTimeWait: 200 }));
    try {
      const { policyKv, jsm } = await ensureBus(nc);
      const a = new Authority(o.key, nc, jetstream(nc), jsm, policyKv, o.clock ?? systemClock, o.nc === undefined);
      await a.#countOwnRevocations();
      return a;
    } catch (e) {
      if (o.nc === undefined) await nc.close().catch(() => undefined);
      throw e;
    }
  }

  /** Read the feed's revocations and count those this key signed (see #revoked). */
  async #countOwnRevocations(): Promise<void> {
    const subject = SUBJECTS.revocation;
    const info = await this.jsm.streams.info(STREAMS.gov, { subjects_filter: subject });
    const total = info.state.subjects?.[subject] ?? 0;
    if (total === 0) return;
    const consumer = await this.js.consumers.get(STREAMS.gov, { filter_subjects: subject });
    let read = 0;
    let caughtUp = false;
    while (!caughtUp && read < total) {
      const batch = await consumer.fetch({ max_messages: Math.min(1024, total - read), expires: 5_000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        read++;
        if (m.info.pending === 0) caughtUp = true;
        const parsed = tryParseStrict(m.data, { maxBytes: MAX_MESSAGE_BYTES });
        const r = parsed.ok ? check(signedRevocationSchema, parsed.value) : undefined;
        if (r?.ok === true && r.value.payload.issuer === this.key.keyId && verifySigned("revocation", r.value, this.key.publicKey)) {
          this.#revoked.add(revocationTargetKey(r.value.payload.target));
        }
      }
      if (got === 0) throw new Error(`reading ${STREAMS.gov} revocations stalled after ${read} of ${total}`);
    }
  }

  get keyId(): string {
    return this.key.keyId;
  }

  /**
   * Publish the active policy. Throws (TypeError) on a document every gateway would refuse, as
   * they read the KV entry: not a policy document, too complex, not I-JSON or over the message
   * limit. Grants after it would bind a digest no gateway holds (every one POLICY_MISMATCH).
   */
  async publishPolicy(doc: PolicyDocument): Promise<string> {
    if (!isPolicyDocument(doc)) throw new TypeError("publishPolicy: not a policy document");
    const tooComplex = screenPolicyText(doc.cedar);
    if (tooComplex !== undefined) throw new TypeError(`publishPolicy: ${tooComplex}`);
    const digest = policyDigest(doc);
    const entry = JSON.stringify({ digest, document: doc });
    const back = tryParseStrict(entry, { maxBytes: MAX_MESSAGE_BYTES });
    if (!back.ok) throw new TypeError(`publishPolicy: gateways would refuse the entry (${back.error.message})`);
    // Gateways activate any well-formed document: one Cedar cannot parse would then deny every
    // task everywhere. Parse it here first (a probe request; only the parse errors matter).
    const probe = new PolicyEngine().evaluate(doc, digest, { principal: "probe", action: "probe", resource: "probe", context: {} });
    const unparsable = probe.errors.filter((e) => e.startsWith("POLICY_PARSE") || e.startsWith("POLICY_TOO_COMPLEX") || e.startsWith("BAD_DOCUMENT"));
    if (unparsable.length > 0) throw new TypeError(`publishPolicy: Cedar refuses the policy: ${unparsable.join("; ")}`);
    const publishedAt = this.clock();
    await this.policyKv.put(POLICY_KEY, entry);
    this.#policy = { id: doc.id, digest, publishedAt };
    // Announce it at once: gateways hold the active policy to the newest one announced, so until
    // a heartbeat says so, one that took the new entry would deny as if it were rolled back.
    await this.heartbeat();
    return digest;
  }

  /**
   * Publish a heartbeat, then delete this authority's previous one from the stream by its
   * sequence (best effort: an API that refuses only lets the stream grow), so the stream holds
   * one heartbeat per authority rather than one per interval forever. Never another authority's,
   * and never by a rollup, which any publisher could aim at the revocations.
   */
  async heartbeat(): Promise<void> {
    const at = this.clock();
    // Policy: `expect` the stream, so a publish some other stream took (a subject diverted out of
    // the feed) fails here instead of counting as published.
    const ack = await this.js.publish(SUBJECTS.heartbeat, JSON.stringify(heartbeat(this.key, ++this.#seq, at, { revocations: this.#revoked.size, ...(this.#policy !== undefined ? { policy: { digest: this.#policy.digest, publishedAt: this.#policy.publishedAt } } : {}) })), { expect: { streamName: STREAMS.gov } });
    this.#lastHeartbeatAt = at;
    const previous = this.#heartbeatSeq;
    this.#heartbeatSeq = ack.seq;
    if (previous !== undefined && previous < ack.seq) await this.jsm.streams.deleteMessage(STREAMS.gov, previous, false).catch(() => undefined);
  }

  /**
   * Heartbeat now and every `intervalMs` until stopHeartbeats(). A heartbeat that does not land
   * goes to `onError` (every gateway denies GOVERNANCE_UNAVAILABLE once the feed is staler than
   * its bound, so this is worth an alarm); `lastHeartbeatAt` says when one last landed.
   */
  async startHeartbeats(intervalMs: number, onError?: (e: unknown) => void): Promise<void> {
    this.stopHeartbeats();
    await this.heartbeat();
    this.#timer = setInterval(() => {
      this.heartbeat().catch((e: unknown) => {
        try {
          onError?.(e);
        } catch {
          // a broken alarm must not stop the heartbeats
        }
      });
    }, intervalMs);
    this.#timer.unref();
  }

  /** When the last heartbeat landed (this authority's clock), or undefined before the first. */
  get lastHeartbeatAt(): number | undefined {
    return this.#lastHeartbeatAt;
  }

  stopHeartbeats(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Publish a revocation signed earlier (failclosed revoke --out). One signed by this key counts
   * towards what its heartbeats announce once the feed has it; another authority's does not.
   */
  async publishRevocation(r: SignedRevocation): Promise<void> {
    await this.js.publish(SUBJECTS.revocation, JSON.stringify(r), { expect: { streamName: STREAMS.gov } });
    if (r.payload.issuer === this.key.keyId && verifySigned("revocation", r, this.key.publicKey)) this.#revoked.add(revocationTargetKey(r.payload.target));
  }

  async revoke(target: RevocationTarget, reason: string): Promise<SignedRevocation> {
    const r = revoke(this.key, target, reason, this.clock());
    await this.publishRevocation(r);
    return r;
  }

  /** Distinct targets this key has revoked on the feed (what its next heartbeat announces). */
  get revocationsPublished(): number {
    return this.#revoked.size;
  }

  /** Issue a root artifact and publish the origin lineage of the root task it authorizes. */
  async grant(o: GrantOptions): Promise<{ artifact: SignedArtifact; lineage: SignedLineage }> {
    // A task id is a subject token (DESIGN §6): one with a '.', a space or nothing at all would put
    // the origin lineage on another task's subject, or on none a gateway reads.
    if (typeof o.taskId !== "string" || !TASK_ID_RE.test(o.taskId)) throw new TypeError(`grant: task id ${JSON.stringify(o.taskId)} is not a subject-safe token (${String(TASK_ID_RE)})`);
    const policy = o.policy ?? (this.#policy !== undefined ? { id: this.#policy.id, digest: this.#policy.digest } : undefined);
    if (!policy) throw new TypeError("grant: no policy published by this authority and none given");
    const { taskId, policy: _p, ...issue } = o;
    const artifact = issueArtifact(this.key, { ...issue, policy });
    const lineage = originLineage(this.key, { childTaskId: taskId, childArtifact: artifact, emittedAt: this.clock() });
    await this.js.publish(SUBJECTS.lineage(taskId), JSON.stringify(lineage));
    return { artifact, lineage };
  }

  /** Stop heartbeating and, if it opened its own connection, close it (drain for at most 2 s: a bus that is down never drains). */
  async close(): Promise<void> {
    this.stopHeartbeats();
    if (!this.ownsConnection) return;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([this.nc.drain().then(() => true, () => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 2_000)))]);
    clearTimeout(timer);
    if (!drained) await this.nc.close().catch(() => undefined);
  }
}
