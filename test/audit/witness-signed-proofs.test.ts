// Consistency proofs count only when the gateway's own key signed them. Anyone on the bus can
// answer on failclosed.audit.proof.<id>, first: an unsigned, foreign-signed or mis-addressed
// reply must neither convict an honest gateway (INCONSISTENT, exit 1) nor mask its real answer,
// while a proof the checkpoints' key signed that fails is evidence, reported with the signed
// reply. Real nats-server, real gateways and their stores; the gateway's proof service is
// started here (serveConsistencyProofs, as the gateway does) so that it can be slowed down to
// answer after a forger.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { verifyConsistency } from "../../src/audit/merkle.ts";
import type { CheckpointPayload } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { proveChain } from "../../src/audit/witness.ts";
import { CONSISTENCY_PROOF_KIND, type ConsistencyProofPayload, type SignedConsistencyProof } from "../../src/core/types.ts";
import { fromB64u, toB64u } from "../../src/crypto/base64url.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { signPayload, verifySigned, type Signed } from "../../src/crypto/signing.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { answerProofRequest, checkSignedProof, requestConsistencyProof, serveConsistencyProofs, type ProofAnswer, type ProofSource } from "../../src/nats/proof-service.ts";
import type { Gateway } from "../../src/gateway/gateway.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { runTasks, type WitnessReport } from "./witness-support.ts";
import { captureIo, outcomeEntry, steppingClock, tempDir } from "./support.ts";

const GW_KEY = namedKey("gateway-1");
const OTHER_KEY = namedKey("gateway-2");
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

let h: Harness;
const t = tempDir("fc-witness-signed-");

beforeAll(async () => {
  h = await startHarness({ gateways: 0, gateway: { checkpointEvery: 4 } });
}, 60_000);

afterAll(async () => {
  await h.close();
  t.cleanup();
});

/** A gateway serving no proofs itself, with a log of several published checkpoints. */
async function gatewayWithLog(id: string): Promise<Gateway> {
  const g = await h.startGateway({ id, key: GW_KEY, proofRequestsPerSec: 0 });
  await runTasks(h, g, 3, id);
  return g;
}

async function witnessRun(gatewayId: string, file: string, ...more: string[]): Promise<{ code: number; report: WitnessReport }> {
  const io = captureIo();
  const code = await runAudit(["witness", "--nats", h.url, "--gateway-id", gatewayId, "--gateway-key", GW_KEY.keyId, "--out", file, "--json", "--timeout-ms", "3000", ...more], io);
  return { code, report: JSON.parse(io.stdout()) as WitnessReport };
}

/** The gateway's answer, as it would send it, `delayMs` after the request (a slow gateway). */
function slowGateway(gatewayId: string, store: ProofSource, delayMs: number): { stop: () => void } {
  const sub = h.runtime.nc.subscribe(SUBJECTS.proof(gatewayId), {
    callback: (_e, m) => {
      setTimeout(() => m.respond(JSON.stringify(answerProofRequest(m.data, store, undefined, { origin: gatewayId, gatewayKey: GW_KEY }))), delayMs);
    },
  });
  return { stop: () => sub.unsubscribe() };
}

type Forgery = (req: { size1: number; size2: number }, store: ProofSource) => unknown;

/** Someone else on the bus answering every proof request at once. */
function forger(gatewayId: string, store: ProofSource, forge: Forgery): { stop: () => void; count: () => number } {
  let n = 0;
  const sub = h.runtime.nc.subscribe(SUBJECTS.proof(gatewayId), {
    callback: (_e, m) => {
      n++;
      m.respond(JSON.stringify(forge(JSON.parse(new TextDecoder().decode(m.data)) as { size1: number; size2: number }, store)));
    },
  });
  return { stop: () => sub.unsubscribe(), count: () => n };
}

const WRONG_PROOF = [toB64u(new Uint8Array(32).fill(1)), toB64u(new Uint8Array(32).fill(2))];

