// The bus floor, for the end-to-end benchmark: one process doing, per task, exactly the wire
// and storage work a gateway does — pull the submission from the shared work-queue consumer,
// take the artifact and lineage from the evidence stream, claim the nonce with a KV create,
// write evidence, decision and outcome records in synced group-committed LevelDB batches,
// publish the decision and the outcome, ack — and none of the governance work (no parsing
// beyond JSON.parse, no signature, no decide, no Cedar, no task machine, no Merkle tree).
// Whatever rate this reaches on a machine bounds any gateway speaking the same contract there
// with the same client library. It allows everything: it is a yardstick, never a gateway.
// argv: natsUrl id dataDir
import { jetstream, type JsMsg } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Level } from "level";
import { STREAMS, SUBJECTS, TASK_CONSUMER, parseEvidenceSubject, taskClaimKey } from "../src/nats/contract.ts";
import { claimOnce, ensureBus } from "../src/nats/setup.ts";

const [natsUrl, id, dir] = process.argv.slice(2);
if (!natsUrl || !id || !dir) {
  console.error("usage: bus-floor-proc natsUrl id dataDir");
  process.exit(2);
}

// The gateway's own client settings (gateway.ts #start), so the floor stays its yardstick.
const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
await ensureBus(nc);
const js = jetstream(nc);
const db = new Level<string, string>(dir, { valueEncoding: "utf8" });
await db.open();

// Group commit: every record queued while a batch is being synced goes into the next one.
let seq = 0;
let queued: { key: string; value: string }[] = [];
let waiting: { resolve: () => void; reject: (e: unknown) => void }[] = [];
let writing = false;
async function flush(): Promise<void> {
  writing = true;
  while (queued.length > 0) {
    const ops = queued.map((o) => ({ type: "put" as const, key: o.key, value: o.value }));
    const batch = waiting;
    queued = [];
    waiting = [];
    try {
      await db.batch(ops, { sync: true });
      for (const w of batch) w.resolve();
    } catch (e) {
      for (const w of batch) w.reject(e);
    }
  }
  writing = false;
}
function write(values: string[]): Promise<void> {
  for (const value of values) queued.push({ key: `r/${(seq++).toString(16).padStart(14, "0")}`, value });
  return new Promise<void>((resolve, reject) => {
    waiting.push({ resolve, reject });
    if (!writing) void flush();
  });
}

type Evidence = { artifact?: string; lineage?: string };
const evidence = new Map<string, Evidence>();
const evidenceWaiters = new Map<string, () => void>();

async function followEvidence(): Promise<void> {
  const c = await js.consumers.get(STREAMS.evidence);
  for await (const m of await c.consume()) {
    const where = parseEvidenceSubject(m.subject);
    if (where === undefined) continue;
    const e = evidence.get(where.taskId) ?? {};
    e[where.kind] = m.string();
    evidence.set(where.taskId, e);
    if (e.artifact !== undefined && e.lineage !== undefined) evidenceWaiters.get(where.taskId)?.();
  }
}

async function evidenceFor(taskId: string): Promise<Required<Evidence>> {
  const have = (): Required<Evidence> | undefined => {
    const e = evidence.get(taskId);
    return e?.artifact !== undefined && e.lineage !== undefined ? { artifact: e.artifact, lineage: e.lineage } : undefined;
  };
  let e = have();
  while (e === undefined) {
    await new Promise<void>((r) => evidenceWaiters.set(taskId, r));
    e = have();
  }
  evidenceWaiters.delete(taskId);
  evidence.delete(taskId);
  return e;
}

// A decision message of the gateway's size: sixteen passed checks.
const CHECKS = ["governance", "schema", "evidence", "request-signature", "chain-signatures", "lineage-signatures", "issuer", "identity", "validity", "delegation", "lineage", "revocation", "environment", "policy", "task", "nonce"].map((check) => ({ check, ok: true }));

async function runTask(m: JsMsg): Promise<void> {
  const submit = m.string();
  const body = JSON.parse(submit) as { request: { payload: { taskId: string } } };
  const taskId = body.request.payload.taskId;
  const ev = await evidenceFor(taskId);
  const artifact = JSON.parse(ev.artifact) as { payload: { nonce: string } };
  // The two create-only claims a gateway makes, in its order: the nonce, then the task id.
  const claim = JSON.stringify({ taskId, nonce: artifact.payload.nonce, submissionId: "s".repeat(43), gatewayId: id });
  await claimOnce(js, artifact.payload.nonce, claim);
  await claimOnce(js, taskClaimKey(taskId), claim);
  const decision = { taskId, verdict: "allow", checks: CHECKS, reasons: [] };
  // The records a gateway writes: three evidence records, then the decision with its input.
  await write([submit, ev.artifact, ev.lineage, JSON.stringify({ input: { submit, artifact: ev.artifact, lineage: ev.lineage }, decision })]);
  nc.publish(SUBJECTS.decision(taskId), JSON.stringify(decision));
  const outcome = { taskId, status: "succeeded", resultDigest: "q".repeat(43) };
  await write([JSON.stringify(outcome)]);
  nc.publish(SUBJECTS.outcome(taskId), JSON.stringify(outcome));
  m.ack();
}

async function pullTasks(): Promise<void> {
  const c = await js.consumers.get(STREAMS.tasks, TASK_CONSUMER);
  let inFlight = 0;
  const slotFree: (() => void)[] = [];
  for await (const m of await c.consume({ max_messages: 512 })) {
    while (inFlight >= 512) await new Promise<void>((r) => slotFree.push(r));
    inFlight++;
    runTask(m)
      .catch((e: unknown) => stopping || console.error(`bus floor task failed: ${String(e)}`))
      .finally(() => {
        inFlight--;
        slotFree.shift()?.();
      });
  }
}

let stopping = false;
void followEvidence().catch((e: unknown) => stopping || console.error(`evidence feed ended: ${String(e)}`));
void pullTasks().catch((e: unknown) => stopping || console.error(`task feed ended: ${String(e)}`));
process.stdout.write("ready\n");
const stop = (): void => {
  stopping = true;
  nc.close()
    .then(() => db.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
