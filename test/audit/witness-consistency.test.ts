// The witness proves, with the gateway's RFC 9162 consistency proofs (nats/proof-service.ts),
// that every checkpoint it holds extends the ones before it: a history rewritten below a size
// the witness held, re-signed with the gateway's own key and grown past it, shows no fork (no
// two checkpoints name one size) and is caught only this way. Real gateways on a real
// nats-server; the proofs are verified, never trusted, and count only when signed by the
// checkpoints' key (more in witness-signed-proofs.test.ts).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend, MemoryBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import type { AuditRecord, CheckpointPayload } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { proveChain, readWitnessFile } from "../../src/audit/witness.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { answerProofRequest, checkSignedProof, RateLimiter, requestConsistencyProof, type ProofAnswer } from "../../src/nats/proof-service.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { runTasks, type WitnessReport } from "./witness-support.ts";
import { captureIo, outcomeEntry, steppingClock, tempDir } from "./support.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";

const GW_KEY = namedKey("gateway-1");
const KEYS = [GW_KEY.keyId];

let h: Harness;
const t = tempDir("fc-witness-proofs-");

beforeAll(async () => {
  h = await startHarness({ gateways: 0, gateway: { checkpointEvery: 4 } });
}, 60_000);

afterAll(async () => {
  await h.close();
  t.cleanup();
});

async function witnessRun(gatewayId: string, file: string, ...more: string[]): Promise<{ code: number; report: WitnessReport }> {
  const io = captureIo();
  const code = await runAudit(["witness", "--nats", h.url, "--gateway-id", gatewayId, "--gateway-key", GW_KEY.keyId, "--out", file, "--json", "--timeout-ms", "5000", ...more], io);
  return { code, report: JSON.parse(io.stdout()) as WitnessReport };
}

const fileOf = (file: string) => {
  const w = readWitnessFile(JSON.parse(readFileSync(file, "utf8")));
  if ("problem" in w) throw new Error(w.problem);
  return { ...w, checkpoints: w.held as Signed<CheckpointPayload>[] };
};

