// A policy authority on the bus: publishes the active policy, heartbeats that keep the
// revocation feed fresh, revocations, and root grants with their origin lineage.
import { jetstream, type JetStreamClient, type JetStreamManager, type PubAck } from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "../crypto/keys.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { heartbeat, issueArtifact, originLineage, revoke, type IssueOptions } from "../core/artifacts.ts";
import { CHILD_TASK_PREFIX_LENGTH, hasChildTaskIdForm } from "../core/child-task-id.ts";
import type { RevocationTarget, SignedArtifact, SignedLineage, SignedRevocation } from "../core/types.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { PolicyEngine, screenPolicyText } from "../policy/cedar.ts";
import { isPolicyDocument, policyDigest, type PolicyDocument } from "../policy/policy-document.ts";
import { nextPolicyVersion, policyEntryText, readPolicyEntry, signActivation } from "../policy/activation.ts";
import { KV_BUCKETS, MAX_MESSAGE_BYTES, POLICY_KEY, STREAMS, SUBJECTS, TASK_ID_RE } from "../nats/contract.ts";
import { ensureBus } from "../nats/setup.ts";
import { check, signedHeartbeatSchema, signedPolicyActivationSchema, signedRevocationSchema } from "../core/schema.ts";
import { verifySigned } from "../crypto/signing.ts";
import { OwnRevocations } from "./revocation-feed.ts";
import { RevocationLog } from "./revocation-log.ts";
import { systemClock, type Clock } from "./clock.ts";
import { assertAcceptableKey } from "../core/trust-store.ts";
import { stopWatchWith } from "../nats/watch-guard.ts";
import { readSubject } from "../nats/read-subject.ts";

export interface GrantOptions extends Omit<IssueOptions, "policy"> {
  /** The root task this grant authorizes; its origin lineage event names it. */
  taskId: string;
  /** Policy to bind; default: the one this authority last published. */
  policy?: { id: string; digest: string };
}

/**
 * How far past its own clock an authority still counts a policy version another key (not a peer)
 * signed: the clock skew gateways allow (DEFAULT_LIMITS.maxSkewMs). Anyone can sign such a
 * version; counting past it costs at most this much lead, which an authority that later loses
 * the bucket's history and its memory falls short by (its next publish refused as a rollback) only
 * within that time. Authorities whose clocks differ by more must name each other as peers.
 */
const FOREIGN_VERSION_LEAD_MS = 5_000;
/** The policy bucket's history could not be read in time (BUCKET_READ_MS). */
export class PolicyBucketUnreadable extends Error {
  override readonly name = "PolicyBucketUnreadable";
  readonly code = "POLICY_BUCKET_UNREADABLE" as const;
}

/** How long one read of the policy bucket's history may take (at connect, publish and each heartbeat). */
const BUCKET_READ_MS = 2_000;

export class Authority {
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #policy: { id: string; digest: string } | undefined;
  /**
   * The newest policy version this key or a peer's activated in the bucket: written by
   * publishPolicy, or seen there (its history at connect and at each heartbeat, and a watch).
   * Heartbeats announce it (HeartbeatPayload.policyVersion).
   */
  #policyVersion = 0;
  /**
   * Versions this process signed whose entry did not land (every compare-and-set lost). The signed
   * entry still went out on the bucket's subject, where anyone who may subscribe sees it: heard
   * again on an activation subject it is no activation, and what this process signs next is above it.
   */
  readonly #unwritten = new Set<number>();
  /** Other authorities whose policy entries this one counts past and announces (connect `peers`). */
  readonly #peers = new Set<string>();
  #policyWatch: { stop(): void } | undefined;
  #activations: Subscription | undefined;
  #lastHeartbeatAt: number | undefined;
  /** Stream sequence of this authority's last heartbeat (deleted once the next one lands). */
  #heartbeatSeq: number | undefined;
  /** This key's revocations on the feed (set up in connect). */
  #feed!: OwnRevocations;
  readonly #warn: (message: string) => void;
  /** Heartbeats one after another: each trims the one before it. */
  #heartbeats: Promise<void> = Promise.resolve();
  /** The heartbeat queued behind the one in progress, not started yet. */
  #nextHeartbeat: Promise<void> | undefined;

