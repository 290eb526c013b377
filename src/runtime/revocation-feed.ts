// An authority's own revocations on the governance feed: which targets its key has revoked there
// (what every heartbeat announces), followed whoever publishes them, and put back when the feed
// loses them. Gateways deny every task while the feed holds fewer revocations than the heartbeats
// announce, so a feed that lost one is a denial of service until it is restored.
import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { KeyPair } from "../crypto/keys.ts";
import type { SignedRevocation } from "../core/types.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { check, signedRevocationSchema } from "../core/schema.ts";
import { verifySigned } from "../crypto/signing.ts";
import { revocationTargetKey, revokedSetDigest } from "../gateway/governance-feed.ts";
import { MAX_MESSAGE_BYTES, STREAMS, SUBJECTS } from "../nats/contract.ts";
import { followStream } from "../nats/follow-stream.ts";
import { readSubject } from "../nats/read-subject.ts";
import { ensureBus } from "../nats/setup.ts";
import type { RevocationLog } from "./revocation-log.ts";

/** How long the first read of the feed may go without reading or noting a message before start() gives up. */
const FIRST_READ_MS = 10_000;

export interface OwnRevocationsOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  key: KeyPair;
  /** Where each revocation of the key is kept before it is counted (Authority.connect `revocationLog`). */
  log: RevocationLog | undefined;
  /** Put back what the feed lost, and make the stream again if it is gone (Authority.connect `restoreFeed`). */
  restore: boolean;
  warn: (message: string) => void;
  /** A revocation of this key, new here, read on the feed after the first read (another process published it). */
  onNew: () => void;
}

export class OwnRevocations {
  /**
   * The targets this key has revoked on the feed: those there when it started, and each published
   * or read since. Every heartbeat announces how many (HeartbeatPayload.revocations). Never shrinks.
   */
  readonly #revoked = new Set<string>();
  /**
   * The digest of #revoked, while it is unchanged: it sorts and hashes every target, so taken
   * per heartbeat it cost O(revocations) every few seconds, forever, for an authority with many.
   */
  #digest: string | undefined;
  /**
   * Every revocation this key signed known here (the feed, the log, publish), by target: what a
   * restore publishes again when the feed lost it. Never shrinks either.
   */
  readonly #signed = new Map<string, SignedRevocation>();
  /** Ends the follower (followStream) and any restore. */
  readonly #stopped = new AbortController();
  /** The feed's reads begun so far (a read begun again: the stream was made again, or rewound). */
  #reads = 0;
  /** Revocation messages (any issuer's) the current read handled, and how many of them the feed no longer held at the last restore. */
  #revocationsRead = 0;
  #revocationsGone = 0;
  /** Revocations noted one after another (each may write the log first). */
  #noting: Promise<void> = Promise.resolve();
  /** The check in progress (#check), whether another is wanted after it, and whether a restore is owed. */
  #checking: Promise<void> | undefined;
  #checkAgain = false;
  #restorePending = false;

  constructor(private readonly o: OwnRevocationsOptions) {
    for (const r of o.log?.revocations ?? []) this.#signed.set(revocationTargetKey(r.payload.target), r);
  }

  /** Distinct targets this key has revoked on the feed. */
  get count(): number {
    return this.#revoked.size;
  }

