// An attacker who can publish on the bus, but holds no gateway key, feeds the witness's
// checkpoint subject: junk bytes, non-I-JSON, wrong shapes and types, checkpoints signed by
// another key, the gateway's key for another origin, replays and reorderings of genuine
// checkpoints, oversized messages and a flood. The witness must keep exactly what the gateway
// signed for its origin, report the rest (exit 1), never crash or corrupt its file, and leave
// `audit replay --checkpoints` passing the genuine log and failing a tampered one. Real
// nats-server, real LevelDB logs.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import type { AuditRecord } from "../../src/audit/records.ts";
import { witness } from "../../src/audit/witness.ts";
import { canonicalize } from "../../src/canonical/jcs.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { MAX_MESSAGE_BYTES } from "../../src/nats/contract.ts";
import { tempDir } from "./support.ts";
import { readRecords, writeForgedLog } from "./tamper.ts";
import { GW_KEY, GatewayLog, ROGUE, deliveredTo, publishCheckpoint, readWitness, replayRun, sizesOf, startBus, tempLeftovers, witnessRun, type Bus } from "./witness-hostile-support.ts";

const ID = "gw-h";
let bus: Bus;
let log: GatewayLog;
const t = tempDir("fc-witness-hostile-feed-");
const enc = new TextEncoder();

beforeAll(async () => {
  bus = await startBus();
  log = await GatewayLog.open(ID, join(t.dir, "gw-h-log"));
  await log.grow(5, "a");
  await log.grow(5, "b");
  await log.grow(5, "c");
  log.serveProofs(bus.nc);
}, 30_000);

afterAll(async () => {
  await log.close().catch(() => undefined);
  await bus.close();
  t.cleanup();
});