/** A payload with the log's true roots and a wrong proof, for whatever `over` changes. */
function wrongPayload(gatewayId: string, q: { size1: number; size2: number }, store: ProofSource, over: Partial<ConsistencyProofPayload> = {}): ConsistencyProofPayload {
  return {
    kind: CONSISTENCY_PROOF_KIND,
    origin: gatewayId,
    signer: GW_KEY.keyId,
    size1: q.size1,
    size2: q.size2,
    root1: toB64u(store.rootAt(q.size1)),
    root2: toB64u(store.rootAt(q.size2)),
    proof: WRONG_PROOF,
    ...over,
  };
}

const signedReply = (payload: ConsistencyProofPayload, key: KeyPair) => ({ ok: true, signed: signPayload("consistency", payload, key) });

describe("a forged reply answering first", () => {
  const forgeries: Record<string, (id: string) => Forgery> = {
    // The shape replies had before they were signed.
    "the old unsigned format": () => (q) => ({ ok: true, kind: "consistency", size1: q.size1, size2: q.size2, proof: WRONG_PROOF }),
    "the signed format with a made-up signature": (id) => (q, s) => ({ ok: true, signed: { payload: wrongPayload(id, q, s), sig: "A".repeat(86) } }),
    "a key other than the checkpoints'": (id) => (q, s) => signedReply(wrongPayload(id, q, s, { signer: OTHER_KEY.keyId }), OTHER_KEY),
    "an unsigned refusal": () => () => ({ ok: false, code: "BAD_SIZE", detail: "no such size" }),
  };

  it.each(Object.keys(forgeries))("is not an accusation, and the gateway's signed proof that follows is used: %s", async (name) => {
    const id = `gw-s${Object.keys(forgeries).indexOf(name)}`;
    const g = await gatewayWithLog(id);
    const store = g.ledger.store;
    // The forger answers at once; the gateway 100 ms later (within the grace after a refusal).
    const forged = forger(id, store, forgeries[name]!(id));
    const real = slowGateway(id, store, 100);
    try {
      const r = await witnessRun(id, join(t.dir, `${id}.json`), "--gateway-key", OTHER_KEY.keyId);
      expect(r.code, JSON.stringify(r.report)).toBe(0);
      expect(r.report).toMatchObject({ ok: true, consistency: "proved", unproven: 0, findings: [] });
      expect(r.report.held).toBeGreaterThanOrEqual(3);
      expect(r.report.proofsVerified).toBe(r.report.held - 1);
      expect(r.report.consistentThrough).toBe(r.report.largestSize);
      expect(forged.count()).toBe(r.report.held - 1);
    } finally {
      forged.stop();
      real.stop();
      await g.stop();
    }
  });
});

