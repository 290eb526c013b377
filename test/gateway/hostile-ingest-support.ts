// Shared by the hostile-ingest suites: one real nats-server, authority and gateway per suite
// (testkit/harness.ts), raw publishes of attacker bytes on every subject a gateway reads, and the
// closing check of every test: the gateway's audit log replays clean, with the decisions expected.
import { connect as connectTcp, type Socket } from "node:net";
import { afterAll, beforeAll, expect } from "vitest";
import { jetstream, jetstreamManager, type JetStreamClient, type PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import type { AuditRecord } from "../../src/audit/records.ts";
import type { DenialCode, SignedArtifact, SignedLineage, SignedRequest } from "../../src/core/types.ts";
import type { Gateway, GatewayOptions } from "../../src/gateway/gateway.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { transferRequest } from "./client-support.ts";

export const agent = namedKey("agent-0");
export const authorityKey = namedKey("authority");
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

export interface HostileWorld {
  hh: Harness;
  gw: Gateway;
  js: JetStreamClient;
  /** Task ids whose handler ran, as many times as it ran. */
  ran: string[];
  /** Decisions each test expects in the log, checked (with a clean replay) by expectLogClean. */
  expected: Map<string, Expected>;
}

export interface Expected {
  verdict: "allow" | "deny";
  /** Every code listed must be among the recorded decision's reasons (deny only). */
  codes?: DenialCode[];
}

let counter = 0;

/** One harness and gateway for the suite (closed after it); the gateway's "transfer" handler records each run. */
export function hostileWorld(gateway: Partial<GatewayOptions> = {}): () => HostileWorld {
  let w: HostileWorld | undefined;
  beforeAll(async () => {
    const hh = await startHarness({ gateways: 0 });
    const gw = await hh.startGateway(gateway);
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => {
      ran.push(taskId);
      return { ok: true };
    });
    w = { hh, gw, js: jetstream(hh.runtime.nc), ran, expected: new Map() };
  });
  afterAll(async () => {
    await w?.hh.close();
  });
  return () => {
    if (w === undefined) throw new Error("world not started");
    return w;
  };
}

/** A root grant for `taskId` by the harness authority (its origin lineage published), held by `agent`. */
export async function grant(w: HostileWorld, taskId: string, metadata?: { [k: string]: JsonValue }): Promise<{ artifact: SignedArtifact; lineage: SignedLineage }> {
  const now = Date.now();
  return w.hh.authority.grant({
    taskId,
    holder: agent.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`hostile-${taskId}-${counter++}`),
    attribution: { initiator: "t", reason: "hostile ingest" },
    ...(metadata !== undefined ? { metadata } : {}),
  });
}

/** The outcome the gateway reached for `taskId` (the `nth`, from 1), waiting up to `ms`; undefined if none came. */
export async function outcomeOf(w: HostileWorld, taskId: string, ms = 10_000, nth = 1): Promise<TaskOutcome | undefined> {
  const find = () => w.hh.outcomes.filter((o) => o.taskId === taskId)[nth - 1];
  for (let i = 0; i < ms / 20 && find() === undefined; i++) await sleep(20);
  return find();
}

