// Test fixture (not a suite): ensureBus as the release before the stream guards made the bus
// (guard-upgrade.test.ts upgrades from it). Kept verbatim apart from this comment.
// Creates the streams and buckets of the wire contract if they are missing. Idempotent, so
// every gateway, authority and agent may call it at start.
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { KV_BUCKETS, MAX_MESSAGE_BYTES, STREAMS, SUBJECTS, TASK_CONSUMER } from "../../src/nats/contract.ts";

export interface BusSetupOptions {
  /** How long evidence stays in the stream (ms). Default 10 minutes. */
  evidenceMaxAgeMs?: number;
  /** Redelivery wait for an unacknowledged task (ms). Default 30 s. */
  taskAckWaitMs?: number;
}

const ns = (ms: number) => ms * 1_000_000;

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

export async function ensureBus(nc: NatsConnection, opts: BusSetupOptions = {}): Promise<{ jsm: JetStreamManager; policyKv: KV; nonceKv: KV }> {
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
  });
  await ensureStream(jsm, STREAMS.checkpoints, {
    subjects: ["failclosed.audit.checkpoint.>"],
    storage: StorageType.File,
    max_msg_size: MAX_MESSAGE_BYTES,
  });
  try {
    await jsm.consumers.info(STREAMS.tasks, TASK_CONSUMER);
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
  const kvm = new Kvm(nc);
  const policyKv = await kvm.create(KV_BUCKETS.policy, { history: 5 });
  const nonceKv = await kvm.create(KV_BUCKETS.nonces, { history: 1 });
  return { jsm, policyKv, nonceKv };
}