describe("with only forged replies (the gateway away)", () => {
  // Each is no answer: the checkpoints stay unproved (exit 2), with the reason in `stopped`.
  const cases: [string, (id: string) => Forgery, RegExp][] = [
    ["unsigned", () => (q) => ({ ok: true, kind: "consistency", size1: q.size1, size2: q.size2, proof: WRONG_PROOF }), /not \{"ok":true,"signed":…\}/],
    ["bad signature", (id) => (q, s) => ({ ok: true, signed: { ...signPayload("consistency", wrongPayload(id, q, s), GW_KEY), sig: signPayload("consistency", wrongPayload(id, q, s), OTHER_KEY).sig } }), /bad signature/],
    ["signed by an untrusted key", (id) => (q, s) => signedReply(wrongPayload(id, q, s, { signer: OTHER_KEY.keyId }), OTHER_KEY), /signed by .*, not by the key of the checkpoints/],
    // Trusted for this gateway (--gateway-key below), but not the key its checkpoints carry.
    ["signed by another trusted key", (id) => (q, s) => signedReply(wrongPayload(id, q, s, { signer: OTHER_KEY.keyId }), OTHER_KEY), /signed by .*, not by the key of the checkpoints/],
    ["the gateway's key, signed as a checkpoint", (id) => (q, s) => ({ ok: true, signed: signPayload("checkpoint", wrongPayload(id, q, s), GW_KEY) }), /bad signature/],
    ["the gateway's key, for another gateway", () => (q, s) => signedReply(wrongPayload("gw-elsewhere", q, s), GW_KEY), /a proof of "gw-elsewhere"/],
    ["the gateway's key, for other sizes", (id) => (q, s) => signedReply(wrongPayload(id, { size1: 1, size2: q.size2 }, s), GW_KEY), /a proof of .* from 1 to/],
  ];

  it("a proof the gateway never signed is no answer: nothing proved, nothing found", async () => {
    const id = "gw-away";
    const g = await gatewayWithLog(id); // serving no proofs
    const store = g.ledger.store;
    for (const [name, forge, why] of cases) {
      const file = join(t.dir, `${id}-${cases.findIndex((c) => c[0] === name)}.json`);
      const forged = forger(id, store, forge(id));
      try {
        const r = await witnessRun(id, file, ...(name === "signed by another trusted key" ? ["--gateway-key", OTHER_KEY.keyId] : []));
        expect(r.code, `${name}: ${JSON.stringify(r.report)}`).toBe(2);
        expect(r.report.findings, name).toEqual([]);
        expect(r.report, name).toMatchObject({ ok: false, consistency: "incomplete", proofsVerified: 0 });
        expect(r.report.stopped, name).toMatch(/^no answer: timeout after \d+ ms; ignored 1 reply/);
        expect(r.report.stopped, name).toMatch(why);
        expect(forged.count(), name).toBe(1);
      } finally {
        forged.stop();
      }
    }
    await g.stop();
  }, 60_000);
});

describe("a proof the checkpoints' key signed", () => {
  it("that fails against the checkpoints' roots is INCONSISTENT, with the signed reply as evidence", async () => {
    const id = "gw-liar";
    const g = await gatewayWithLog(id); // serving no proofs
    const store = g.ledger.store;
    // Whoever holds the gateway's key answers with the log's roots and a proof that does not hold.
    const forged = forger(id, store, (q, s) => signedReply(wrongPayload(id, q, s), GW_KEY));
    try {
      const r = await witnessRun(id, join(t.dir, `${id}.json`));
      expect(r.code, JSON.stringify(r.report)).toBe(1);
      expect(r.report.findings.map((f) => f.kind)).toEqual(["INCONSISTENT"]);
      const f = r.report.findings[0]!;
      expect(f.detail).toMatch(/signed proof .* fails/);
      const [a, b] = f.evidence!;
      expect(f.proof!.payload).toEqual(wrongPayload(id, { size1: a!.payload.size, size2: b!.payload.size }, store));
      // What an auditor checks with nothing but the gateway's public key.
      expect(verifySigned("consistency", f.proof!, GW_KEY.publicKey)).toBe(true);
      expect(verifySigned("checkpoint", a!, GW_KEY.publicKey) && verifySigned("checkpoint", b!, GW_KEY.publicKey)).toBe(true);
      expect([f.proof!.payload.root1, f.proof!.payload.root2]).toEqual([a!.payload.root, b!.payload.root]);
      expect(verifyConsistency(a!.payload.size, b!.payload.size, WRONG_PROOF.map((x) => fromB64u(x, 32)!), fromB64u(a!.payload.root, 32)!, fromB64u(b!.payload.root, 32)!).ok).toBe(false);
    } finally {
      forged.stop();
      await g.stop();
    }
  });

  it("for roots other than the checkpoints' is INCONSISTENT, even with a proof that holds for those roots", async () => {
    const store = await AuditStore.open(new MemoryBackend(), { origin: "gw-q", gatewayKey: GW_KEY, clock: steppingClock(), checkpointEvery: 0 });
    const cps: Signed<CheckpointPayload>[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) await store.append(outcomeEntry(round * 10 + i));
      cps.push((await store.checkpoint())!);
    }
    // The log the gateway proves from is another one (its history rewritten), its proofs true to it.
    const other = await AuditStore.open(new MemoryBackend(), { origin: "gw-q", gatewayKey: GW_KEY, clock: steppingClock(), checkpointEvery: 0 });
    for (let i = 0; i < 40; i++) await other.append(outcomeEntry(1_000 + i));
    const prove = (m: number, n: number): Promise<ProofAnswer> => {
      const a = answerProofRequest(enc({ kind: "consistency", size1: m, size2: n }), other, undefined, { origin: "gw-q", gatewayKey: GW_KEY });
      return Promise.resolve(a.ok ? { ok: true, signed: a.signed } : { ok: false, detail: a.detail });
    };
    const r = await proveChain(cps, 0, new Set(cps.map((c) => c.payload.size)), prove, [GW_KEY.keyId]);
    expect(r.findings.map((f) => [f.kind, f.where])).toEqual([["INCONSISTENT", `size ${cps[1]!.payload.size}`]]);
    expect(r.findings[0]!.detail).toMatch(/its checkpoints sign/);
    expect(r.findings[0]!.proof!.payload.root1).toBe(toB64u(other.rootAt(cps[0]!.payload.size)));
    expect(r).toMatchObject({ consistentThrough: cps[0]!.payload.size, proved: 0 });
  });
});

