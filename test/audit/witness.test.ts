// `failclosed audit witness`: a real gateway on a real nats-server publishes its checkpoints;
// the witness keeps them outside the gateway's reach, refuses what is not a trusted checkpoint
// of that log, reports forks (also against what it held before), and `audit replay
// --checkpoints` then holds the log to them: a tail rewritten with the gateway's own key passes
// replay alone and fails against the witness.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import type { AuditRecord, CheckpointPayload } from "../../src/audit/records.ts";
import { checkpointShapeProblem, witness } from "../../src/audit/witness.ts";
import { canonicalize } from "../../src/canonical/jcs.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";
import { captureIo, tempDir } from "./support.ts";

const agent = namedKey("agent-0");
const GW_KEY = namedKey("gateway-1");
const ROGUE = namedKey("rogue-witness-test");
/** What an auditor of gw-1 names: its key, the authority, and the peers the harness's gateways trust for lineage. */
const ROOTS = ["--gateway-key", GW_KEY.keyId, "--authority", namedKey("authority").keyId, "--peer-gateway", ...[2, 3, 4].map((n) => namedKey(`gateway-${n}`).keyId)];


const readHeld = (file: string): Signed<CheckpointPayload>[] => {
  const v = JSON.parse(readFileSync(file, "utf8")) as Signed<CheckpointPayload>[] | { checkpoints: Signed<CheckpointPayload>[] };
  return Array.isArray(v) ? v : v.checkpoints;
};

let h: Harness;
const t = tempDir("fc-witness-");
let gwDir: string;

beforeAll(async () => {
  // One gateway checkpointing every 4 records; it runs a few tasks and stops (its last
  // checkpoint is published at stop). Its log stays on disk for the auditor.
  h = await startHarness({ gateways: 1, gateway: { checkpointEvery: 4 } });
  const g = h.gateways[0]!;
  gwDir = join(h.dir, g.id);
  g.registerAction("transfer", () => ({ ok: true }));
  for (let i = 0; i < 5; i++) {
    const taskId = newTaskId();
    const now = Date.now();
    const { artifact } = await h.authority.grant({
      taskId,
      holder: agent.keyId,
      scope: DEFAULT_SCOPE,
      validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
      nonce: namedNonce(`witness-${taskId}`),
      attribution: { initiator: "t", reason: "witness" },
    });
    const o = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 10 + i }, chain: [artifact], taskId }).outcome;
    expect(o, JSON.stringify(o)).toMatchObject({ status: "succeeded" });
  }
  await g.stop();
}, 60_000);

afterAll(async () => {
  await h.close();
  t.cleanup();
});

// The gateway has stopped, so it answers no proof requests: these cases are about what the
// witness keeps and refuses; witness-consistency.test.ts proves consistency against a live one.
const witnessArgs = (out: string, ...more: string[]): string[] => ["witness", "--nats", h.url, "--gateway-id", "gw-1", "--gateway-key", GW_KEY.keyId, "--out", out, "--no-consistency", ...more];

