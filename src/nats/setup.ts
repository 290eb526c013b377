// Creates the streams and buckets of the wire contract if they are missing. Idempotent, so
// every gateway, authority and agent may call it at start.
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { causeChain } from "../infra/error-causes.ts";
import { KV_BUCKETS, MAX_MESSAGE_BYTES, STREAMS, SUBJECTS, TASK_CONSUMER } from "./contract.ts";

export interface BusSetupOptions {
  /** How long evidence stays in the stream (ms). Default 10 minutes. */
  evidenceMaxAgeMs?: number;
  /** Redelivery wait for an unacknowledged task (ms). Default 30 s. */
  taskAckWaitMs?: number;
  /**
   * Whether the streams' guards (deny_purge, deny_delete, no rollups) must be in place: a gateway
   * requires them and does not start without (fail closed: its claims and revocations could be
   * wiped); agents and authorities only try to set them, and go on if their account may not.
   */
  guards?: "required" | "best-effort";
  /**
   * Told of settings asked for that an existing object does not have (ensureBus never changes
   * one another process made): a task consumer whose ack wait differs from `taskAckWaitMs`.
   */
  onWarning?: (message: string) => void;
}

const ns = (ms: number) => ms * 1_000_000;

/**
 * The bus cannot be set up as a gateway needs it. BUS_GUARDS_UNSET: a stream's guards (deny_purge,
 * deny_delete, no rollups) are off and this account may not turn them on.
 */
export class BusSetupError extends Error {
  override readonly name = "BusSetupError";
  readonly code = "BUS_GUARDS_UNSET" as const;
}

type StreamGuards = { deny_purge?: true; deny_delete?: true; allow_rollup_hdrs?: false; max_msgs_per_subject?: number };

/** Revisions the claims bucket keeps a key: NATS's most, far above the MAX_DENIED_COPIES + 1 honest writes. */
export const CLAIM_HISTORY = 64;

/**
 * Turn on `guards` in a stream's config where they are off. nats-server never lets an update
 * turn deny_purge or deny_delete off again, so once set they hold against anyone with stream
 * API rights short of deleting the stream. Throws if they cannot be set (fail closed: a gateway
 * does not start on a bus whose claims or revocations could be wiped by a purge).
 */
async function guardStream(jsm: JetStreamManager, name: string, guards: StreamGuards, required: boolean): Promise<void> {
  const { config } = await jsm.streams.info(name);
  const lacking = (Object.keys(guards) as (keyof StreamGuards)[]).filter((k) => config[k] !== guards[k]);
  if (lacking.length === 0) return;
  try {
    await jsm.streams.update(name, { ...config, ...guards });
  } catch (e) {
    if (required) throw new BusSetupError(`stream ${name}: could not set ${lacking.join(", ")} (a gateway needs them: set them once with an account that may update streams)`, { cause: e });
  }
}

async function ensureStream(jsm: JetStreamManager, name: string, config: Omit<Parameters<JetStreamManager["streams"]["add"]>[0], "name">): Promise<void> {
  try {
    await jsm.streams.info(name);
  } catch {
    try {
      await jsm.streams.add({ ...config, name });
    } catch (e) {
      // Another process created it first.
      await jsm.streams.info(name).catch(() => {
        throw e;
      });
    }
  }
}

/** How many times ensureBus goes through its steps when a stream it made vanishes under it. */
const ENSURE_ATTEMPTS = 3;

/** A stream (or the consumer on it) that is not there: deleted by another process mid-setup. */
function isGone(e: unknown): boolean {
  for (const c of causeChain(e)) {
    if (c instanceof JetStreamApiError && (c.code === JetStreamApiCodes.StreamNotFound || c.code === JetStreamApiCodes.ConsumerNotFound)) return true;
  }
  return false;
}

/**
 * Make sure every stream, consumer and bucket of the wire contract exists, with its guards.
 * A stream deleted by someone else between two of these steps (made, then gone before its
 * guards are read) starts the steps again, up to ENSURE_ATTEMPTS times in all: a start that
 * happens to overlap an operator remaking the governance stream then comes up on the new one
 * instead of failing. Any other error, or the last attempt's, rejects as before (fail closed:
 * nothing starts on a bus it could not check).
 */