describe("proveChain checks the reply itself, whatever the source hands it", () => {
  it("a source that hands over an unsigned or foreign proof proves nothing and accuses no one", async () => {
    const store = await AuditStore.open(new MemoryBackend(), { origin: "gw-u", gatewayKey: GW_KEY, clock: steppingClock(), checkpointEvery: 0 });
    const cps: Signed<CheckpointPayload>[] = [];
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 4; i++) await store.append(outcomeEntry(round * 10 + i));
      cps.push((await store.checkpoint())!);
    }
    const q = { size1: cps[0]!.payload.size, size2: cps[1]!.payload.size };
    const asked: (readonly string[])[] = [];
    const handing = (signed: SignedConsistencyProof) => (_m: number, _n: number, signers: readonly string[]) => (asked.push(signers), Promise.resolve<ProofAnswer>({ ok: true, signed }));
    const bad = [
      { ...signPayload("consistency", wrongPayload("gw-u", q, store), GW_KEY), sig: "A".repeat(86) },
      signPayload("consistency", wrongPayload("gw-u", q, store, { signer: OTHER_KEY.keyId }), OTHER_KEY),
      signPayload("consistency", wrongPayload("gw-x", q, store), GW_KEY),
    ];
    for (const s of bad) {
      // OTHER_KEY trusted too: still not the checkpoints' key.
      const r = await proveChain(cps, 0, new Set([q.size1, q.size2]), handing(s), [GW_KEY.keyId, OTHER_KEY.keyId]);
      expect(r).toMatchObject({ findings: [], proved: 0, consistentThrough: q.size1, unproven: 1 });
      expect(r.stopped).toMatch(/^a reply that proves nothing: /);
    }
    // The source is told whose signature counts: the key that signed the checkpoints, only.
    expect(asked.every((s) => s.length === 1 && s[0] === GW_KEY.keyId)).toBe(true);
    // The same, signed by that key, is a finding.
    const r = await proveChain(cps, 0, new Set([q.size1, q.size2]), handing(signPayload("consistency", wrongPayload("gw-u", q, store), GW_KEY)), [GW_KEY.keyId]);
    expect(r.findings.map((f) => f.kind)).toEqual(["INCONSISTENT"]);
  });

  it("checkSignedProof refuses every hostile shape without throwing", () => {
    const good = signPayload("consistency", { kind: CONSISTENCY_PROOF_KIND, origin: "gw", signer: GW_KEY.keyId, size1: 1, size2: 2, root1: "A".repeat(43), root2: "E".repeat(43), proof: ["I".repeat(43)] }, GW_KEY);
    const want = { origin: "gw", size1: 1, size2: 2, signers: [GW_KEY.keyId] };
    expect(checkSignedProof(good, want)).toMatchObject({ ok: true });
    const p = good.payload;
    const resign = (payload: unknown) => signPayload("consistency", payload, GW_KEY);
    const hostile: unknown[] = [
      null,
      "x",
      [],
      { payload: p },
      { ...good, extra: 1 },
      resign({ ...p, extra: 1 }),
      resign({ ...p, kind: "failclosed/checkpoint/v1" }),
      resign({ ...p, size1: 1.5 }),
      resign({ ...p, size1: 0 }),
      { payload: { ...p, size2: 2 ** 53 }, sig: good.sig }, // beyond I-JSON: not even signable
      resign({ ...p, root1: "A".repeat(42) }),
      resign({ ...p, root2: "B".repeat(43) }), // not canonical base64url
      resign({ ...p, proof: ["I".repeat(43), 7] }),
      resign({ ...p, proof: Array.from({ length: 129 }, () => "I".repeat(43)) }),
      resign({ ...p, origin: "gw.*" }),
      { ...good, sig: good.sig.slice(0, -2) },
      { ...good, sig: 7 },
      { payload: { ...p, proof: [] }, sig: good.sig }, // the signature is over another payload
      signPayload("checkpoint", p, GW_KEY), // domain separation
    ];
    for (const v of hostile) expect(checkSignedProof(v, want), JSON.stringify(v)?.slice(0, 120)).toMatchObject({ ok: false });
    expect(checkSignedProof(good, { ...want, origin: "gw2" })).toMatchObject({ ok: false });
    expect(checkSignedProof(good, { ...want, size1: 2 })).toMatchObject({ ok: false });
    expect(checkSignedProof(good, { ...want, signers: [OTHER_KEY.keyId] })).toMatchObject({ ok: false });
    expect(checkSignedProof(good, { ...want, signers: [] })).toMatchObject({ ok: false });
  });
});

