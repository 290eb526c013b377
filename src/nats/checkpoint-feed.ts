// Reading a gateway's published audit checkpoints back from JetStream (DESIGN §6: stream
// FAILCLOSED_CHECKPOINTS, subject failclosed.audit.checkpoint.<gatewayId>), for the witness
// (audit/witness.ts). Read-only: an ordered consumer from the first message, no acks, nothing
// created on the server.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { WitnessInput } from "../audit/witness.ts";
import { STREAMS, SUBJECTS, TASK_ID_RE } from "./contract.ts";
import { SubjectReadError, readSubject } from "./read-subject.ts";

export class CheckpointFeedError extends Error {
  override readonly name = "CheckpointFeedError";
}

/**
 * Every message the stream holds for `gatewayId`, in stream order, as stored (bytes unparsed:
 * checking them is the witness's job). Throws CheckpointFeedError when the bus cannot be
 * reached, the stream does not exist, or the whole read takes longer than `timeoutMs`
 * (1,000–600,000 ms; default 30 s): the client's own retries never keep it waiting longer.
 */
export async function readCheckpointFeed(natsUrl: string, gatewayId: string, o: { readonly timeoutMs?: number; readonly afterSeq?: number } = {}): Promise<WitnessInput[]> {
  const out: WitnessInput[] = [];
  await forEachCheckpoint(natsUrl, gatewayId, o, (m) => out.push(m));
  return out;
}

/**
 * readCheckpointFeed, handing each message to `each` as it is read instead of holding them all
 * (the witness checks them one at a time: a flood on the subject must not fill its memory).
 * Resolves with how many messages after `afterSeq` there were, and the last one's stream sequence
 * (`afterSeq` when none).
 */
export async function forEachCheckpoint(natsUrl: string, gatewayId: string, o: { readonly timeoutMs?: number; readonly afterSeq?: number }, each: (m: WitnessInput) => void): Promise<{ read: number; lastSeq: number }> {
  // Gateway ids are subject tokens, like task ids: no wildcard may widen what is read.
  if (!TASK_ID_RE.test(gatewayId)) throw new CheckpointFeedError(`gateway id ${JSON.stringify(gatewayId)} is not a subject token`);
  const timeoutMs = o.timeoutMs ?? 30_000;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1_000 || timeoutMs > 600_000) throw new CheckpointFeedError(`timeout ${timeoutMs} ms is outside 1000–600000`);
  let nc;
  try {
    nc = await connect({ servers: natsUrl, name: "failclosed-witness", timeout: timeoutMs, maxReconnectAttempts: 0 });
  } catch (e) {
    throw new CheckpointFeedError(`cannot reach NATS at ${natsUrl}: ${e instanceof Error ? e.message : String(e)}`);
  }
  // One deadline for the whole read: closing the connection ends whatever is waiting.
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    nc.close().catch(() => undefined);
  }, timeoutMs);
  try {
    // Messages at or before `afterSeq` (stored before the reader's interest began: an earlier
    // run of the same gateway id on a shared server, or read by an earlier pass) are not fetched.
    const after = o.afterSeq ?? 0;
    let read = 0;
    let lastSeq = after;
    await readAll(nc, gatewayId, Math.min(timeoutMs, 5_000), after, (m) => {
      if (m.streamSeq <= after) return;
      read++;
      lastSeq = Math.max(lastSeq, m.streamSeq);
      each(m);
    });
    return { read, lastSeq };
  } catch (e) {
    if (timedOut) throw new CheckpointFeedError(`no complete answer from ${natsUrl} within ${timeoutMs} ms`);
    throw e;
  } finally {
    clearTimeout(deadline);
    await nc.close().catch(() => undefined);
  }
}

async function readAll(nc: NatsConnection, gatewayId: string, fetchExpiresMs: number, afterSeq: number, each: (m: WitnessInput) => void): Promise<void> {
  try {
    await readSubject(jetstream(nc), await jetstreamManager(nc), STREAMS.checkpoints, SUBJECTS.checkpoint(gatewayId), fetchExpiresMs, (m) => each({ bytes: new Uint8Array(m.data), streamSeq: m.seq }), { afterSeq });
  } catch (e) {
    if (e instanceof SubjectReadError) throw new CheckpointFeedError(e.message);
    throw e;
  }
}