/** Publish raw bytes on a stream subject; resolves with the ack, or the error the server gave. */
export async function publishRaw(w: HostileWorld, subject: string, data: Uint8Array | string, hdrs?: Record<string, string>): Promise<PubAck | Error> {
  const h = hdrs === undefined ? undefined : natsHeaders();
  for (const [k, v] of Object.entries(hdrs ?? {})) h!.set(k, v);
  try {
    return await w.js.publish(subject, typeof data === "string" ? enc(data) : data, h !== undefined ? { headers: h } : {});
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** Publish junk on the submit subject: the task id the gateway names it by, and its expected deny. */
export async function submitJunk(w: HostileWorld, data: Uint8Array | string, named?: string): Promise<string> {
  const ack = await publishRaw(w, SUBJECTS.taskSubmit, data);
  if (ack instanceof Error) throw ack;
  return named ?? `malformed-${ack.seq}`;
}

/** A valid transfer: grant, evidence and submission published as bytes of our own; resolves with the submission text. */
export async function validSubmission(w: HostileWorld, taskId = newTaskId()): Promise<{ taskId: string; artifact: SignedArtifact; request: SignedRequest; args: JsonValue; body: string }> {
  const { artifact } = await grant(w, taskId);
  const args = { amount: 1 };
  const request = transferRequest(taskId, artifact, args, agent, 60_000);
  return { taskId, artifact, request, args, body: JSON.stringify({ request, args }) };
}

/** A valid task end to end through the runtime: it must be allowed and run once. */
export async function expectValidTaskRuns(w: HostileWorld): Promise<string> {
  const s = await validSubmission(w);
  await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
  await publishRaw(w, SUBJECTS.taskSubmit, s.body);
  const o = await outcomeOf(w, s.taskId);
  expect(o, `valid task ${s.taskId}`).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(w.ran.filter((t) => t === s.taskId)).toHaveLength(1);
  w.expected.set(s.taskId, { verdict: "allow" });
  return s.taskId;
}

/** Expect the gateway's deny of `taskId` with `code` among its codes, that it never ran, and record it as expected in the log. */
export async function expectDenied(w: HostileWorld, taskId: string, code: DenialCode, ms = 10_000): Promise<TaskOutcome> {
  const o = await outcomeOf(w, taskId, ms);
  expect(o, `outcome of ${taskId}`).toBeDefined();
  expect(o!.verdict, `${taskId}: ${JSON.stringify(o!.codes)} ${o!.detail ?? ""}`).toBe("deny");
  expect(o!.codes, `${taskId}: ${o!.detail ?? ""}`).toContain(code);
  expect(w.ran).not.toContain(taskId);
  w.expected.set(taskId, { verdict: "deny", codes: [code] });
  return o!;
}

/** Every decision record in the gateway's log, by task id (in log order). */
export async function decisionsInLog(gw: Gateway): Promise<Map<string, { verdict: string; reasons: string[] }[]>> {
  const out = new Map<string, { verdict: string; reasons: string[] }[]>();
  const store = gw.ledger.store;
  for (let seq = 0; seq <= store.size; seq++) {
    const r = await store.getRecord(seq).catch((): AuditRecord | undefined => undefined);
    if (r?.type !== "decision") continue;
    const list = out.get(r.taskId) ?? [];
    list.push({ verdict: r.decision.verdict, reasons: [...r.decision.reasons] });
    out.set(r.taskId, list);
  }
  return out;
}

/**
 * The end of every test: the log replays clean (every decision re-derived, no divergence), and
 * holds each expected task's decision with its verdict and codes (the last decision of the task id).
 */
export async function expectLogClean(w: HostileWorld): Promise<void> {
  const rep = await replayGateway(w.gw);
  expect(rep.divergences).toEqual([]);
  expect(rep.ok).toBe(true);
  const log = await decisionsInLog(w.gw);
  for (const [taskId, e] of w.expected) {
    const ds = log.get(taskId);
    expect(ds, `decision of ${taskId} in the log`).toBeDefined();
    const d = ds!.at(-1)!;
    expect(d.verdict, `${taskId}: ${d.reasons.join(",")}`).toBe(e.verdict);
    for (const c of e.codes ?? []) expect(d.reasons, taskId).toContain(c);
  }
  // No task ran that the log does not allow.
  for (const t of w.ran) expect(log.get(t)?.some((d) => d.verdict === "allow"), t).toBe(true);
  w.expected.clear();
}

/** The stream's last sequence now (work-queue messages go once acknowledged; sequences stay). */
export async function lastSeq(w: HostileWorld, stream: string = STREAMS.tasks): Promise<number> {
  const jsm = await jetstreamManager(w.hh.runtime.nc);
  return (await jsm.streams.info(stream)).state.last_seq;
}

/**
 * Speak the NATS client protocol on a socket of our own, to send what nats.js never would
 * (truncated or garbled header blocks). Sends CONNECT, then `frames`, then PING, and resolves with
 * everything the server answered once it answers PONG or closes the connection.
 */
export async function rawProtocol(url: string, frames: Buffer[]): Promise<string> {
  const u = new URL(url);
  const sock: Socket = connectTcp(Number(u.port), u.hostname);
  let got = "";
  let sent = false;
  return new Promise<string>((resolve) => {
    const done = (): void => {
      sock.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, 2_000);
    sock.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (!sent && got.includes("INFO ")) {
        sent = true;
        sock.write(Buffer.concat([Buffer.from('CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n'), ...frames, Buffer.from("PING\r\n")]));
      }
      if (sent && /PONG\r\n/.test(got)) {
        clearTimeout(timer);
        done();
      }
    });
    sock.on("error", () => undefined);
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

/** An HPUB frame whose header block is `hdr` as given (no fixing up), announced with `hdrLen` (default its true length). */
export function hpub(subject: string, hdr: string, body: string, hdrLen?: number): Buffer {
  const h = Buffer.from(hdr, "latin1");
  const b = Buffer.from(body, "utf8");
  const hl = hdrLen ?? h.byteLength;
  return Buffer.concat([Buffer.from(`HPUB ${subject} ${hl} ${hl + b.byteLength}\r\n`), h, b, Buffer.from("\r\n")]);
}