export async function ensureBus(nc: NatsConnection, opts: BusSetupOptions = {}): Promise<{ jsm: JetStreamManager; policyKv: KV; nonceKv: KV }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ensureBusOnce(nc, opts);
    } catch (e) {
      if (attempt >= ENSURE_ATTEMPTS || !isGone(e)) throw e;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

async function ensureBusOnce(nc: NatsConnection, opts: BusSetupOptions): Promise<{ jsm: JetStreamManager; policyKv: KV; nonceKv: KV }> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, STREAMS.tasks, {
    subjects: [SUBJECTS.taskSubmit],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_msg_size: MAX_MESSAGE_BYTES,
  });
  await ensureStream(jsm, STREAMS.evidence, {
    subjects: [SUBJECTS.evidenceAll],
    storage: StorageType.File,
    max_age: ns(opts.evidenceMaxAgeMs ?? 10 * 60_000),
    max_msg_size: MAX_MESSAGE_BYTES,
  });
  // Revocations are kept for good (a gateway starting fresh must learn every one). Rollup
  // headers stay refused: any publisher could otherwise purge the revocations with one unsigned
  // message. A heartbeat only matters until the next, so each authority deletes its own previous
  // one by sequence (Authority.heartbeat), and the stream does not grow by one per interval.
  await ensureStream(jsm, STREAMS.gov, {
    subjects: [SUBJECTS.revocation, SUBJECTS.heartbeat],
    storage: StorageType.File,
    max_msg_size: MAX_MESSAGE_BYTES,
    deny_purge: true,
  });
  // Policy: no purge (it would drop every revocation at once). Deleting single messages stays
  // possible (authorities trim their own old heartbeats); the heartbeats' revocation counts catch
  // a revocation deleted that way.
  const required = opts.guards === "required";
  await guardStream(jsm, STREAMS.gov, { deny_purge: true, allow_rollup_hdrs: false }, required);
  await ensureStream(jsm, STREAMS.checkpoints, {
    subjects: ["failclosed.audit.checkpoint.>"],
    storage: StorageType.File,
    max_msg_size: MAX_MESSAGE_BYTES,
  });
  let consumer: Awaited<ReturnType<JetStreamManager["consumers"]["info"]>> | undefined;
  try {
    consumer = await jsm.consumers.info(STREAMS.tasks, TASK_CONSUMER);
  } catch {
    await jsm.consumers
      .add(STREAMS.tasks, {
        durable_name: TASK_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: ns(opts.taskAckWaitMs ?? 30_000),
        max_ack_pending: 10_000,
      })
      .catch(async (e: unknown) => {
        await jsm.consumers.info(STREAMS.tasks, TASK_CONSUMER).catch(() => {
          throw e;
        });
      });
  }
  // The consumer is shared: whoever made it first set its ack wait, and it is left as it is (a
  // gateway tells the server "still working" at a third of the consumer's own). Asked for
  // another, say so: how soon a crashed gateway's task goes to another is not what was asked.
  const askedAckWait = opts.taskAckWaitMs;
  const ackWait = consumer?.config.ack_wait;
  if (askedAckWait !== undefined && ackWait !== undefined && ackWait !== ns(askedAckWait)) {
    try {
      opts.onWarning?.(`the task consumer ${TASK_CONSUMER} exists with an ack wait of ${ackWait / 1e6} ms, not the ${askedAckWait} ms asked for: left as it is (update the consumer to change it)`);
    } catch {
      // a broken warning sink changes nothing here
    }
  }
  const kvm = new Kvm(nc);
  const policyKv = await kvm.create(KV_BUCKETS.policy, { history: 5 });
  const nonceKv = await kvm.create(KV_BUCKETS.nonces, { history: CLAIM_HISTORY });
  // Policy: a claim is for good. Gateways claim with a create that fails if the key ever held a
  // message (claimOnce), so a KV delete only leaves a marker that keeps the claim taken; these
  // guards stop the stream-level ways to remove every trace (purge, message delete, rollup). And
  // each key keeps CLAIM_HISTORY revisions (raised on a bucket made with fewer), so a gateway can
  // tell a denied-copies list put over a held claim from one honest gateways wrote.
  await guardStream(jsm, `KV_${KV_BUCKETS.nonces}`, { deny_purge: true, deny_delete: true, allow_rollup_hdrs: false, max_msgs_per_subject: CLAIM_HISTORY }, required);
  return { jsm, policyKv, nonceKv };
}

/**
 * Claim `key` in the nonce/task-id bucket, cluster-wide and for good: a create that fails if the
 * key ever held a message, a deleted or purged one included (a KV `create` would reuse a deleted
 * key). Resolves on success; rejects with the server's "wrong last sequence" when taken.
 */
export async function claimOnce(js: JetStreamClient, key: string, value: string, revision = 0): Promise<void> {
  await js.publish(`$KV.${KV_BUCKETS.nonces}.${key}`, value, { expect: { lastSubjectSequence: revision } });
}