describe("audit witness proves consistency with a live gateway", () => {
  it("proves each checkpoint extends the ones before it, and across runs only what is new", async () => {
    const g = await h.startGateway({ id: "gw-a", key: GW_KEY });
    await runTasks(h, g, 3, "a1");
    const file = join(t.dir, "gw-a.json");
    let r = await witnessRun("gw-a", file);
    expect(r.code, JSON.stringify(r.report)).toBe(0);
    expect(r.report).toMatchObject({ ok: true, consistency: "proved", unproven: 0, findings: [] });
    expect(r.report.held).toBeGreaterThanOrEqual(3);
    expect(r.report.proofsVerified).toBe(r.report.held - 1);
    expect(r.report.consistentThrough).toBe(r.report.largestSize);
    expect(fileOf(file)).toMatchObject({ origin: "gw-a", consistentThrough: r.report.largestSize });
    const before = r.report;

    await runTasks(h, g, 3, "a2");
    r = await witnessRun("gw-a", file);
    expect(r.code).toBe(0);
    expect(r.report.added).toBeGreaterThan(0);
    // One proof per new checkpoint: from the last one proved on, each extends the one before.
    expect(r.report.proofsVerified).toBe(r.report.added);
    expect(r.report.consistentThrough).toBe(r.report.largestSize);
    expect(r.report.largestSize).toBeGreaterThan(before.largestSize);
    await g.stop();
  });

  it("with the gateway down the new checkpoints are kept unproved (exit 2); back up, they are proved", async () => {
    const g = await h.startGateway({ id: "gw-b", key: GW_KEY });
    await runTasks(h, g, 2, "b1");
    const file = join(t.dir, "gw-b.json");
    expect((await witnessRun("gw-b", file)).code).toBe(0);
    const proved = fileOf(file).consistentThrough;
    await runTasks(h, g, 2, "b2");
    await g.stop();

    let r = await witnessRun("gw-b", file);
    expect(r.code).toBe(2);
    expect(r.report).toMatchObject({ ok: false, consistency: "incomplete", consistentThrough: proved, findings: [] });
    expect(r.report.unproven).toBe(r.report.added);
    expect(r.report.stopped).toMatch(/no answer|no responders|503|timeout/i);
    const kept = fileOf(file);
    expect(kept.checkpoints.length).toBe(r.report.held);
    expect(kept.consistentThrough).toBe(proved);

    const again = await h.startGateway({ id: "gw-b", key: GW_KEY, audit: join(h.dir, "gw-b") });
    r = await witnessRun("gw-b", file);
    expect(r.code, JSON.stringify(r.report)).toBe(0);
    expect(r.report.proofsVerified).toBeGreaterThanOrEqual(1);
    expect(r.report.consistentThrough).toBe(r.report.largestSize);
    await again.stop();
  });

  it("a history rewritten below a witnessed size and grown past it, re-signed with the gateway's key, is caught by the proofs alone", async () => {
    const g = await h.startGateway({ id: "gw-c", key: GW_KEY });
    await runTasks(h, g, 3, "c1");
    const file = join(t.dir, "gw-c.json");
    expect((await witnessRun("gw-c", file)).code).toBe(0);
    const held = fileOf(file);
    await g.stop();

    // Someone holding the gateway's key changes one early outcome, recomputes the chain, tree
    // and checkpoints, re-signs them, and runs the gateway on the rewritten log.
    const src = await LevelBackend.open(join(h.dir, "gw-c"), { createIfMissing: false });
    const records = await readRecords(src);
    await src.close();
    const i = records.findIndex((r) => r.type === "outcome" && r.status === "succeeded");
    expect(i).toBeGreaterThan(0);
    expect(i).toBeLessThan(held.consistentThrough);
    const rewritten = join(t.dir, "gw-c-rewritten");
    const dst = await LevelBackend.open(rewritten);
    await writeForgedLog(
      dst,
      records.map((r, k) => (k === i ? ({ ...r, resultDigest: toB64u(new Uint8Array(32).fill(9)) } as AuditRecord) : r)),
      GW_KEY,
    );
    await dst.close();
    const forged = await h.startGateway({ id: "gw-c", key: GW_KEY, audit: rewritten });
    await runTasks(h, forged, 3, "c2");

    // Without the proofs: every new checkpoint is signed by the gateway's key and names a size
    // the witness never held, so nothing looks wrong.
    const blind = join(t.dir, "gw-c-blind.json");
    writeFileSync(blind, readFileSync(file));
    const b = await witnessRun("gw-c", blind, "--no-consistency");
    expect(b.code).toBe(0);
    expect(b.report.findings).toEqual([]);

    const r = await witnessRun("gw-c", file);
    expect(r.code).toBe(1);
    expect(r.report.findings.map((f) => f.kind)).toEqual(["INCONSISTENT"]);
    const f = r.report.findings[0]!;
    // The evidence: the largest checkpoint the witness had proved and the first of the new history.
    expect(f.evidence![0]).toEqual(held.checkpoints.at(-1));
    expect(f.evidence![0]!.payload.size).toBe(held.consistentThrough);
    expect(f.evidence![1]!.payload.size).toBeGreaterThan(held.consistentThrough);
    // The watermark stays where it was; the file keeps the new checkpoints (evidence too).
    expect(fileOf(file).consistentThrough).toBe(held.consistentThrough);
    expect(fileOf(file).checkpoints.length).toBe(r.report.held);
    // Asked again, it says so again.
    expect((await witnessRun("gw-c", file)).code).toBe(1);
    await forged.stop();
  });

  // Changed with signed proofs: a garbage proof for the sizes asked used to be INCONSISTENT
  // (exit 1), an accusation anyone on the bus could make. Unsigned, it is now no answer (exit 2).
  it("a proof source that lies can neither pass nor accuse: an unsigned reply is no answer", async () => {
    const g = await h.startGateway({ id: "gw-d", key: GW_KEY });
    await runTasks(h, g, 2, "d1");
    const file = join(t.dir, "gw-d.json");
    expect((await witnessRun("gw-d", file)).code).toBe(0);
    const proved = fileOf(file).consistentThrough;
    await runTasks(h, g, 2, "d2");
    await g.stop();
    // Another client answers on the gateway's proof subject.
    const nc = h.runtime.nc;
    let mode: "garbage" | "other-sizes" = "garbage";
    const sub = nc.subscribe(SUBJECTS.proof("gw-d"), {
      callback: (_e, m) => {
        const req = JSON.parse(new TextDecoder().decode(m.data)) as { size1: number; size2: number };
        const proof = Array.from({ length: 3 }, (_, k) => toB64u(new Uint8Array(32).fill(k + 1)));
        m.respond(JSON.stringify(mode === "garbage" ? { ok: true, kind: "consistency", size1: req.size1, size2: req.size2, proof } : { ok: true, kind: "consistency", size1: 1, size2: 2, proof }));
      },
    });
    try {
      for (const m of ["other-sizes", "garbage"] as const) {
        mode = m;
        const r = await witnessRun("gw-d", file);
        expect(r.code, m).toBe(2);
        expect(r.report.findings, m).toEqual([]);
        expect(r.report.stopped, m).toMatch(/^no answer: timeout after \d+ ms; ignored 1 reply \(/);
        expect(r.report.consistentThrough, m).toBe(proved);
        expect(fileOf(file).consistentThrough, m).toBe(proved);
      }
    } finally {
      sub.unsubscribe();
    }
  });

  it("the proof service refuses what is not a consistency request for sizes the log has, limits its rate, and its proofs verify", async () => {
    const g = await h.startGateway({ id: "gw-e", key: GW_KEY, proofRequestsPerSec: 2 });
    await runTasks(h, g, 2, "e1");
    const nc = h.runtime.nc;
    const ask = async (body: string | Uint8Array) => JSON.parse(new TextDecoder().decode((await nc.request(SUBJECTS.proof("gw-e"), body, { timeout: 2_000 })).data)) as { ok: boolean; code?: string };
    const size = g.ledger.store.size;
    expect(await ask("{not json")).toMatchObject({ ok: false, code: "MALFORMED" });
    expect(await ask('{"kind":"consistency","size1":1,"size1":1,"size2":2}')).toMatchObject({ ok: false, code: "MALFORMED" }); // duplicate key
    expect(await ask('{"kind":"consistency","size1":1,"size2":2,"x":0}')).toMatchObject({ ok: false, code: "MALFORMED" });
    expect(await ask('{"kind":"inclusion","size1":1,"size2":2}')).toMatchObject({ ok: false, code: "MALFORMED" });
    expect(await ask('{"kind":"consistency","size1":1.5,"size2":2}')).toMatchObject({ ok: false, code: "MALFORMED" });
    expect(await ask(new Uint8Array(2_000).fill(0x20))).toMatchObject({ ok: false, code: "MALFORMED" });
    expect(await ask(JSON.stringify({ kind: "consistency", size1: 0, size2: 2 }))).toMatchObject({ ok: false, code: "BAD_SIZE" });
    expect(await ask(JSON.stringify({ kind: "consistency", size1: 3, size2: 2 }))).toMatchObject({ ok: false, code: "BAD_SIZE" });
    expect(await ask(JSON.stringify({ kind: "consistency", size1: 1, size2: size + 1 }))).toMatchObject({ ok: false, code: "BAD_SIZE" });
    // A request nobody can answer to is ignored (and breaks nothing).
    nc.publish(SUBJECTS.proof("gw-e"), JSON.stringify({ kind: "consistency", size1: 1, size2: 2 }));
    // Well-formed: a burst of 4 at 2/s, then BUSY; every proof given verifies against the log's roots.
    const answers: ProofAnswer[] = [];
    for (let k = 0; k < 6; k++) answers.push(await requestConsistencyProof(nc, "gw-e", 1 + k, size, 2_000, [GW_KEY.keyId]));
    expect(answers.filter((a) => !a.ok && a.busy === true).length).toBeGreaterThanOrEqual(1);
    const { verifyConsistency } = await import("../../src/audit/merkle.ts");
    for (const [k, a] of answers.entries()) {
      if (!a.ok) continue;
      // Signed by the gateway's key, for exactly what was asked, with the log's own roots.
      const c = checkSignedProof(a.signed, { origin: "gw-e", size1: 1 + k, size2: size, signers: [GW_KEY.keyId] });
      expect(c.ok).toBe(true);
      if (!c.ok) continue;
      expect(c.proof.root1).toEqual(g.ledger.store.rootAt(1 + k));
      expect(c.proof.root2).toEqual(g.ledger.store.rootAt(size));
      expect(verifyConsistency(1 + k, size, c.proof.proof, g.ledger.store.rootAt(1 + k), g.ledger.store.rootAt(size))).toEqual({ ok: true });
    }
    expect(h.warnings.filter((w) => w.includes("proof"))).toEqual([]);
    await g.stop();
  });
});

describe("audit witness --follow", () => {
  it("keeps witnessing pass after pass while the gateway works, each pass reading on from the last", async () => {
    const g = await h.startGateway({ id: "gw-f", key: GW_KEY });
    await runTasks(h, g, 2, "f1");
    const file = join(t.dir, "gw-f.json");
    const io = captureIo();
    const following = runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-f", "--gateway-key", GW_KEY.keyId, "--out", file, "--json", "--timeout-ms", "5000", "--follow", "--interval-ms", "400", "--cycles", "4"], io);
    await runTasks(h, g, 3, "f2");
    expect(await following).toBe(0);
    const passes = io.stdout().trim().split("\n").map((l) => JSON.parse(l) as WitnessReport & { read: number; at: string });
    expect(passes).toHaveLength(4);
    for (const p of passes) expect(p).toMatchObject({ ok: true, consistency: "proved", findings: [] });
    // Each pass reads only what was published since the one before.
    expect(passes.reduce((n, p) => n + p.read, 0)).toBe(passes.at(-1)!.held);
    await g.ledger.store.checkpoint();
    const r = await witnessRun("gw-f", file);
    expect(r.code).toBe(0);
    expect(r.report.consistentThrough).toBe(r.report.largestSize);
    await g.stop();
  });

  it("a finding in any pass is the exit code at the end; --follow needs --out", async () => {
    const g = await h.startGateway({ id: "gw-g", key: GW_KEY });
    await runTasks(h, g, 2, "g1");
    const file = join(t.dir, "gw-g.json");
    const io = captureIo();
    const following = runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-g", "--gateway-key", GW_KEY.keyId, "--out", file, "--json", "--timeout-ms", "5000", "--follow", "--interval-ms", "500", "--cycles", "3"], io);
    // Once the first pass has written the file, a checkpoint of another history is published.
    for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
    const first = fileOf(file).checkpoints[0]!;
    const js = jetstream(h.runtime.nc);
    await js.publish(SUBJECTS.checkpoint("gw-g"), JSON.stringify(signPayload("checkpoint", { ...first.payload, root: toB64u(new Uint8Array(32).fill(4)) }, GW_KEY)));
    expect(await following).toBe(1);
    const passes = io.stdout().trim().split("\n").map((l) => JSON.parse(l) as WitnessReport);
    expect(passes.map((p) => p.findings.map((f) => f.kind))).toEqual([[], ["FORK"], []]);
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-g", "--gateway-key", GW_KEY.keyId, "--follow"], captureIo())).toBe(2);
    await g.stop();
  });
});

describe("proveChain", () => {
  // Real proofs from a real (in-memory) store: checkpoints at several sizes.
  async function logWithCheckpoints(): Promise<{ store: AuditStore; cps: Signed<CheckpointPayload>[]; prove: (m: number, n: number) => Promise<ProofAnswer> }> {
    const store = await AuditStore.open(new MemoryBackend(), { origin: "gw-p", gatewayKey: GW_KEY, clock: steppingClock(), checkpointEvery: 0 });
    const cps: Signed<CheckpointPayload>[] = [];
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 3 + round; i++) await store.append(outcomeEntry(round * 100 + i));
      cps.push((await store.checkpoint())!);
    }
    // The service's own answer, signed with the gateway key, as a gateway sends it.
    const prove = (m: number, n: number): Promise<ProofAnswer> => {
      const a = answerProofRequest(new TextEncoder().encode(JSON.stringify({ kind: "consistency", size1: m, size2: n })), store, undefined, { origin: "gw-p", gatewayKey: GW_KEY });
      return Promise.resolve(a.ok ? { ok: true, signed: a.signed } : { ok: false, detail: a.detail });
    };
    return { store, cps, prove };
  }
  const sizes = (cps: readonly Signed<CheckpointPayload>[]) => new Set(cps.map((c) => c.payload.size));

  it("from nothing: the first is the anchor, each later one is proved against the one before", async () => {
    const { cps, prove } = await logWithCheckpoints();
    const r = await proveChain(cps, 0, sizes(cps), prove, KEYS);
    expect(r).toEqual({ consistentThrough: cps.at(-1)!.payload.size, proved: cps.length - 1, unproven: 0, findings: [] });
  });

  it("from a watermark: only what is above it, and one added below it against its successor", async () => {
    const { cps, prove } = await logWithCheckpoints();
    const asked: [number, number][] = [];
    const counting = (m: number, n: number) => (asked.push([m, n]), prove(m, n));
    const mark = cps[3]!.payload.size;
    const r = await proveChain(cps, mark, new Set([cps[1]!.payload.size, cps[4]!.payload.size, cps[5]!.payload.size]), counting, KEYS);
    expect(r).toMatchObject({ consistentThrough: cps[5]!.payload.size, proved: 3, unproven: 0, findings: [] });
    expect(asked).toEqual([
      [cps[1]!.payload.size, cps[2]!.payload.size],
      [cps[3]!.payload.size, cps[4]!.payload.size],
      [cps[4]!.payload.size, cps[5]!.payload.size],
    ]);
    // A watermark that names no held size stands on the largest held size below it.
    const r2 = await proveChain(cps, mark + 1, new Set(), counting, KEYS);
    expect(r2.consistentThrough).toBe(cps[5]!.payload.size);
    expect(asked.at(-2)).toEqual([mark, cps[4]!.payload.size]);
  });

  it("no answer stops the walk where it stands; one added below unproved lowers the watermark", async () => {
    const { cps, prove } = await logWithCheckpoints();
    let calls = 0;
    const flaky = (m: number, n: number) => (++calls === 2 ? Promise.resolve<ProofAnswer>({ ok: false, detail: "no answer: timeout" }) : prove(m, n));
    const r = await proveChain(cps, 0, sizes(cps), flaky, KEYS);
    expect(r).toMatchObject({ consistentThrough: cps[1]!.payload.size, proved: 1, unproven: cps.length - 2, stopped: "no answer: timeout", findings: [] });
    const down = () => Promise.resolve<ProofAnswer>({ ok: false, detail: "no answer" });
    const r2 = await proveChain(cps, cps[4]!.payload.size, new Set([cps[2]!.payload.size]), down, KEYS);
    expect(r2).toMatchObject({ consistentThrough: cps[1]!.payload.size, proved: 0, unproven: 4, findings: [] });
    // A source that throws is no answer, not a crash.
    const r3 = await proveChain(cps, 0, sizes(cps), () => Promise.reject(new Error("boom")), KEYS);
    expect(r3).toMatchObject({ consistentThrough: cps[0]!.payload.size, stopped: "no proof: boom" });
  });

  it("a checkpoint whose root is not the log's at its size fails its proof", async () => {
    const { cps, prove } = await logWithCheckpoints();
    const bad = signPayload("checkpoint", { ...cps[4]!.payload, root: toB64u(new Uint8Array(32).fill(5)) }, GW_KEY);
    const list = [...cps.slice(0, 4), bad, cps[5]!];
    const r = await proveChain(list, cps[3]!.payload.size, new Set([bad.payload.size, cps[5]!.payload.size]), prove, KEYS);
    expect(r.findings.map((f) => [f.kind, f.where])).toEqual([["INCONSISTENT", `size ${bad.payload.size}`]]);
    expect(r.consistentThrough).toBe(cps[3]!.payload.size);
    expect(r.unproven).toBe(2);
  });
});