  /** What a heartbeat announces of them. */
  announce(): { revocations: number; revokedDigest: string } {
    return { revocations: this.#revoked.size, revokedDigest: (this.#digest ??= revokedSetDigest(this.#revoked)) };
  }

  /**
   * Read the feed as it stands and keep following it; then publish again what the log holds and
   * the feed lost (a message deleted, the stream made again while the authority was down).
   */
  async start(): Promise<void> {
    await this.#follow();
    const onFeed = new Set(this.#revoked);
    for (const r of this.o.log?.revocations ?? []) {
      if (!onFeed.has(revocationTargetKey(r.payload.target))) await this.#publishChecked(r);
    }
  }

  /** Publish `r` (checked by the caller): one of this key is kept in the log first, and counted once the feed has it. */
  async publish(r: SignedRevocation): Promise<void> {
    // Kept before it is sent: a crash between the two leaves it to be sent at the next start.
    if (r.payload.issuer === this.o.key.keyId) await this.o.log?.keep(r);
    await this.#publishChecked(r);
  }

  stop(): void {
    this.#stopped.abort();
  }

  /**
   * Follow the whole stream with followStream, which reads it again from the first message when
   * it is deleted or made again (nats.js's ordered consumer alone went on at the old stream's next
   * sequence, and the authority read nothing more); a read begun again restores the feed.
   * Resolves once the feed as it stood has been read.
   */
  async #follow(): Promise<void> {
    const subject = SUBJECTS.revocation;
    const { jsm } = this.o;
    const info = await jsm.streams.info(STREAMS.gov, { subjects_filter: subject });
    const total = info.state.subjects?.[subject] ?? 0;
    let caughtUp: () => void = () => undefined;
    const ready = new Promise<void>((r) => (caughtUp = r));
    if (total === 0) caughtUp();
    let first = total > 0;
    /** Messages read, and revocations whose note settled (the first read's progress: see `stalled`). */
    let read = 0;
    let noted = 0;
    const onMessage = (m: JsMsg): void => {
      read++;
      let added: Promise<boolean> = Promise.resolve(false);
      if (m.subject === subject) {
        this.#revocationsRead++;
        const data = m.data;
        added = this.#noting.then(() => this.#note(data));
        this.#noting = added.then(() => undefined, () => undefined);
      }
      const last = first && (this.#revocationsRead >= total || m.info.pending === 0);
      if (last) first = false;
      if (m.subject === subject) void added.then(() => noted++, () => noted++);
      void added.then(
        (isNew) => {
          if (last) caughtUp();
          else if (isNew) this.o.onNew();
        },
        () => undefined,
      );
    };
    followStream(this.o.nc, this.o.js, jsm, {
      stream: STREAMS.gov,
      what: "authority's revocation feed",
      begin: () => {
        this.#revocationsRead = 0;
        this.#revocationsGone = 0;
        // Read again from the first message (the stream made again, or rewound in a crash): put
        // back what it lost. (The restore reads the stream itself, from now.)
        if (this.#reads++ > 0) this.checkSoon(true);
        return onMessage;
      },
      onWarning: this.o.warn,
      signal: this.#stopped.signal,
    }).catch((e: unknown) => this.o.warn(`revocation feed follower ended: ${e instanceof Error ? e.message : String(e)}`));
    // Policy: a bound on a read that stops moving, not on the whole read: a feed of many
    // revocations (or a flood of junk on the subject, which anyone who may publish there can
    // add and no one can purge) would otherwise keep the authority from ever starting. Moving
    // means: while a revocation's note (its check, and the revocation log's synced write) is
    // pending, notes settling; otherwise messages read. So other authorities' heartbeats read
    // meanwhile do not hide a note stuck on a stalled disk (found by review).
    let timer: NodeJS.Timeout | undefined;
    let lastRead = 0;
    let lastNoted = 0;
    const stalled = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        const pending = this.#revocationsRead > noted;
        if (pending ? noted === lastNoted : read === lastRead) reject(new Error(`reading ${STREAMS.gov} revocations stalled after ${this.#revocationsRead} of ${total}${pending ? " (a revocation's note did not settle)" : ""}`));
        lastRead = read;
        lastNoted = noted;
      }, FIRST_READ_MS);
    });
    try {
      await Promise.race([ready, stalled]);
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Check the feed soon (after each heartbeat; with `restore`, when a read began again), one check
   * at a time: a deleted stream is made again; a feed that lost revocation messages (it holds fewer
   * than this process read of it, less those known gone), or that a read began on again, is
   * restored. A restore that fails is tried again at the next check, until one completes.
   */
  checkSoon(restore = false): void {
    if (!this.o.restore || this.#stopped.signal.aborted) return;
    if (restore) this.#restorePending = true;
    if (this.#checking !== undefined) {
      this.#checkAgain ||= restore;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.#checkAgain = false;
        await this.#check();
      } while (this.#checkAgain && !this.#stopped.signal.aborted);
    };
    this.#checking = run()
      // A check cut short by stop() (the connection closing under it) is no failure to report.
      .catch((e: unknown) => (this.#stopped.signal.aborted ? undefined : this.o.warn(`checking the revocation feed failed (tried again after the next heartbeat): ${e instanceof Error ? e.message : String(e)}`)))
      .finally(() => (this.#checking = undefined));
  }

  async #check(): Promise<void> {
    const subject = SUBJECTS.revocation;
    // Taken before the stream is asked: every message read by then was stored by then, so the
    // stream holding fewer means some went (read after, a message stored since would count).
    const readBefore = this.#revocationsRead;
    const goneBefore = this.#revocationsGone;
    let held: number;
    try {
      const info = await this.o.jsm.streams.info(STREAMS.gov, { subjects_filter: subject });
      held = info.state.subjects?.[subject] ?? 0;
    } catch (e) {
      if (!/stream not found/i.test(String(e))) throw e;
      // Deleted, and nobody made it again: make it (with its guards, as at connect); the follower
      // then reads the new stream from its first message, and that read restores it.
      this.o.warn(`${STREAMS.gov} is gone: making it again`);
      this.#restorePending = true;
      await ensureBus(this.o.nc);
      return;
    }
    if (!this.#restorePending && held >= readBefore - goneBefore) return;
    this.#restorePending = true;
    // Which of this key's revocations the feed holds now; publish the others again. (Known
    // before the read: each was on the stream before it began, unless it went.)
    const read = this.#revocationsRead;
    const known = [...this.#signed];
    const present = new Set<string>();
    // (A short fetch: a read begun on a stream deleted under it waits this out, and the next
    // heartbeat's check restores from the new one.)
    const seen = await readSubject(this.o.js, this.o.jsm, STREAMS.gov, subject, 2_000, (m) => {
      const r = this.#own(m.data);
      if (r !== undefined) present.add(revocationTargetKey(r.payload.target));
    });
    const lost = known.filter(([k]) => !present.has(k)).map(([, r]) => r);
    if (lost.length > 0) this.o.warn(`${STREAMS.gov} lost ${lost.length} revocation(s) of this key: publishing them again`);
    for (const r of lost) {
      if (this.#stopped.signal.aborted) return; // closed meanwhile
      await this.#publishChecked(r);
    }
    // What the follower read that is not there now (another issuer's deleted message, say) is
    // gone for good: not looked for again until more goes.
    this.#revocationsGone = Math.max(0, read - seen);
    this.#restorePending = false;
  }

  async #publishChecked(r: SignedRevocation): Promise<void> {
    const text = JSON.stringify(r);
    await this.o.js.publish(SUBJECTS.revocation, text, { expect: { streamName: STREAMS.gov } });
    await this.#note(new TextEncoder().encode(text));
  }

  /** `data`, if it is a revocation this key signed (checked). */
  #own(data: Uint8Array): SignedRevocation | undefined {
    const parsed = tryParseStrict(data, { maxBytes: MAX_MESSAGE_BYTES });
    const r = parsed.ok ? check(signedRevocationSchema, parsed.value) : undefined;
    const { key } = this.o;
    if (r?.ok !== true || r.value.payload.issuer !== key.keyId || !verifySigned("revocation", r.value, key.publicKey)) return undefined;
    return r.value;
  }

  /**
   * A message of the revocation subject: if a revocation this key signed, count it (true if new).
   * With a log, it is kept there first, whoever published it (another process with this key, or
   * before the log was kept), so a restart can publish it again should the feed lose it; one the
   * log cannot take is not counted (its heartbeats do not vouch for what they could not restore).
   */
  async #note(data: Uint8Array): Promise<boolean> {
    const r = this.#own(data);
    if (r === undefined) return false;
    const key = revocationTargetKey(r.payload.target);
    if (this.#revoked.has(key)) return false;
    if (this.o.log !== undefined) {
      try {
        await this.o.log.keep(r);
      } catch (e) {
        // Not counted until the log can keep it (it is read again with the feed): said, so an
        // operator learns the log is damaged now, not at the next start (noticed by review).
        this.o.warn(`the revocation log could not keep this key's revocation of ${key} read from the feed (not counted until it can): ${e instanceof Error ? e.message : String(e)}`);
        return false;
      }
    }
    if (!this.#signed.has(key)) this.#signed.set(key, r);
    this.#revoked.add(key);
    this.#digest = undefined;
    return true;
  }
}
