// Reading a gateway's published audit checkpoints back from JetStream (DESIGN §6: stream
// FAILCLOSED_CHECKPOINTS, subject failclosed.audit.checkpoint.<gatewayId>), for the witness
// (audit/witness.ts). Read-only: an ordered consumer from the first message, no acks, nothing
// created on the server.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { WitnessInput } from "../audit/witness.ts";
import { STREAMS, SUBJECTS, TASK_ID_RE } from "./contract.ts";

export class CheckpointFeedError extends Error {
  override readonly name = "CheckpointFeedError";
}

/**
 * Every message the stream holds for `gatewayId`, in stream order, as stored (bytes unparsed:
 * checking them is the witness's job). Throws CheckpointFeedError when the bus cannot be
 * reached, the stream does not exist, or reading stalls for `timeoutMs`.
 */
export async function readCheckpointFeed(natsUrl: string, gatewayId: string, o: { readonly timeoutMs?: number } = {}): Promise<WitnessInput[]> {
  // Gateway ids are subject tokens, like task ids: no wildcard may widen what is read.
  if (!TASK_ID_RE.test(gatewayId)) throw new CheckpointFeedError(`gateway id ${JSON.stringify(gatewayId)} is not a subject token`);
  const timeoutMs = o.timeoutMs ?? 5_000;
  let nc;
  try {
    nc = await connect({ servers: natsUrl, name: "failclosed-witness", timeout: timeoutMs, maxReconnectAttempts: 0 });
  } catch (e) {
    throw new CheckpointFeedError(`cannot reach NATS at ${natsUrl}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    const subject = SUBJECTS.checkpoint(gatewayId);
    let total: number;
    try {
      const info = await (await jetstreamManager(nc)).streams.info(STREAMS.checkpoints, { subjects_filter: subject });
      total = info.state.subjects?.[subject] ?? 0;
    } catch (e) {
      throw new CheckpointFeedError(`no ${STREAMS.checkpoints} stream at ${natsUrl}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const out: WitnessInput[] = [];
    if (total === 0) return out;
    const consumer = await jetstream(nc).consumers.get(STREAMS.checkpoints, { filter_subjects: subject });
    let caughtUp = false;
    while (!caughtUp && out.length < total) {
      const batch = await consumer.fetch({ max_messages: Math.min(1024, total - out.length), expires: timeoutMs });
      let got = 0;
      for await (const m of batch) {
        got++;
        out.push({ bytes: new Uint8Array(m.data), streamSeq: m.seq });
        if (m.info.pending === 0) caughtUp = true;
      }
      if (got === 0) throw new CheckpointFeedError(`reading ${subject} stalled after ${out.length} of ${total} messages`);
    }
    return out;
  } finally {
    await nc.close().catch(() => undefined);
  }
}
