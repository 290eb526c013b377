// Hostile answers to the witness's consistency-proof requests: someone else on the bus answers
// first (garbled, huge, forged, for other sizes, a genuine proof replayed for other sizes, a
// fake no-responders status, a flood of replies, BUSY for ever), the gateway answers slowly, or
// nobody answers. None of it may pass a checkpoint unproved or accuse the gateway (a finding);
// the gateway's own signed proof, when it comes, is used. Real nats-server, real LevelDB log.
import { join } from "node:path";
import { headers, type Msg, type Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSISTENCY_PROOF_KIND } from "../../src/core/types.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { answerProofRequest, type ProofReply } from "../../src/nats/proof-service.ts";
import { tempDir } from "./support.ts";
import { GW_KEY, GatewayLog, ROGUE, publishCheckpoint, readWitness, startBus, witnessRun, type Bus } from "./witness-hostile-support.ts";

const ID = "gw-proofs";
let bus: Bus;
let log: GatewayLog;
const t = tempDir("fc-witness-hostile-proofs-");
let runs = 0;
/** The sizes of the gateway's three checkpoints. */
let S1 = 0;
let S2 = 0;
let S3 = 0;
/** Genuine signed proofs the attacker captured off the bus, by "m-n". */
const captured = new Map<string, ProofReply>();

beforeAll(async () => {
  bus = await startBus();
  log = await GatewayLog.open(ID, join(t.dir, "log"));
  for (let k = 0; k < 3; k++) await publishCheckpoint(bus, ID, JSON.stringify(await log.grow(3 + k, `p${k}`)));
  [S1, S2, S3] = log.checkpoints.map((c) => c.payload.size) as [number, number, number];
  for (const [m, n] of [
    [S1, S2],
    [S2, S3],
    [S1, S3],
  ] as const) {
    const a = answerProofRequest(new TextEncoder().encode(JSON.stringify({ kind: "consistency", size1: m, size2: n })), log.store, undefined, { origin: ID, gatewayKey: GW_KEY });
    captured.set(`${m}-${n}`, a);
  }
}, 30_000);

afterAll(async () => {
  await log.close();
  await bus.close();
  t.cleanup();
});

type Request = { size1: number; size2: number };
const parse = (m: Msg): Request => JSON.parse(new TextDecoder().decode(m.data)) as Request;

/** Another client answering every proof request, at once, with whatever `answer` sends (any number of messages). */
function responder(answer: (req: Request, m: Msg) => void): { stop: () => void; count: () => number } {
  let n = 0;
  const sub: Subscription = bus.nc.subscribe(SUBJECTS.proof(ID), {
    callback: (_e, m) => {
      n++;
      answer(parse(m), m);
    },
  });
  return { stop: () => sub.unsubscribe(), count: () => n };
}

/** The gateway, answering `delayMs` after each request with its signed proof. */
function gateway(delayMs: number): { stop: () => void } {
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const sub = bus.nc.subscribe(SUBJECTS.proof(ID), {
    callback: (_e, m) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        m.respond(JSON.stringify(answerProofRequest(m.data, log.store, undefined, { origin: ID, gatewayKey: GW_KEY })));
      }, delayMs);
      timers.add(timer);
    },
  });
  return {
    stop: () => {
      sub.unsubscribe();
      for (const timer of timers) clearTimeout(timer);
    },
  };
}

const fresh = (): string => join(t.dir, `w-${++runs}.json`);
const proofPayload = (q: Request, over: Record<string, unknown> = {}) => ({
  kind: CONSISTENCY_PROOF_KIND,
  origin: ID,
  signer: GW_KEY.keyId,
  size1: q.size1,
  size2: q.size2,
  root1: toB64u(log.store.rootAt(q.size1)),
  root2: toB64u(log.store.rootAt(q.size2)),
  proof: [toB64u(new Uint8Array(32).fill(1))],
  ...over,
});