  private constructor(
    readonly key: KeyPair,
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly policyKv: KV,
    private readonly clock: Clock,
    private readonly ownsConnection: boolean,
    o: { onWarning?: (message: string) => void },
  ) {
    const warn = o.onWarning;
    this.#warn = (m) => {
      try {
        warn?.(m);
      } catch {
        // a broken alarm must not stop the authority
      }
    };
  }

  /**
   * `revocationLog`: a file that keeps every revocation of this key the authority publishes or
   * sees on the feed (written, and synced, before it is counted or sent). At connect, what it holds and the feed lost (a message deleted,
   * a stream made again) is published again, so gateways learn it whatever happened to the feed
   * while the authority was down; without it, the authority can only count what the feed holds.
   *
   * `restoreFeed` (default true): while it runs, the authority puts back on the feed every
   * revocation of its key that it knows and the feed lost (a message deleted, the stream deleted
   * or made again, its newest messages lost in a crash), within about one heartbeat interval; a
   * deleted stream is made again first. Gateways deny every task while the feed is short of what
   * the heartbeats announce, so without this they deny until the authority restarts with its log.
   * (Off only to test what gateways do with a short feed.) `onWarning` hears what it did.
   */
  static async connect(o: {
    natsUrl?: string;
    nc?: NatsConnection;
    key: KeyPair;
    clock?: Clock;
    revocationLog?: string;
    peers?: readonly string[];
    restoreFeed?: boolean;
    onWarning?: (message: string) => void;
  }): Promise<Authority> {
    const nc = o.nc ?? (await connect({ servers: o.natsUrl ?? "nats://127.0.0.1:4222", name: `failclosed-authority`, maxReconnectAttempts: -1, reconnectTimeWait: 200 }));
    let a: Authority | undefined;
    try {
      const { policyKv, jsm } = await ensureBus(nc);
      for (const k of o.peers ?? []) assertAcceptableKey(k);
      a = new Authority(o.key, nc, jetstream(nc), jsm, policyKv, o.clock ?? systemClock, o.nc === undefined, o);
      for (const k of o.peers ?? []) a.#peers.add(k);
      const log = o.revocationLog !== undefined ? await RevocationLog.open(o.revocationLog, o.key) : undefined;
      const self = a;
      // A revocation of this key that another process published: announce it now, not at the
      // next interval (gateways that saw it already are not short meanwhile, only ahead).
      const onNew = (): void => {
        if (self.#timer !== undefined) self.heartbeat().catch(() => undefined);
      };
      a.#feed = new OwnRevocations({ nc, js: a.js, jsm, key: o.key, log, restore: o.restoreFeed ?? true, warn: a.#warn, onNew });
      // Heartbeats announce the newest policy version of this key and its peers from the first one
      // on, also when the bucket's current entry is an older one put back while it was down.
      a.#policyVersion = Math.max(a.#policyVersion, (await a.#bucketVersionsRetrying()).ours);
      a.#listenForActivations();
      await a.#followPolicy();
      await a.#feed.start();
      return a;
    } catch (e) {
      // Nothing left running: the follower, on a connection the caller keeps, would read on.
      if (a !== undefined) a.#stopFollowing();
      if (o.nc === undefined) await nc.close().catch(() => undefined);
      throw e;
    }
  }

  get keyId(): string {
    return this.key.keyId;
  }

  /** The newest policy version of this key or a peer's known here, which heartbeats announce (0: none yet). */
  get policyVersion(): number {
    return this.#policyVersion;
  }

  /**
   * Publish the active policy, signed: a version above this key's and its peers' in the bucket's
   * history, above another key's up to FOREIGN_VERSION_LEAD_MS past the clock, and at least the
   * time in ms (policy/activation.ts nextPolicyVersion), written only if the
   * entry is still the one read (compare and set; a race with another authority reads again).
   * Gateways take it only from a trusted authority, and only above the version they hold.
   * Publishing the policy already in force under this key's activation writes nothing.
   * Throws (TypeError) on a document every gateway would refuse, as they read the KV entry: not
   * a policy document, too complex, not I-JSON or over the message limit. Grants after it would
   * bind a digest no gateway holds (every one POLICY_MISMATCH).
   */
  async publishPolicy(doc: PolicyDocument): Promise<string> {
    if (!isPolicyDocument(doc)) throw new TypeError("publishPolicy: not a policy document");
    const tooComplex = screenPolicyText(doc.cedar);
    if (tooComplex !== undefined) throw new TypeError(`publishPolicy: ${tooComplex}`);
    const digest = policyDigest(doc);
    // Gateways activate any well-formed document: one Cedar cannot parse would then deny every
    // task everywhere. Parse it here first (a probe request; only the parse errors matter).
    const probe = new PolicyEngine().evaluate(doc, digest, { principal: "probe", action: "probe", resource: "probe", context: {} });
    const unparsable = probe.errors.filter((e) => e.startsWith("POLICY_PARSE") || e.startsWith("POLICY_TOO_COMPLEX") || e.startsWith("BAD_DOCUMENT"));
    if (unparsable.length > 0) throw new TypeError(`publishPolicy: Cedar refuses the policy: ${unparsable.join("; ")}`);
    for (let attempt = 0; ; attempt++) {
      const current = await this.policyKv.get(POLICY_KEY);
      const inBucket = (await this.#bucketVersionsRetrying()).count;
      const seen = Math.max(this.#policyVersion, inBucket, ...this.#unwritten);
      const held = current?.operation === "PUT" ? readPolicyEntry(current.value) : undefined;
      // Already in force under this key, and the newest version the bucket has seen (an older
      // activation of the same document put back would be refused by gateways: sign anew).
      if (held?.ok === true && held.entry.digest === digest && held.entry.activation.payload.issuer === this.key.keyId && held.entry.activation.payload.version >= seen) {
        this.#policyVersion = Math.max(this.#policyVersion, held.entry.activation.payload.version);
        this.#policy = { id: doc.id, digest };
        return digest;
      }
      const now = this.clock();
      let version: number;
      try {
        version = nextPolicyVersion(seen, now);
      } catch (e) {
        // Only this key, a peer or a clock far ahead can have raised `seen` this far.
        throw new TypeError(`publishPolicy: ${e instanceof Error ? e.message : String(e)}; the policy bucket's history holds an activation of this key or a peer at version ${seen}: remove it (nats kv purge ${KV_BUCKETS.policy} ${POLICY_KEY}) if it was not meant`);
      }
      const entry = policyEntryText(doc, signActivation(this.key, doc, version, now));
      const back = readPolicyEntry(entry);
      if (!back.ok) throw new TypeError(`publishPolicy: gateways would refuse the entry (${back.why})`);
      try {
        if (current === null || current.operation !== "PUT") await this.policyKv.create(POLICY_KEY, entry);
        else await this.policyKv.update(POLICY_KEY, entry, current.revision);
      } catch (e) {
        this.#unwritten.add(version);
        // Another writer got there first (wrong last sequence): read again and count past it.
        if (attempt < 4 && /wrong last sequence|key exists/i.test(String(e))) continue;
        throw e;
      }
      // (Never lowered: a version learnt while this one was written stays announced.)
      this.#policyVersion = Math.max(this.#policyVersion, version);
      this.#policy = { id: doc.id, digest };
      // Tell the other processes of this key, and its peers, directly (#listenForActivations).
      // Best effort, bounded: the entry is written, which is what publishing means.
      await this.#announceActivation(JSON.stringify(back.entry.activation));
      return digest;
    }
  }

  /** Whose activations count here: this key's and its peers' (never an unknown key's). */
  #counts(issuer: string): boolean {
    return issuer === this.key.keyId || this.#peers.has(issuer);
  }

  /**
   * From the bucket's history: `ours`, the highest version of this key's and its peers'
   * activations, which heartbeats announce (never another key's: any key can sign an activation,
   * at any version, and gateways would withdraw their policy until they read one). `count`: what
   * the next version must be above: ours, and any other
   * signer's up to FOREIGN_VERSION_LEAD_MS past this authority's clock, so an authority that shares
   * the bucket without being named a peer, its clock a little ahead, is still counted past, while
   * someone else's key cannot push this authority's versions ahead of its clock by more.
   */
  async #bucketVersions(): Promise<{ ours: number; count: number }> {
    let ours = 0;
    let count = 0;
    const plausible = this.clock() + FOREIGN_VERSION_LEAD_MS;
    // Bounded: a read that stalls (the bucket's stream deleted or its messages removed meanwhile)
    // must not hold this heartbeat, or every one after it (found under load by
    // policy-rewound-bucket.test.ts: the authority's heartbeats stopped, and a gateway starting on
    // its last one, still fresh, took the retired policy).
    // Read with fetches of an ordered pull consumer (read-subject.ts), not nats.js's KV history:
    // that runs an ordered push consumer whose heartbeat monitor outlives a connection closed
    // under it, re-making the consumer on the closed connection every 5 s, printing the error to
    // stdout and keeping the process alive for good (found by an operator's review: `npm start
    // -- --json` hung after its report, 1 run in 3).
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        readSubject(this.js, this.jsm, `KV_${KV_BUCKETS.policy}`, `$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`, BUCKET_READ_MS, (m) => {
          const op = m.headers?.get("KV-Operation");
          if (op === "DEL" || op === "PURGE") return;
          const r = readPolicyEntry(m.data);
          if (!r.ok) return;
          const p = r.entry.activation.payload;
          if (this.#counts(p.issuer)) ours = Math.max(ours, p.version);
          else if (p.version <= plausible) count = Math.max(count, p.version);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new PolicyBucketUnreadable(`reading the ${KV_BUCKETS.policy} bucket's history took over ${BUCKET_READ_MS} ms`)), BUCKET_READ_MS);
        }),
      ]);
    } catch (e) {
      if (e instanceof PolicyBucketUnreadable) throw e;
      throw new PolicyBucketUnreadable(`reading the ${KV_BUCKETS.policy} bucket's history failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
    return { ours, count: Math.max(ours, count) };
  }

  /** #bucketVersions, tried three times: where the read is needed (connect, publishPolicy). */
  async #bucketVersionsRetrying(): Promise<{ ours: number; count: number }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#bucketVersions();
      } catch (e) {
        if (attempt >= 3) throw e;
      }
    }
  }

  async #announceActivation(text: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      this.nc.publish(SUBJECTS.policyActivation(this.key.keyId), text);
      await Promise.race([this.nc.flush(), new Promise<void>((r) => (timer = setTimeout(r, 2_000)))]);
    } catch {
      // The connection went: the bucket and this process's own heartbeats still say it.
    } finally {
      clearTimeout(timer);
    }
  }

  /** A policy version of this key or a peer's, learnt anywhere: announced from now on, and at once. */
  #learnVersion(version: number): void {
    if (version <= this.#policyVersion) return;
    this.#policyVersion = version;
    if (this.#timer !== undefined) this.heartbeat().catch(() => undefined);
  }

  /**
   * Hear the activations other processes of this key (`failclosed authority --once`) and of its
   * peers write, from them directly (SUBJECTS.policyActivation): whoever has rights on the bucket
   * can delete an entry, make the bucket again or flood its history before this process reads it,
   * but cannot stop or forge a signed message in flight.
   */
  #listenForActivations(): void {
    this.#activations = this.nc.subscribe(SUBJECTS.policyActivationAll, {
      callback: (err, m) => {
        if (err !== null) return;
        const parsed = tryParseStrict(m.data, { maxBytes: MAX_MESSAGE_BYTES });
        const a = parsed.ok ? check(signedPolicyActivationSchema, parsed.value) : undefined;
        if (a?.ok !== true || !this.#counts(a.value.payload.issuer) || m.subject !== SUBJECTS.policyActivation(a.value.payload.issuer)) return;
        const pub = fromB64u(a.value.payload.issuer, 32);
        if (pub === undefined || !verifySigned("policy", a.value, pub)) return;
        // Policy: one this process signed and never wrote was not activated (a replay of bytes seen in flight).
        if (a.value.payload.issuer === this.key.keyId && this.#unwritten.has(a.value.payload.version)) return;
        this.#learnVersion(a.value.payload.version);
      },
    });
  }

  /**
   * Follow the bucket: an activation of this key (another process's: `failclosed authority
   * --once`) or a peer's, above the version known here, is announced from now on, and at once.
   * So a retired policy put back, with the heartbeat of whoever retired it deleted, still finds
   * every gateway told of the newer version.
   */
  async #followPolicy(): Promise<void> {
    const w = await this.policyKv.watch({ key: POLICY_KEY });
    this.#policyWatch = w;
    stopWatchWith(w, this.nc);
    void (async () => {
      for await (const e of w) {
        if (e.operation !== "PUT") continue;
        const r = readPolicyEntry(e.value);
        if (!r.ok || !this.#counts(r.entry.activation.payload.issuer)) continue;
        this.#learnVersion(r.entry.activation.payload.version);
      }
    })().catch(() => undefined);
  }

  /**
   * Publish a heartbeat, then delete this authority's previous one from the stream by its
   * sequence (best effort: an API that refuses only lets the stream grow), so the stream holds
   * one heartbeat per authority rather than one per interval forever. Never another authority's,
   * and never by a rollup, which any publisher could aim at the revocations.
   */
  heartbeat(): Promise<void> {
    // One waiting behind the one in progress at most: it announces what is known when it starts,
    // so later calls share it (a slow heartbeat must not pile up one per interval).
    if (this.#nextHeartbeat !== undefined) return this.#nextHeartbeat;
    const next = this.#heartbeats.then(() => {
      this.#nextHeartbeat = undefined;
      return this.#heartbeatOnce();
    });
    this.#nextHeartbeat = next;
    this.#heartbeats = next.catch(() => undefined);
    return next;
  }

  async #heartbeatOnce(): Promise<void> {
    // The bucket again (a watch goes quiet when its bucket is made again): best effort.
    // The version learnt meanwhile (an activation heard during the read) counts: read it after.
    const ours = await this.#bucketVersions().then((v) => v.ours, () => 0);
    this.#policyVersion = Math.max(this.#policyVersion, ours);
    const at = this.clock();
    // Policy: `expect` the stream, so a publish some other stream took (a subject diverted out of
    // the feed) fails here instead of counting as published.
    // And the newest policy version of this key or a peer: a gateway holding an older one denies until it has it.
    const announce = { ...this.#feed.announce(), ...(this.#policyVersion > 0 ? { policyVersion: this.#policyVersion } : {}) };
    let ack: PubAck;
    try {
      ack = await this.js.publish(SUBJECTS.heartbeat, JSON.stringify(heartbeat(this.key, ++this.#seq, at, announce)), { expect: { streamName: STREAMS.gov } });
    } catch (e) {
      // The stream deleted, say: the check makes it again.
      this.#feed.checkSoon();
      throw e;
    }
    this.#lastHeartbeatAt = at;
    const previous = this.#heartbeatSeq;
    this.#heartbeatSeq = ack.seq;
    if (previous !== undefined && previous < ack.seq) await this.#trimHeartbeat(previous);
    // In the background: a feed that lost revocations is restored (gateways deny meanwhile).
    this.#feed.checkSoon();
  }

  /**
   * Delete this key's previous heartbeat, at `seq`, if it is still that: a stream deleted and made
   * again reuses sequence numbers, and a delete by number alone could then remove a revocation.
   */
  async #trimHeartbeat(seq: number): Promise<void> {
    try {
      const m = await this.jsm.streams.getMessage(STREAMS.gov, { seq });
      if (m?.subject !== SUBJECTS.heartbeat) return;
      const parsed = tryParseStrict(m.data, { maxBytes: MAX_MESSAGE_BYTES });
      const h = parsed.ok ? check(signedHeartbeatSchema, parsed.value) : undefined;
      if (h?.ok !== true || h.value.payload.issuer !== this.key.keyId) return;
      await this.jsm.streams.deleteMessage(STREAMS.gov, seq, false);
    } catch {
      // Best effort: a heartbeat left behind only lets the stream grow.
    }
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
    // Every gateway would drop what does not pass its reader; counted here, it would leave them
    // all short of a revocation they can never get (and denying everything).
    const text = JSON.stringify(r);
    const back = tryParseStrict(text, { maxBytes: MAX_MESSAGE_BYTES });
    const checked = back.ok ? check(signedRevocationSchema, back.value) : undefined;
    if (checked?.ok !== true) throw new TypeError(`publishRevocation: gateways would refuse this revocation (${back.ok ? (checked?.ok === false ? checked.error : "?") : back.error.message})`);
    // Policy: nor one its issuer did not sign. One naming this key would be kept in the revocation
    // log first, which then refuses to open (and to take any later revocation): verified here.
    const issuerKey = fromB64u(checked.value.payload.issuer, 32);
    if (issuerKey === undefined || !verifySigned("revocation", checked.value, issuerKey)) throw new TypeError(`publishRevocation: its signature does not verify under its issuer's key (${checked.value.payload.issuer})`);
    await this.#feed.publish(r);
  }

  async revoke(target: RevocationTarget, reason: string): Promise<SignedRevocation> {
    const r = revoke(this.key, target, reason, this.clock());
    await this.publishRevocation(r);
    return r;
  }

  /** Distinct targets this key has revoked on the feed (what its next heartbeat announces). */
  get revocationsPublished(): number {
    return this.#feed.count;
  }

  /** Issue a root artifact and publish the origin lineage of the root task it authorizes. */
  async grant(o: GrantOptions): Promise<{ artifact: SignedArtifact; lineage: SignedLineage }> {
    // A task id is a subject token (DESIGN §6): one with a '.', a space or nothing at all would put
    // the origin lineage on another task's subject, or on none a gateway reads.
    if (typeof o.taskId !== "string" || !TASK_ID_RE.test(o.taskId)) throw new TypeError(`grant: task id ${JSON.stringify(o.taskId)} is not a subject-safe token (${String(TASK_ID_RE)})`);
    // Policy: no root task in any parent's namespace. Gateways sign a spawn lineage only for a child
    // id in its parent's namespace (core/child-task-id.ts); an origin lineage naming an id of that
    // form would let its holder take a child's id, predictable once labelled, ahead of the child.
    if (hasChildTaskIdForm(o.taskId)) throw new TypeError(`grant: task id ${JSON.stringify(o.taskId)} has the form of a child task id (${CHILD_TASK_PREFIX_LENGTH} characters, then '_'): a root task id must not (newTaskId makes one)`);
    const policy = o.policy ?? this.#policy;
    if (!policy) throw new TypeError("grant: no policy published by this authority and none given");
    const { taskId, policy: _p, ...issue } = o;
    const artifact = issueArtifact(this.key, { ...issue, policy });
    const lineage = originLineage(this.key, { childTaskId: taskId, childArtifact: artifact, emittedAt: this.clock() });
    await this.js.publish(SUBJECTS.lineage(taskId), JSON.stringify(lineage));
    return { artifact, lineage };
  }

  /** Stop the feed follower, the bucket watch and the activation subscription, each whatever the others do. */
  #stopFollowing(): void {
    for (const stop of [() => this.#feed?.stop(), () => this.#policyWatch?.stop(), () => this.#activations?.unsubscribe()]) {
      try {
        stop();
      } catch {
        // already stopped
      }
    }
  }

  /** Stop heartbeating and, if it opened its own connection, close it (drain for at most 2 s: a bus that is down never drains). */
  async close(): Promise<void> {
    this.stopHeartbeats();
    this.#stopFollowing();
    if (!this.ownsConnection) return;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([this.nc.drain().then(() => true, () => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 2_000)))]);
    clearTimeout(timer);
    if (!drained) await this.nc.close().catch(() => undefined);
  }
}