describe("a gateway with no key to sign proofs with", () => {
  it("warns, refuses UNAVAILABLE, and a witness reads that as no answer", async () => {
    const store = await AuditStore.open(new MemoryBackend(), { origin: "gw-nokey", gatewayKey: GW_KEY, clock: steppingClock(), checkpointEvery: 0 });
    for (let i = 0; i < 4; i++) await store.append(outcomeEntry(i));
    const warnings: string[] = [];
    const sub = serveConsistencyProofs(h.runtime.nc, "gw-nokey", store, { perSec: 100, now: () => performance.now(), onWarning: (w) => warnings.push(w) });
    try {
      expect(warnings).toEqual([expect.stringMatching(/no gateway key/)]);
      const a = await requestConsistencyProof(h.runtime.nc, "gw-nokey", 1, 4, 2_000, [GW_KEY.keyId]);
      expect(a).toMatchObject({ ok: false, detail: expect.stringMatching(/UNAVAILABLE.*no key to sign/) });
    } finally {
      sub.unsubscribe();
    }
    // Served with the key, the same request is answered with a proof that key signed.
    const signed = serveConsistencyProofs(h.runtime.nc, "gw-nokey", store, { perSec: 100, now: () => performance.now(), gatewayKey: GW_KEY });
    try {
      const a = await requestConsistencyProof(h.runtime.nc, "gw-nokey", 1, 4, 2_000, [GW_KEY.keyId]);
      expect(a.ok).toBe(true);
      if (a.ok) expect(checkSignedProof(a.signed, { origin: "gw-nokey", size1: 1, size2: 4, signers: [GW_KEY.keyId] })).toMatchObject({ ok: true });
      // Asked to accept only another key's signature, the gateway's proof is no answer.
      expect(await requestConsistencyProof(h.runtime.nc, "gw-nokey", 1, 4, 500, [OTHER_KEY.keyId])).toMatchObject({ ok: false, detail: expect.stringMatching(/ignored 1 reply \(signed by/) });
    } finally {
      signed.unsubscribe();
    }
  });
});