describe("the proof service's rules", () => {
  it("answers without throwing whatever the source does, and spends the rate only on well-formed requests", () => {
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    let now = 0;
    const limiter = new RateLimiter(1, 1, () => now);
    const signer = { origin: "gw-r", gatewayKey: GW_KEY };
    const source = { size: 10, proveConsistency: () => ({ proof: ["x"] }), rootAt: (n: number) => new Uint8Array(32).fill(n) };
    expect(answerProofRequest(enc("nope"), source, limiter, signer)).toMatchObject({ ok: false, code: "MALFORMED" });
    expect(answerProofRequest(enc({ kind: "consistency", size1: 2, size2: 11 }), source, limiter, signer)).toMatchObject({ ok: false, code: "BAD_SIZE" });
    // Without a key to sign with there is no proof to give (and no token is spent).
    expect(answerProofRequest(enc({ kind: "consistency", size1: 2, size2: 3 }), source, limiter, undefined)).toMatchObject({ ok: false, code: "UNAVAILABLE", detail: expect.stringContaining("no key") });
    const given = answerProofRequest(enc({ kind: "consistency", size1: 2, size2: 3 }), source, limiter, signer);
    expect(given).toEqual({
      ok: true,
      signed: signPayload("consistency", { kind: "failclosed/consistency-proof/v1", origin: "gw-r", signer: GW_KEY.keyId, size1: 2, size2: 3, root1: toB64u(new Uint8Array(32).fill(2)), root2: toB64u(new Uint8Array(32).fill(3)), proof: ["x"] }, GW_KEY),
    });
    expect(answerProofRequest(enc({ kind: "consistency", size1: 2, size2: 3 }), source, limiter, signer)).toMatchObject({ ok: false, code: "BUSY" });
    now = 1_000;
    const throwing = {
      get size(): number {
        throw new Error("closed");
      },
      proveConsistency: () => ({ proof: [] }),
      rootAt: () => new Uint8Array(32),
    };
    expect(answerProofRequest(enc({ kind: "consistency", size1: 2, size2: 3 }), throwing, limiter, signer)).toMatchObject({ ok: false, code: "UNAVAILABLE" });
    const failing = { size: 10, proveConsistency: () => { throw new Error("tree node missing"); }, rootAt: () => new Uint8Array(32) };
    expect(answerProofRequest(enc({ kind: "consistency", size1: 2, size2: 3 }), failing, limiter, signer)).toMatchObject({ ok: false, code: "UNAVAILABLE", detail: expect.stringContaining("tree node missing") });
  });

  it("the witness file: the v1 object, or a bare array read as nothing proved", () => {
    expect(readWitnessFile([])).toEqual({ held: [], consistentThrough: 0 });
    expect(readWitnessFile({ kind: "failclosed/witness/v1", origin: "g", consistentThrough: 4, checkpoints: [] })).toEqual({ held: [], consistentThrough: 4, origin: "g" });
    expect(readWitnessFile({ kind: "failclosed/witness/v1", origin: "g", consistentThrough: -1, checkpoints: [] })).toHaveProperty("problem");
    expect(readWitnessFile({ kind: "failclosed/witness/v1", origin: "g", consistentThrough: 1, checkpoints: [], x: 1 })).toHaveProperty("problem");
    expect(readWitnessFile({ a: 1 })).toHaveProperty("problem");
    expect(readWitnessFile(null)).toHaveProperty("problem");
  });
});