describe("someone answers first; the gateway's signed proof follows and is used", () => {
  const first: [string, (q: Request, m: Msg) => void][] = [
    ["garbled bytes", (_q, m) => m.respond(new Uint8Array([0xff, 0x00, 0x7b, 0x22]))],
    ["an empty reply", (_q, m) => m.respond(new Uint8Array(0))],
    ["a duplicate-key reply", (q, m) => m.respond(`{"ok":true,"ok":true,"signed":${JSON.stringify(signPayload("consistency", proofPayload(q), ROGUE))}}`)],
    ["a huge reply (512 KiB)", (_q, m) => m.respond(`{"ok":true,"signed":"${"x".repeat(512 * 1024)}"}`)],
    ["deeply nested", (_q, m) => m.respond(`${"[".repeat(5_000)}${"]".repeat(5_000)}`)],
    ["a proof of 10,000 nodes signed by another key", (q, m) => m.respond(JSON.stringify({ ok: true, signed: signPayload("consistency", proofPayload(q, { signer: ROGUE.keyId, proof: Array.from({ length: 10_000 }, () => "A".repeat(43)) }), ROGUE) }))],
    ["the gateway's key id as signer, signed by another key", (q, m) => m.respond(JSON.stringify({ ok: true, signed: signPayload("consistency", proofPayload(q), ROGUE) }))],
    ["a forged proof with the sizes swapped", (q, m) => m.respond(JSON.stringify({ ok: true, signed: signPayload("consistency", proofPayload({ size1: q.size2, size2: q.size1 }, { signer: ROGUE.keyId }), ROGUE) }))],
    ["a genuine proof for other sizes, replayed", (q, m) => m.respond(JSON.stringify(captured.get(q.size1 === S1 ? `${S1}-${S3}` : `${S1}-${S2}`)))],
    ["a fake no-responders status", (_q, m) => m.respond(new Uint8Array(0), { headers: headers(503, "No Responders") })],
    ["a refusal, BUSY", (_q, m) => m.respond(JSON.stringify({ ok: false, code: "BUSY", detail: "later" }))],
    ["a refusal with a 60 KiB detail", (_q, m) => m.respond(JSON.stringify({ ok: false, code: { x: 1 }, detail: "d".repeat(60_000) }))],
    [
      "a flood of 2,000 junk replies",
      (q, m) => {
        for (let k = 0; k < 2_000; k++) m.respond(k % 2 === 0 ? `junk ${k}` : JSON.stringify({ ok: true, signed: signPayload("consistency", proofPayload(q, { signer: ROGUE.keyId }), ROGUE) }));
      },
    ],
  ];

  it.each(first)("%s", async (name, answer) => {
    const forger = responder(answer);
    const real = gateway(50);
    try {
      const file = fresh();
      const r = await witnessRun(bus, ID, file);
      expect(r.code, `${name}: ${JSON.stringify(r.report)}`).toBe(0);
      expect(r.report).toMatchObject({ ok: true, consistency: "proved", proofsVerified: 2, unproven: 0, findings: [], consistentThrough: S3 });
      expect(readWitness(file).checkpoints).toEqual(log.checkpoints);
      expect(forger.count()).toBeGreaterThanOrEqual(2);
    } finally {
      forger.stop();
      real.stop();
    }
  });

  it("a genuine proof for exactly the sizes asked, replayed by someone else, is the gateway's word: it proves", async () => {
    const forger = responder((q, m) => m.respond(JSON.stringify(captured.get(`${q.size1}-${q.size2}`))));
    try {
      const r = await witnessRun(bus, ID, fresh());
      expect(r.code, JSON.stringify(r.report)).toBe(0);
      expect(r.report).toMatchObject({ consistency: "proved", proofsVerified: 2, findings: [] });
    } finally {
      forger.stop();
    }
  });
});

describe("no signed proof comes: the checkpoints are kept unproved (exit 2), no finding", () => {
  const alone: [string, ((q: Request, m: Msg) => void) | undefined][] = [
    ["nobody answers", undefined],
    ["only forged proofs", (q, m) => m.respond(JSON.stringify({ ok: true, signed: signPayload("consistency", proofPayload(q), ROGUE) }))],
    ["only genuine proofs for other sizes", (q, m) => m.respond(JSON.stringify(captured.get(q.size1 === S1 ? `${S1}-${S3}` : `${S1}-${S2}`)))],
    ["BUSY for ever", (_q, m) => m.respond(JSON.stringify({ ok: false, code: "BUSY", detail: "later" }))],
    ["a request that is answered with nothing but silence after a refusal", (_q, m) => m.respond(JSON.stringify({ ok: false, code: "BAD_SIZE", detail: "no" }))],
  ];

  it.each(alone)("%s", async (name, answer) => {
    const forger = answer !== undefined ? responder(answer) : undefined;
    try {
      const file = fresh();
      const r = await witnessRun(bus, ID, file, "--timeout-ms", "1500");
      expect(r.code, `${name}: ${JSON.stringify(r.report)}`).toBe(2);
      expect(r.report).toMatchObject({ ok: false, consistency: "incomplete", proofsVerified: 0, findings: [], consistentThrough: S1, unproven: 2 });
      expect(readWitness(file)).toMatchObject({ consistentThrough: S1, checkpoints: log.checkpoints });
    } finally {
      forger?.stop();
    }
  });

  it("a gateway slower than the whole timeout: exit 2; the next run, with it answering in time, proves them", async () => {
    const file = fresh();
    let slow = gateway(5_000);
    try {
      const r = await witnessRun(bus, ID, file, "--timeout-ms", "1000");
      expect(r.code, JSON.stringify(r.report)).toBe(2);
      expect(r.report).toMatchObject({ findings: [], consistentThrough: S1 });
    } finally {
      slow.stop();
    }
    slow = gateway(20);
    try {
      const r = await witnessRun(bus, ID, file);
      expect(r.code, JSON.stringify(r.report)).toBe(0);
      expect(r.report).toMatchObject({ consistency: "proved", consistentThrough: S3, findings: [] });
    } finally {
      slow.stop();
    }
  });
});
