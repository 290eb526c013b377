// Following a whole stream from its first message for as long as a process runs, read again from
// the first whenever the read ends. The gateway's governance and evidence feeds are read this way:
// a feed that ends for good leaves every task denied, and one that silently skips messages leaves
// revocations or heartbeats unread.
import { setTimeout as delay } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";

/**
 * How long each pull waits on the server. Two idle heartbeats missed (half of it each) make the
 * read check that its consumer is still there: nats-server 2.9 does not tell a waiting pull that
 * its stream was deleted, and with the default (30 s) a feed stayed stale that long when the
 * advisory saying so was lost.
 */
export const FOLLOW_EXPIRES_MS = 5_000;

export interface FollowStreamOptions {
  stream: string;
  /** Names the feed in warnings ("governance feed"). */
  what: string;
  /**
   * Runs as each read starts, given the stream's last sequence then (+Infinity when that is
   * unknown); returns what handles each message of that read.
   */
  begin: (lastSeq: number) => (m: JsMsg) => void;
  /** Runs whenever a read ends (and after a read that could not start). */
  ended?: () => void;
  onWarning: (message: string) => void;
  /** Ends the current read and the loop. */
  signal: AbortSignal;
  /**
   * The three ways a read learns that its stream was deleted or made again, each enough on its
   * own in the tests, all on by default (off only to test the others): JetStream's stream
   * advisories (each checked against the stream before the read ends), nats.js ending the read
   * when its consumer or stream is missing, and the read's notices checked against the stream's
   * creation time.
   */
  advisories?: boolean;
  abortOnMissingResource?: boolean;
  expiresMs?: number;
}

/**
 * Read `stream` from its first message with an ordered consumer, and read it again from the first
 * whenever that read ends on another stream than it began on, until `signal` aborts; backs off
 * 250 ms to 5 s between tries.
 *
 * The read ends when the stream under it is no longer the one it began on. nats.js's ordered
 * consumer, finding its consumer gone, makes a new one at the next sequence it expected; on a
 * stream made again (its sequence back at 1), that silently skips every message below it. Found
 * by a test: the governance stream made again while a gateway started, and the gateway denied
 * every task until the new stream's sequence passed the old one's.
 *
 * A read that ended while its stream is still the one it began on (a server restart: ordered
 * consumers live in the server's memory) goes on from the message after the last one it handled,
 * with the same handler and without `ended`: nothing is read twice, and a feed that was caught up
 * stays so.
 */