describe("audit witness", () => {
  it("keeps every checkpoint the gateway published; a second run adds nothing; replay holds the log to them", async () => {
    const file = join(t.dir, "gw-1.witness.json");
    let io = captureIo();
    expect(await runAudit(witnessArgs(file), io)).toBe(0);
    const held = readHeld(file);
    expect(held.length).toBeGreaterThanOrEqual(3);
    expect(held.map((c) => c.payload.size)).toEqual([...held.map((c) => c.payload.size)].sort((a, b) => a - b));
    expect(io.stdout()).toContain(`checkpoints held: ${held.length} (${held.length} new)`);

    io = captureIo();
    expect(await runAudit(witnessArgs(file, "--json"), io)).toBe(0);
    expect(JSON.parse(io.stdout())).toMatchObject({ gatewayId: "gw-1", held: held.length, added: 0, ok: true, findings: [] });
    expect(readHeld(file)).toEqual(held);

    io = captureIo();
    expect(await runAudit(["replay", "--db", gwDir, ...ROOTS, "--checkpoints", file, "--workers", "0", "--json"], io)).toBe(0);
    const rep = JSON.parse(io.stdout()) as { ok: boolean; checkpointsVerified: number; size: number };
    expect(rep.ok).toBe(true);
    // The gateway's last record is the checkpoint it wrote at stop, signing everything before it.
    expect(rep.size).toBe(held.at(-1)!.payload.size + 1);
    expect(rep.checkpointsVerified).toBeGreaterThanOrEqual(2 * held.length);
  });

  it("a tail rewritten with the gateway's own key passes replay alone, and fails against the witness", async () => {
    const file = join(t.dir, "gw-1.rewrite.json");
    expect(await runAudit(witnessArgs(file), captureIo())).toBe(0);
    const copy = join(t.dir, "rewritten");
    // Rewrite a copy of the log: one outcome's result digest changed, the chain, tree and
    // checkpoints recomputed and re-signed with the gateway's key (someone who holds it).
    const src = await LevelBackend.open(gwDir, { createIfMissing: false });
    const records = await readRecords(src);
    await src.close();
    const i = records.findIndex((r) => r.type === "outcome" && r.status === "succeeded");
    expect(i).toBeGreaterThan(0);
    const altered = records.map((r, k) => (k === i ? ({ ...r, resultDigest: toB64u(new Uint8Array(32).fill(9)) } as AuditRecord) : r));
    const dst = await LevelBackend.open(copy);
    await writeForgedLog(dst, altered, GW_KEY);
    await dst.close();

    let io = captureIo();
    expect(await runAudit(["replay", "--db", copy, ...ROOTS, "--workers", "0"], io)).toBe(0);
    io = captureIo();
    expect(await runAudit(["replay", "--db", copy, ...ROOTS, "--checkpoints", file, "--workers", "0", "--json"], io)).toBe(1);
    const rep = JSON.parse(io.stdout()) as { divergences: { kind: string }[] };
    expect(rep.divergences.map((d) => d.kind)).toContain("CHECKPOINT_ROOT");
  });

  it("refuses what is not a trusted checkpoint of this log, and reports a fork signed with the gateway's key", async () => {
    const file = join(t.dir, "gw-1.hostile.json");
    expect(await runAudit(witnessArgs(file), captureIo())).toBe(0);
    const genuine = readHeld(file);
    const [first] = genuine;
    const js = jetstream(h.runtime.nc);
    const subject = SUBJECTS.checkpoint("gw-1");
    const send = (body: string) => js.publish(subject, body);
    const other = { ...first!.payload, root: toB64u(new Uint8Array(32).fill(7)) };
    await send("{not json");
    await send('{"payload":{"kind":"failclosed/checkpoint/v1"},"payload":{},"sig":"x"}'); // duplicate key
    await send(JSON.stringify(signPayload("checkpoint", { ...first!.payload, size: 999_999 }, ROGUE))); // another key
    await send(JSON.stringify(signPayload("checkpoint", { ...first!.payload, origin: "gw-2" }, GW_KEY))); // another log
    await send(JSON.stringify(signPayload("checkpoint", other, GW_KEY))); // the same size, another root
    await send(JSON.stringify({ ...signPayload("checkpoint", first!.payload, GW_KEY), extra: 1 })); // not exactly a checkpoint
    await send(JSON.stringify(first)); // a genuine one again: not news
    await send(JSON.stringify(signPayload("snapshot", first!.payload, GW_KEY))); // the gateway's key, another domain
    // A valid checkpoint of this log on a sibling subject: not this gateway's subject, never read.
    await js.publish(SUBJECTS.checkpoint("gw-1x"), JSON.stringify(signPayload("checkpoint", { ...first!.payload, size: 777_777 }, GW_KEY)));

    const io = captureIo();
    expect(await runAudit(witnessArgs(file, "--json"), io)).toBe(1);
    const report = JSON.parse(io.stdout()) as { ok: boolean; added: number; findings: { kind: string; where: string; detail: string }[] };
    expect(report.ok).toBe(false);
    expect(report.added).toBe(0);
    expect(report.findings.map((f) => f.kind).sort()).toEqual(["BAD_SIGNATURE", "BAD_SIGNATURE", "FORK", "MALFORMED", "MALFORMED", "MALFORMED", "WRONG_ORIGIN"]);
    const fork = report.findings.find((f) => f.kind === "FORK") as unknown as { detail: string; evidence: Signed<CheckpointPayload>[] };
    expect(fork.detail).toContain(`size ${first!.payload.size}`);
    // The report carries both signed checkpoints: proof, under the gateway's key, of two histories.
    expect(fork.evidence.map((c) => c.payload.root)).toEqual([first!.payload.root, other.root]);
    // The file keeps the first history it held, and nothing refused.
    expect(readHeld(file)).toEqual(genuine);
  });

  it("remembers: a log re-published after a purge with another root for a size it held is a fork", async () => {
    const file = join(t.dir, "gw-1.memory.json");
    // What an earlier run held (here: written directly, as that run would have).
    const held = readHeld(join(t.dir, "gw-1.witness.json"));
    writeFileSync(file, JSON.stringify(held));
    const jsm = await jetstreamManager(h.runtime.nc);
    await jsm.streams.purge(STREAMS.checkpoints, { filter: SUBJECTS.checkpoint("gw-1") });
    const last = held.at(-1)!.payload;
    await jetstream(h.runtime.nc).publish(SUBJECTS.checkpoint("gw-1"), JSON.stringify(signPayload("checkpoint", { ...last, root: toB64u(new Uint8Array(32).fill(3)) }, GW_KEY)));
    const io = captureIo();
    expect(await runAudit(witnessArgs(file), io)).toBe(1);
    expect(io.stdout()).toMatch(new RegExp(`stream seq \\d+: FORK: size ${last.size} has root .* and ${last.root} at held #${held.length - 1}`));
    expect(readHeld(file)).toEqual(held);
  });

  it("without --out the checkpoints go to stdout and the report to stderr", async () => {
    const io = captureIo();
    const code = await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-1", "--gateway-key", GW_KEY.keyId, "--no-consistency"], io);
    // The stream now holds only what the previous test re-published: with nothing held, not a fork.
    expect(code).toBe(0);
    // Nothing proved: the watermark stands on the first checkpoint held (which extends nothing).
    const file = JSON.parse(io.stdout()) as { consistentThrough: number; checkpoints: Signed<CheckpointPayload>[] };
    expect(file).toMatchObject({ kind: "failclosed/witness/v1", origin: "gw-1" });
    expect(file.consistentThrough).toBe(file.checkpoints[0]?.payload.size ?? 0);
    expect(io.stderr()).toContain("witness gw-1: OK");
  });

  it("a witness file that fails its checks under the keys given is never rewritten: wrong key, rotated key, another gateway's file", async () => {
    const file = join(t.dir, "gw-1.keys.json");
    expect(await runAudit(witnessArgs(file), captureIo())).toBe(0);
    const before = readFileSync(file, "utf8");
    const io = captureIo();
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-1", "--gateway-key", namedKey("gateway-2").keyId, "--out", file], io)).toBe(2);
    expect(io.stderr()).toMatch(/held (entry fails its|entries fail their) checks .*BAD_SIGNATURE.*Not rewritten/);
    expect(readFileSync(file, "utf8")).toBe(before);
    // gw-1's file given for gw-2.
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-2", "--gateway-key", GW_KEY.keyId, "--out", file], captureIo())).toBe(2);
    expect(readFileSync(file, "utf8")).toBe(before);
    // A key that does not decode is a usage error.
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-1", "--gateway-key", "typo", "--out", file], captureIo())).toBe(2);
    expect(readFileSync(file, "utf8")).toBe(before);
  });

  it("reads past one fetch: more than 1,024 checkpoints on a subject", async () => {
    const js = jetstream(h.runtime.nc);
    const root = toB64u(new Uint8Array(32).fill(1));
    const pubs: Promise<unknown>[] = [];
    for (let size = 1; size <= 1_100; size++) {
      pubs.push(js.publish(SUBJECTS.checkpoint("gw-many"), JSON.stringify(signPayload("checkpoint", { kind: "failclosed/checkpoint/v1", origin: "gw-many", size, root, time: size }, GW_KEY))));
    }
    await Promise.all(pubs);
    const io = captureIo();
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-many", "--gateway-key", GW_KEY.keyId, "--json", "--no-consistency"], io)).toBe(0);
    expect((JSON.parse(io.stdout()) as { checkpoints: unknown[] }).checkpoints.length).toBe(1_100);
    expect(JSON.parse(io.stderr())).toMatchObject({ read: 1_100, held: 1_100, added: 1_100, largestSize: 1_100 });
  });

  it("replay holds only this log's origin to the file: another log's checkpoints and malformed entries are named as such", async () => {
    const file = join(t.dir, "mixed.json");
    const held = readHeld(join(t.dir, "gw-1.witness.json"));
    const foreign = signPayload("checkpoint", { ...held[0]!.payload, origin: "gw-2" }, GW_KEY);
    writeFileSync(file, JSON.stringify([...held, foreign, null]));
    const io = captureIo();
    expect(await runAudit(["replay", "--db", gwDir, ...ROOTS, "--checkpoints", file, "--workers", "0", "--json"], io)).toBe(1);
    const rep = JSON.parse(io.stdout()) as { divergences: { kind: string; detail: string }[] };
    expect(rep.divergences.map((d) => [d.kind, d.detail])).toEqual([
      ["CHECKPOINT_SIGNATURE", `external checkpoint #${held.length + 1} is not a signed checkpoint (not {payload, sig})`],
      ["CHECKPOINT_SIGNATURE", `external checkpoint #${held.length} is of origin gw-2; this log's checkpoints name gw-1`],
    ]);
    const empty = join(t.dir, "empty.json");
    writeFileSync(empty, "[]");
    const io2 = captureIo();
    expect(await runAudit(["replay", "--db", gwDir, ...ROOTS, "--checkpoints", empty, "--workers", "0"], io2)).toBe(0);
    expect(io2.stderr()).toContain("holds no checkpoints");
  });

  it("usage and I/O problems exit 2 and leave the witness file alone", async () => {
    const bad = join(t.dir, "not-a-witness-file.json");
    writeFileSync(bad, '{"a":1}');
    expect(await runAudit(witnessArgs(bad), captureIo())).toBe(2);
    expect(readFileSync(bad, "utf8")).toBe('{"a":1}');
    const io = captureIo();
    expect(await runAudit(["witness", "--nats", "nats://127.0.0.1:1", "--gateway-id", "gw-1", "--gateway-key", GW_KEY.keyId, "--out", join(t.dir, "never.json"), "--timeout-ms", "1000"], io)).toBe(2);
    expect(io.stderr()).toMatch(/cannot reach NATS/);
    expect(existsSync(join(t.dir, "never.json"))).toBe(false);
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw.*", "--gateway-key", GW_KEY.keyId], captureIo())).toBe(2);
    expect(await runAudit(["witness", "--nats", h.url, "--gateway-id", "gw-1"], captureIo())).toBe(2); // no trust roots
    const tooShort = captureIo();
    expect(await runAudit(witnessArgs(join(t.dir, "never.json"), "--timeout-ms", "500"), tooShort)).toBe(2);
    expect(tooShort.stderr()).toMatch(/--timeout-ms must be an integer from 1000 to 600000/);
    expect(existsSync(join(t.dir, "never.json"))).toBe(false);
    // No temp file is ever left beside a witness file.
    expect(readdirSync(t.dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });
});

describe("witness rules", () => {
  const good = signPayload("checkpoint", { kind: "failclosed/checkpoint/v1", origin: "gw-9", size: 4, root: toB64u(new Uint8Array(32)), time: 1 }, GW_KEY);
  const bytes = (v: unknown) => ({ bytes: new TextEncoder().encode(typeof v === "string" ? v : canonicalize(v)), streamSeq: 1 });

  it("a checkpoint is exactly {payload: {kind, origin, size, root, time}, sig}", () => {
    expect(checkpointShapeProblem(good)).toBeUndefined();
    expect(checkpointShapeProblem({ ...good, x: 1 })).toMatch(/payload, sig/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, size: -1 } })).toMatch(/size/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, size: 2 ** 53 } })).toMatch(/size/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, root: "AAAA" } })).toMatch(/root/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, kind: "x" } })).toMatch(/kind/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, extra: true } })).toMatch(/payload is not/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, time: "1" } })).toMatch(/time/);
    expect(checkpointShapeProblem({ ...good, payload: { ...good.payload, origin: "" } })).toMatch(/origin/);
    expect(checkpointShapeProblem({ ...good, sig: 5 })).toMatch(/sig/);
    expect(checkpointShapeProblem(null)).toMatch(/payload, sig/);
  });

  it("keeps one per size, the first held; counts only what is new", () => {
    const r = witness([good], [bytes(good), bytes(signPayload("checkpoint", { ...good.payload, size: 8 }, GW_KEY))], { origin: "gw-9", gatewayKeys: [GW_KEY.keyId] });
    expect(r.findings).toEqual([]);
    expect(r.added).toBe(1);
    expect(r.checkpoints.map((c) => c.payload.size)).toEqual([4, 8]);
  });

  it("a held entry that fails its checks is reported too (the file is input like any other)", () => {
    const r = witness([{ ...good, sig: ROGUE.keyId }], [], { origin: "gw-9", gatewayKeys: [GW_KEY.keyId] });
    expect(r.findings.map((f) => [f.kind, f.where])).toEqual([["BAD_SIGNATURE", "held #0"]]);
    expect(r.checkpoints).toEqual([]);
  });

  it("oversized messages are refused before parsing", () => {
    const r = witness([], [{ bytes: new Uint8Array(70_000).fill(0x20), streamSeq: 5 }], { origin: "gw-9", gatewayKeys: [GW_KEY.keyId] });
    expect(r.findings).toEqual([{ kind: "MALFORMED", where: "stream seq 5", detail: "70000 bytes, over 65536" }]);
  });
});