/** Everything the attacker sends, each with what the witness must make of it (undefined: nothing). */
function hostileMessages(): { name: string; body: string | Uint8Array; kind?: string }[] {
  const [c1, c2, c3] = log.checkpoints as [(typeof log.checkpoints)[0], (typeof log.checkpoints)[0], (typeof log.checkpoints)[0]];
  const p = c1.payload;
  const genuineJson = JSON.stringify(c1);
  return [
    { name: "not JSON", body: "{not json", kind: "MALFORMED" },
    { name: "empty", body: "", kind: "MALFORMED" },
    { name: "binary junk", body: new Uint8Array([0xff, 0xfe, 0x00, 0x01, 0x80, 0x7b]), kind: "MALFORMED" },
    { name: "invalid UTF-8 inside a string", body: new Uint8Array([...enc.encode('{"payload":"'), 0xc3, 0x28, ...enc.encode('","sig":"x"}')]), kind: "MALFORMED" },
    { name: "a lone surrogate", body: '{"payload":"\\ud800","sig":"x"}', kind: "MALFORMED" },
    { name: "trailing garbage after a genuine checkpoint", body: `${genuineJson} x`, kind: "MALFORMED" },
    { name: "two genuine checkpoints back to back", body: `${genuineJson}${JSON.stringify(c2)}`, kind: "MALFORMED" },
    { name: "duplicate key (sig twice)", body: genuineJson.replace(/}$/, `,"sig":${JSON.stringify(c1.sig)}}`), kind: "MALFORMED" },
    { name: "duplicate key in the payload (size twice)", body: genuineJson.replace('"size":', '"size":999,"size":'), kind: "MALFORMED" },
    { name: "__proto__ key", body: genuineJson.replace('"payload":{', '"payload":{"__proto__":{},'), kind: "MALFORMED" },
    { name: "a number that overflows", body: genuineJson.replace(/"time":\d+/, '"time":1e400'), kind: "MALFORMED" },
    { name: "nested too deep", body: `${"[".repeat(200)}${"]".repeat(200)}`, kind: "MALFORMED" },
    { name: "null", body: "null", kind: "MALFORMED" },
    { name: "an array of genuine checkpoints", body: JSON.stringify([c1, c2]), kind: "MALFORMED" },
    { name: "a number", body: "5", kind: "MALFORMED" },
    { name: "size as a string", body: JSON.stringify({ ...c1, payload: { ...p, size: String(p.size) } }), kind: "MALFORMED" },
    { name: "size fractional", body: JSON.stringify({ ...c1, payload: { ...p, size: p.size + 0.5 } }), kind: "MALFORMED" },
    { name: "size negative", body: JSON.stringify({ ...c1, payload: { ...p, size: -1 } }), kind: "MALFORMED" },
    { name: "size beyond 2^53", body: genuineJson.replace(/"size":\d+/, '"size":9007199254740993'), kind: "MALFORMED" },
    { name: "root of 31 bytes", body: JSON.stringify({ ...c1, payload: { ...p, root: toB64u(new Uint8Array(31)) } }), kind: "MALFORMED" },
    { name: "time as a string", body: JSON.stringify({ ...c1, payload: { ...p, time: String(p.time) } }), kind: "MALFORMED" },
    { name: "sig as a number", body: JSON.stringify({ ...c1, sig: 7 }), kind: "MALFORMED" },
    { name: "an extra top-level field", body: JSON.stringify({ ...c1, extra: true }), kind: "MALFORMED" },
    { name: "an extra payload field", body: JSON.stringify({ ...c1, payload: { ...p, note: "x" } }), kind: "MALFORMED" },
    { name: "payload missing", body: JSON.stringify({ sig: c1.sig }), kind: "MALFORMED" },
    { name: "another kind", body: JSON.stringify({ ...c1, payload: { ...p, kind: "failclosed/snapshot/v1" } }), kind: "MALFORMED" },
    { name: "empty origin", body: JSON.stringify(signPayload("checkpoint", { ...p, origin: "" }, ROGUE)), kind: "MALFORMED" },
    { name: "signed by another key (a new size)", body: JSON.stringify(signPayload("checkpoint", { ...p, size: 999 }, ROGUE)), kind: "BAD_SIGNATURE" },
    { name: "signed by another key (a held size, another root)", body: JSON.stringify(signPayload("checkpoint", { ...c2.payload, root: toB64u(new Uint8Array(32).fill(5)) }, ROGUE)), kind: "BAD_SIGNATURE" },
    { name: "a genuine signature over an edited size", body: JSON.stringify({ ...c1, payload: { ...p, size: 1_000 } }), kind: "BAD_SIGNATURE" },
    { name: "a genuine signature over an edited root", body: JSON.stringify({ ...c3, payload: { ...c3.payload, root: c1.payload.root } }), kind: "BAD_SIGNATURE" },
    { name: "a genuine signature over an edited time", body: JSON.stringify({ ...c1, payload: { ...p, time: p.time + 1 } }), kind: "BAD_SIGNATURE" },
    { name: "another checkpoint's signature", body: JSON.stringify({ ...c1, sig: c2.sig }), kind: "BAD_SIGNATURE" },
    { name: "the gateway's key in another domain", body: JSON.stringify(signPayload("snapshot", { ...p, size: 2_000 }, GW_KEY)), kind: "BAD_SIGNATURE" },
    { name: "a truncated signature", body: JSON.stringify({ ...c1, sig: c1.sig.slice(0, -2) }), kind: "BAD_SIGNATURE" },
    { name: "the gateway's key, another origin", body: JSON.stringify(signPayload("checkpoint", { ...p, origin: "gw-other", size: 3_000 }, GW_KEY)), kind: "WRONG_ORIGIN" },
    { name: "the gateway's key, an origin that differs by case", body: JSON.stringify(signPayload("checkpoint", { ...p, origin: "GW-H" }, GW_KEY)), kind: "WRONG_ORIGIN" },
    { name: "another key, another origin", body: JSON.stringify(signPayload("checkpoint", { ...p, origin: "gw-other" }, ROGUE)), kind: "WRONG_ORIGIN" },
    // Genuine ones again, in any order and any JSON spelling: not news.
    { name: "replay of the newest genuine checkpoint", body: JSON.stringify(c3) },
    { name: "replay of the oldest genuine checkpoint after it", body: JSON.stringify(c1) },
    { name: "a genuine checkpoint, keys reordered and spaced", body: `{ "sig" : ${JSON.stringify(c2.sig)},\n "payload": {"time":${c2.payload.time},"size":${c2.payload.size},"root":"${c2.payload.root}","origin":"${ID}","kind":"failclosed/checkpoint/v1"} }` },
    { name: "a genuine checkpoint, size written 1.0e1 style", body: genuineJson.replace(/"size":(\d+)/, (_m, d: string) => `"size":${d}.0e0`) },
  ];
}

