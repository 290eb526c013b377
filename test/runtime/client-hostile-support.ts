// Shared by the client-hostile suites: an attacker on the bus (publish and subscribe, full
// JetStream rights, no gateway private key) and what it watches or sends to a client waiting
// for its outcome. Real nats-server, real gateways (support.ts runtimeWorld).
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { KV_BUCKETS, SUBJECTS, submissionIdOf, taskClaimKey } from "../../src/nats/contract.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `what` every 20 ms for up to `ms`; true once it holds. */
export async function eventually(what: () => boolean, ms = 10_000): Promise<boolean> {
  for (let i = 0; i < ms / 20 && !what(); i++) await sleep(20);
  return what();
}

/** Every message on a task's outcome subject, as its text, and as parsed when it parses. */
export function recordOutcomes(nc: NatsConnection, taskId: string): { texts: string[]; parsed: () => TaskOutcome[]; stop: () => void } {
  const texts: string[] = [];
  const sub = nc.subscribe(SUBJECTS.outcome(taskId), { callback: (_e, m) => void texts.push(m.string()) });
  return {
    texts,
    parsed: () =>
      texts.flatMap((t) => {
        try {
          return [JSON.parse(t) as TaskOutcome];
        } catch {
          return [];
        }
      }),
    stop: () => sub.unsubscribe(),
  };
}

/** The submit messages of `taskId` as they go on the wire: their text and submission ids. */
export function watchSubmits(nc: NatsConnection, taskId: string): { texts: string[]; ids: string[]; stop: () => void } {
  const texts: string[] = [];
  const ids: string[] = [];
  const sub = nc.subscribe(SUBJECTS.taskSubmit, {
    callback: (_e, m) => {
      try {
        const v = JSON.parse(m.string()) as { request?: { payload?: { taskId?: unknown } } };
        if (v.request?.payload?.taskId !== taskId) return;
        texts.push(m.string());
        const id = submissionIdOf(v);
        if (id !== undefined) ids.push(id);
      } catch {
        // not ours
      }
    },
  });
  return { texts, ids, stop: () => sub.unsubscribe() };
}

/** Publish each of `messages` on the task's outcome subject (and its decision subject), then flush. */
export async function sendOutcomes(nc: NatsConnection, taskId: string, messages: (string | Uint8Array)[]): Promise<void> {
  for (const m of messages) {
    nc.publish(SUBJECTS.outcome(taskId), m);
    nc.publish(SUBJECTS.decision(taskId), m);
  }
  await nc.flush();
}

/** Put raw bytes as the task id's claim (a plain KV put, which anyone with rights on the bucket can make). */
export async function putClaim(nc: NatsConnection, taskId: string, value: string | Uint8Array): Promise<void> {
  const kv = await new Kvm(nc).open(KV_BUCKETS.nonces);
  await kv.put(taskClaimKey(taskId), value);
}

/** The task id's claim as text, or null. */
export async function claimText(nc: NatsConnection, taskId: string): Promise<string | null> {
  const e = await (await new Kvm(nc).open(KV_BUCKETS.nonces)).get(taskClaimKey(taskId));
  return e === null ? null : e.string();
}

/** Garbled, unreadable and wrongly shaped messages for a task's outcome subject. */
export function junkOutcomes(taskId: string, submissionId: string): (string | Uint8Array)[] {
  const succeeded = { taskId, gatewayId: "rt-gw", verdict: "allow", codes: [], status: "succeeded", result: { forged: true }, submissionId };
  return [
    "",
    "not json",
    new Uint8Array([0xff, 0xfe, 0x00, 0x01]),
    "[1,2,3]",
    "null",
    "42",
    `"${taskId}"`,
    // Duplicate keys: the second taskId/status would win in JSON.parse.
    `{"taskId":"other","taskId":${JSON.stringify(taskId)},"gatewayId":"rt-gw","verdict":"allow","codes":[],"status":"denied","status":"succeeded","submissionId":${JSON.stringify(submissionId)}}`,
    // Lone surrogate, unsafe integer, deep nesting, __proto__.
    JSON.stringify({ ...succeeded, detail: "\ud800" }),
    `{"taskId":${JSON.stringify(taskId)},"gatewayId":"rt-gw","verdict":"allow","codes":[],"status":"succeeded","decisionSeq":9007199254740993,"submissionId":${JSON.stringify(submissionId)}}`,
    `{"taskId":${JSON.stringify(taskId)},"result":${"[".repeat(5_000)}${"]".repeat(5_000)}}`,
    `{"__proto__":{"status":"succeeded"},"taskId":${JSON.stringify(taskId)},"verdict":"allow","codes":[],"status":"succeeded","submissionId":${JSON.stringify(submissionId)}}`,
    // Readable, unsigned: forged answers of every kind.
    JSON.stringify(succeeded),
    JSON.stringify({ ...succeeded, verdict: "deny", status: "denied", codes: ["REVOKED"], result: undefined }),
    JSON.stringify({ ...succeeded, status: "failed", timedOut: true }),
    JSON.stringify({ ...succeeded, late: true }),
    JSON.stringify({ ...succeeded, sig: "AAAA", signer: "not-a-key" }),
    JSON.stringify({ ...succeeded, sig: 5, signer: { k: 1 } }),
    JSON.stringify({ ...succeeded, signer: "x".repeat(10_000), sig: "y" }),
    // Oversized for the client (beyond the server's max_payload it is refused by the server anyway).
    JSON.stringify({ ...succeeded, result: "z".repeat(900_000) }),
  ];
}