export async function followStream(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, o: FollowStreamOptions): Promise<void> {
  let backoffMs = 250;
  const advisories: Advisories = { on: o.advisories ?? true, warn: o.onWarning };
  /** The read to go on with, after its consumer was lost on the stream it began on. */
  let carryOn: { created: string; lastSeq: number; onMessage: (m: JsMsg) => void; recent: Handled[] } | undefined;
  const end = (): void => {
    carryOn = undefined;
    o.ended?.();
  };
  while (!o.signal.aborted) {
    let read: Read | undefined;
    try {
      // Asked again after the pause: a crash meanwhile can have cost the stream its newest messages.
      if (carryOn !== undefined && !(await stillHolds(jsm, o.stream, carryOn))) end();
      const info = await jsm.streams.info(o.stream).catch(() => undefined);
      if (carryOn !== undefined && info?.created !== carryOn.created) end();
      const from = carryOn;
      carryOn = undefined;
      // Whole stream: nats-server 2.9 has no multi-filter.
      const c = await js.consumers.get(o.stream, from !== undefined ? { opt_start_seq: from.lastSeq + 1 } : {});
      const msgs = await c.consume({ abort_on_missing_resource: o.abortOnMissingResource ?? true, expires: o.expiresMs ?? FOLLOW_EXPIRES_MS });
      const stop = (): void => msgs.stop();
      o.signal.addEventListener("abort", stop, { once: true });
      try {
        if (o.signal.aborted) msgs.stop();
        const r: Read = (read = {
          created: info?.created,
          lastSeq: from?.lastSeq ?? 0,
          recent: from?.recent ?? [],
          onMessage: from?.onMessage ?? o.begin(info?.state.last_seq ?? Number.POSITIVE_INFINITY),
          replaced: false,
          checking: undefined,
        });
        // Going on at the next sequence: asked once more now that the consumer exists (the stream
        // made again between the check above and the consumer, and that consumer would start past
        // the new stream's first messages), messages held meanwhile.
        endIfStreamReplaced(nc, jsm, o.stream, msgs, advisories, r, from !== undefined);
        for await (const m of msgs) {
          // Nothing is handled while the stream's identity is being checked, nor after it failed.
          if (r.checking !== undefined) await r.checking;
          if (r.replaced) break;
          r.onMessage(m);
          // (After the handler: one that throws on the same message again and again backs off.)
          backoffMs = 250;
          // Counted once handled (a handler that threw is not), and kept to check the stream by.
          r.lastSeq = m.seq;
          r.recent.push({ seq: m.seq, subject: m.subject, data: m.data });
          if (r.recent.length > RECENT_KEPT) r.recent.shift();
        }
      } finally {
        o.signal.removeEventListener("abort", stop);
      }
      if (!o.signal.aborted) o.onWarning(`${o.what} ended`);
    } catch (e) {
      if (!o.signal.aborted) o.onWarning(`${o.what} ended: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (o.signal.aborted) return end();
    // Go on with this read if its stream is still the one it began on, holding what it read
    // (asked now, not after the pause: until then, a read that cannot go on is not caught up).
    if (read !== undefined && !read.replaced && read.created !== undefined && (await stillHolds(jsm, o.stream, read))) {
      carryOn = { created: read.created, lastSeq: read.lastSeq, onMessage: read.onMessage, recent: read.recent };
      o.onWarning(`${o.what}: going on from ${o.stream}'s message ${read.lastSeq + 1}`);
    } else {
      end();
      if (read !== undefined) o.onWarning(`${o.what}: reading ${o.stream} again from its first message`);
    }
    // (Rejects only when aborted: the loop then ends.)
    await delay(backoffMs, undefined, { signal: o.signal }).catch(() => undefined);
    backoffMs = Math.min(backoffMs * 2, 5_000);
  }
  end();
}

/** A message a read handled: enough to tell it from another stored at its sequence later. */
interface Handled {
  seq: number;
  subject: string;
  /** (The same bytes on the same subject at that sequence are the same message, for a reader.) */
  data: Uint8Array;
}

/** How many handled messages a read keeps to check its stream by (stillHolds). */
const RECENT_KEPT = 32;

interface Read {
  /** The stream's creation time as the read began (undefined: unknown). */
  created: string | undefined;
  /** The last message handled (0: none yet), and the last few. */
  lastSeq: number;
  recent: Handled[];
  onMessage: (m: JsMsg) => void;
  /** Set (before the read is stopped) once its stream is known deleted or made again. */
  replaced: boolean;
  /** While the read's consumer, made again, is checked to be on the stream it began on. */
  checking: Promise<void> | undefined;
}

interface Advisories {
  /** Off once the server refused them (an account without $JS.EVENT rights): said once. */
  on: boolean;
  warn: (message: string) => void;
}

/**
 * End `msgs` once the stream under it is deleted or made again, setting `r.replaced` first.
 * JetStream's advisories make it ask the stream at once (anyone may publish one, so an advisory
 * alone proves nothing); they are at-most-once (and an account may not be allowed them), so the
 * read's own notices back them: its consumer found missing (after two missed idle
 * heartbeats), or made again on a stream created at another time than the one the read began on.
 * While that is being asked, `r.checking` holds the read back: a consumer nats.js made again on a
 * new stream would otherwise hand over that stream's messages above the old position meanwhile.
 */
function endIfStreamReplaced(nc: NatsConnection, jsm: JetStreamManager, stream: string, msgs: ConsumerMessages, advisories: Advisories, r: Read, checkNow: boolean): void {
  const end = (why: string): void => {
    r.replaced = true;
    msgs.stop(new Error(`stream ${stream} ${why}`));
  };
  const check = async (): Promise<void> => {
    if (!(await stillHolds(jsm, stream, r))) end("deleted, made again or rewound under the read");
  };
  // Policy: an advisory is a reason to ask the stream now, never proof that it was replaced:
  // anyone who may publish on $JS.EVENT.ADVISORY.> can send one for a stream nobody touched, and
  // ending the read on it had a gateway read its governance feed again from the first message,
  // denying every task meanwhile (found by review: a flood of forged advisories). One check at a
  // time, and one more after it when another advisory came meanwhile, so a real one is never
  // lost. Each check holds the read back while it runs, as the consumer notices below do.
  let asking = false;
  let askAgain = false;
  const ask = (): void => {
    if (asking) {
      askAgain = true;
      return;
    }
    asking = true;
    const run = async (): Promise<void> => {
      do {
        askAgain = false;
        const checking = check().catch((e: unknown) => end(`read unchecked: ${e instanceof Error ? e.message : String(e)}`));
        r.checking = checking;
        await checking;
        if (r.checking === checking) r.checking = undefined;
      } while (askAgain && !r.replaced);
      asking = false;
    };
    run().catch((e: unknown) => end(`read unchecked: ${e instanceof Error ? e.message : String(e)}`));
  };
  const subs = advisories.on
    ? ["DELETED", "CREATED"].map((event) =>
        nc.subscribe(`$JS.EVENT.ADVISORY.STREAM.${event}.${stream}`, {
          callback: (err) => {
            if (err === null) return ask();
            if (!advisories.on) return;
            advisories.on = false;
            advisories.warn(`JetStream advisories for ${stream} refused (${err.message}): a stream deleted or made again is noticed from the read alone (within about ${FOLLOW_EXPIRES_MS / 1_000} s)`);
          },
        }),
      )
    : [];
  const watch = async (): Promise<void> => {
    try {
      for await (const n of msgs.status()) {
        if (n.type !== "ordered_consumer_recreated" && n.type !== "stream_not_found" && n.type !== "consumer_deleted" && n.type !== "consumer_not_found") continue;
        const checking = check();
        r.checking = checking;
        await checking;
        if (r.checking === checking) r.checking = undefined;
        if (r.replaced) return;
      }
    } finally {
      for (const s of subs) s.unsubscribe();
    }
  };
  if (checkNow) {
    const first = check().catch((e: unknown) => end(`read unchecked: ${e instanceof Error ? e.message : String(e)}`));
    r.checking = first;
    first.then(
      () => {
        if (r.checking === first) r.checking = undefined;
      },
      () => undefined,
    );
  }
  watch().catch((e: unknown) => {
    r.checking = undefined;
    end(`read unwatched: ${e instanceof Error ? e.message : String(e)}`);
  });
}

/**
 * Whether `stream` is still the one `r` began on, holding what `r` read: the same creation time,
 * a last sequence at least the read's, and the newest message the read handled that is still
 * stored (others may have been deleted since: an authority trims its previous heartbeat) being the
 * one it handled. A stream that lost its newest messages in a crash (nats-server does not fsync
 * each write), with new ones stored at their sequences since, keeps its creation time: going on
 * from the read's next sequence would skip those. False when it cannot be told.
 */
async function stillHolds(jsm: JetStreamManager, stream: string, r: Pick<Read, "created" | "lastSeq" | "recent">): Promise<boolean> {
  const info = await jsm.streams.info(stream).catch(() => undefined);
  if (info === undefined || r.created === undefined || info.created !== r.created) return false;
  if (r.lastSeq === 0) return true; // nothing read yet: going on is reading from the first
  if (info.state.last_seq < r.lastSeq) return false;
  for (let i = r.recent.length - 1; i >= 0; i--) {
    const h = r.recent[i]!;
    const m = await jsm.streams.getMessage(stream, { seq: h.seq }).catch(() => null);
    if (m === null) continue;
    return m.subject === h.subject && Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).equals(Buffer.from(h.data.buffer, h.data.byteOffset, h.data.byteLength));
  }
  return false;
}