describe("hostile messages on the checkpoint subject", () => {
  it("keeps exactly the gateway's checkpoints, reports every hostile message, proves the chain, and replay still judges the log right", async () => {
    const hostile = hostileMessages();
    // The genuine checkpoints, the oldest last, then the attacker's messages.
    for (const cp of [...log.checkpoints].reverse()) await publishCheckpoint(bus, ID, JSON.stringify(cp));
    for (const m of hostile) await publishCheckpoint(bus, ID, m.body);

    const file = join(t.dir, "gw-h.witness.json");
    const r = await witnessRun(bus, ID, file);
    expect(r.code, r.stderr + r.stdout).toBe(1);
    expect(r.report).toMatchObject({ ok: false, held: 3, added: 3, consistency: "proved", unproven: 0, proofsVerified: 2 });
    const want = hostile.flatMap((m) => (m.kind === undefined ? [] : [m.kind])).sort();
    expect(r.report.findings.map((f) => f.kind).sort()).toEqual(want);
    // Every finding names the stream message it came from.
    expect(r.report.findings.every((f) => /^stream seq \d+$/.test(f.where))).toBe(true);
    const held = readWitness(file);
    expect(held.checkpoints).toEqual(log.checkpoints);
    expect(held).toMatchObject({ origin: ID, consistentThrough: log.checkpoints.at(-1)!.payload.size });
    expect(tempLeftovers(t.dir)).toEqual([]);

    // Run again: the same junk is reported again, and the file is the same.
    const before = readFileSync(file, "utf8");
    const again = await witnessRun(bus, ID, file);
    expect(again.code).toBe(1);
    expect(again.report).toMatchObject({ added: 0, held: 3, consistency: "proved" });
    expect(again.report.findings.length).toBe(want.length);
    expect(readFileSync(file, "utf8")).toBe(before);

    // Replay: the genuine log passes against what the witness kept; a copy rewritten below the
    // newest witnessed size and re-signed with the gateway's key fails; so does a truncated copy.
    await log.close();
    const ok = await replayRun(log.dir, file);
    expect(ok.code, ok.stdout).toBe(0);

    const src = await LevelBackend.open(log.dir, { createIfMissing: false });
    const records = await readRecords(src);
    await src.close();
    const i = records.findIndex((x) => x.type === "evidence" && x.seq > log.checkpoints[0]!.payload.size);
    const rewritten = join(t.dir, "gw-h-rewritten");
    let dst = await LevelBackend.open(rewritten);
    await writeForgedLog(dst, records.map((x, k) => (k === i ? ({ ...x, taskId: "forged" } as AuditRecord) : x)), GW_KEY);
    await dst.close();
    const forged = await replayRun(rewritten, file);
    expect(forged.code).toBe(1);
    expect(forged.kinds).toContain("CHECKPOINT_ROOT");

    const truncated = join(t.dir, "gw-h-truncated");
    dst = await LevelBackend.open(truncated);
    await writeForgedLog(dst, records.slice(0, log.checkpoints[1]!.payload.size + 1), GW_KEY);
    await dst.close();
    const cut = await replayRun(truncated, file);
    expect(cut.code).toBe(1);
    expect(cut.kinds).toContain("TRUNCATED");

    // Reopened for the suites below.
    log = await reopen();
  }, 40_000);

  it("a message over the size limit never reaches the stream, and is refused before parsing if it did", async () => {
    const big = enc.encode(`{"payload":"${"x".repeat(MAX_MESSAGE_BYTES)}","sig":"x"}`);
    await expect(publishCheckpoint(bus, ID, big)).rejects.toThrow();
    const r = witness([], [{ bytes: big, streamSeq: 9 }, { bytes: enc.encode(canonicalize(log.checkpoints[0])), streamSeq: 10 }], { origin: ID, gatewayKeys: [GW_KEY.keyId] });
    expect(r.findings).toEqual([{ kind: "MALFORMED", where: "stream seq 9", detail: `${big.byteLength} bytes, over ${MAX_MESSAGE_BYTES}` }]);
    expect(sizesOf(r.checkpoints)).toEqual([log.checkpoints[0]!.payload.size]);
  });
});

async function reopen(): Promise<GatewayLog> {
  const again = await GatewayLog.open(ID, log.dir);
  again.checkpoints.push(...log.checkpoints);
  again.serveProofs(bus.nc);
  return again;
}

describe("a flood", () => {
  it("thousands of hostile messages around the gateway's checkpoints: it completes, keeps the genuine ones, and its file holds nothing else", async () => {
    const id = "gw-flood";
    const g = await GatewayLog.open(id, join(t.dir, "gw-flood-log"));
    try {
      const first = await g.grow(3, "f1");
      g.serveProofs(bus.nc);
      const junk = enc.encode(`{"payload":"${"j".repeat(2_000)}","sig":"x"}`);
      const pubs: Promise<unknown>[] = [];
      const N = 3_000;
      for (let k = 0; k < N; k++) {
        if (k === 1_000) pubs.push(publishCheckpoint(bus, id, JSON.stringify(first)));
        if (k === 2_000) pubs.push(g.grow(4, "f2").then((cp) => publishCheckpoint(bus, id, JSON.stringify(cp))));
        // Every third one a forged checkpoint (another key, a size of its own), every third another origin.
        const body =
          k % 3 === 0
            ? junk
            : k % 3 === 1
              ? JSON.stringify(signPayload("checkpoint", { ...first.payload, size: 100 + k }, ROGUE))
              : JSON.stringify(signPayload("checkpoint", { ...first.payload, origin: "gw-elsewhere", size: 100 + k }, ROGUE));
        pubs.push(publishCheckpoint(bus, id, body));
      }
      await Promise.all(pubs);
      const file = join(t.dir, "gw-flood.json");
      const r = await witnessRun(bus, id, file, "--timeout-ms", "30000");
      expect(r.code, r.stderr).toBe(1);
      expect(r.report).toMatchObject({ held: 2, added: 2, consistency: "proved", unproven: 0 });
      const kinds = new Map<string, number>();
      for (const f of r.report.findings) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
      expect(Object.fromEntries(kinds)).toEqual({ MALFORMED: N / 3, BAD_SIGNATURE: N / 3, WRONG_ORIGIN: N / 3 });
      expect(readWitness(file).checkpoints).toEqual(g.checkpoints);
      // The file is the two checkpoints, not the flood.
      expect(readFileSync(file).byteLength).toBeLessThan(4_096);
    } finally {
      await g.close();
    }
  }, 40_000);

  it("--follow reads on from where the last pass stopped: a flood already read is not fetched again on every pass", async () => {
    const id = "gw-follow-flood";
    const g = await GatewayLog.open(id, join(t.dir, "gw-follow-log"));
    try {
      await publishCheckpoint(bus, id, JSON.stringify(await g.grow(3, "ff")));
      g.serveProofs(bus.nc);
      const pubs: Promise<unknown>[] = [];
      for (let k = 0; k < 2_000; k++) pubs.push(publishCheckpoint(bus, id, `junk ${k}`));
      await Promise.all(pubs);
      const file = join(t.dir, "gw-follow.json");
      const before = (await deliveredTo(bus, "failclosed-witness")).length;
      const r = await witnessRun(bus, id, file, "--follow", "--interval-ms", "100", "--cycles", "3");
      expect(r.code).toBe(1);
      const passes = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { read: number; held: number });
      expect(passes.map((p) => p.read)).toEqual([2_001, 0, 0]);
      expect(existsSync(file)).toBe(true);
      // What the server delivered to each pass's feed connection: the whole stream once, then
      // (nothing new having come) next to nothing. Reading the whole subject again on every pass
      // makes each pass cost the whole flood, for ever: the stream has no limits.
      const delivered = (await deliveredTo(bus, "failclosed-witness")).slice(before);
      expect(delivered).toHaveLength(3);
      expect(delivered[0]).toBeGreaterThanOrEqual(2_001);
      expect(delivered.slice(1).every((n) => n < 100), `messages delivered per pass: ${delivered.join(", ")}`).toBe(true);
    } finally {
      await g.close();
    }
  }, 40_000);
});

describe("replayed and reordered genuine checkpoints only", () => {
  it("out of order, repeated, interleaved with an older witness file: no finding, the chain proved, the file unchanged but for what is new", async () => {
    const id = "gw-order";
    const g = await GatewayLog.open(id, join(t.dir, "gw-order-log"));
    try {
      g.serveProofs(bus.nc);
      for (let k = 0; k < 5; k++) await g.grow(2 + k, `o${k}`);
      const [a, b, c, d, e] = g.checkpoints;
      const file = join(t.dir, "gw-order.json");
      for (const cp of [c, a, c, b]) await publishCheckpoint(bus, id, JSON.stringify(cp));
      const r1 = await witnessRun(bus, id, file);
      expect(r1.code, JSON.stringify(r1.report)).toBe(0);
      expect(sizesOf(readWitness(file).checkpoints)).toEqual(sizesOf([a!, b!, c!]));
      // Later: the newer ones arrive before replays of old ones.
      for (const cp of [e, a, d, b, e]) await publishCheckpoint(bus, id, JSON.stringify(cp));
      const r2 = await witnessRun(bus, id, file);
      expect(r2.code, JSON.stringify(r2.report)).toBe(0);
      expect(r2.report).toMatchObject({ added: 2, held: 5, consistency: "proved", consistentThrough: e!.payload.size, proofsVerified: 2, findings: [] });
      expect(readWitness(file).checkpoints).toEqual(g.checkpoints);
    } finally {
      await g.close();
    }
  });
});
