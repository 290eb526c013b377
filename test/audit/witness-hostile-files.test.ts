// Hostile witness files on disk (truncated, edited, duplicate keys, entries dropped, reordered
// or doubled), and a genuine fork: two LevelDB logs signed by the one gateway key that diverge
// after a common prefix. A file that fails its checks is an error (exit 2) and is never
// rewritten; a fork (in the stream, against the file, or between sizes through the gateway's
// own signed proofs) is a finding (exit 1); replay then holds each log to what the witness kept.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CheckpointPayload } from "../../src/audit/records.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { tempDir } from "./support.ts";
import { GW_KEY, GatewayLog, ROGUE, publishCheckpoint, readWitness, replayRun, sizesOf, startBus, tempLeftovers, witnessRun, type Bus } from "./witness-hostile-support.ts";

let bus: Bus;
const t = tempDir("fc-witness-hostile-files-");

beforeAll(async () => {
  bus = await startBus();
}, 30_000);

afterAll(async () => {
  await bus.close();
  t.cleanup();
});

const fileText = (origin: string, consistentThrough: number, checkpoints: readonly unknown[]): string => `${JSON.stringify({ kind: "failclosed/witness/v1", origin, consistentThrough, checkpoints }, null, 1)}\n`;

describe("hostile witness files", () => {
  const ID = "gw-file";
  let log: GatewayLog;
  let good: string;
  let cps: Signed<CheckpointPayload>[];

  beforeAll(async () => {
    log = await GatewayLog.open(ID, join(t.dir, "gw-file-log"));
    for (let k = 0; k < 4; k++) await publishCheckpoint(bus, ID, JSON.stringify(await log.grow(3 + k, `w${k}`)));
    log.serveProofs(bus.nc);
    cps = log.checkpoints;
    const file = join(t.dir, "good.json");
    const r = await witnessRun(bus, ID, file);
    expect(r.code, JSON.stringify(r.report)).toBe(0);
    good = readFileSync(file, "utf8");
  });

  afterAll(async () => {
    await log.close();
  });

  const edit = (f: (v: { kind: string; origin: string; consistentThrough: number; checkpoints: Signed<CheckpointPayload>[] }) => unknown): string =>
    JSON.stringify(f(JSON.parse(good) as { kind: string; origin: string; consistentThrough: number; checkpoints: Signed<CheckpointPayload>[] }));

  // Each is refused (exit 2) and the file left byte for byte as it was.
  const refused: [string, () => string][] = [
    ["truncated mid-way", () => good.slice(0, Math.floor(good.length / 2))],
    ["truncated to nothing", () => ""],
    ["one byte short", () => good.trimEnd().slice(0, -1)],
    ["not JSON at all", () => "\u0000\u0001garbage"],
    ["a held root edited", () => edit((v) => ({ ...v, checkpoints: v.checkpoints.map((c, i) => (i === 1 ? { ...c, payload: { ...c.payload, root: cps[0]!.payload.root } } : c)) }))],
    ["a held size edited", () => edit((v) => ({ ...v, checkpoints: v.checkpoints.map((c, i) => (i === 1 ? { ...c, payload: { ...c.payload, size: c.payload.size + 1 } } : c)) }))],
    ["a held signature edited", () => edit((v) => ({ ...v, checkpoints: v.checkpoints.map((c, i) => (i === 2 ? { ...c, sig: cps[0]!.sig } : c)) }))],
    ["a held entry that is not a checkpoint", () => edit((v) => ({ ...v, checkpoints: [...v.checkpoints, { hello: "world" }] }))],
    ["a duplicate key at the top (consistentThrough twice)", () => good.replace('"consistentThrough":', '"consistentThrough": 0,\n "consistentThrough":')],
    ["a duplicate key inside a held checkpoint", () => good.replace('"sig":', '"sig": "x",\n  "sig":')],
    ["consistentThrough negative", () => edit((v) => ({ ...v, consistentThrough: -1 }))],
    ["consistentThrough fractional", () => edit((v) => ({ ...v, consistentThrough: 1.5 }))],
    ["consistentThrough a string", () => edit((v) => ({ ...v, consistentThrough: String(v.consistentThrough) }))],
    ["another kind", () => edit((v) => ({ ...v, kind: "failclosed/witness/v2" }))],
    ["an extra field", () => edit((v) => ({ ...v, note: "x" }))],
    ["checkpoints not an array", () => edit((v) => ({ ...v, checkpoints: {} }))],
    ["the file names another gateway", () => edit((v) => ({ ...v, origin: "gw-other" }))],
    ["a held checkpoint of another origin, signed by the gateway's key", () => edit((v) => ({ ...v, checkpoints: [...v.checkpoints, signPayload("checkpoint", { ...cps[0]!.payload, origin: "gw-other", size: 99 }, GW_KEY)] }))],
    ["a held checkpoint signed by another key", () => edit((v) => ({ ...v, checkpoints: [...v.checkpoints, signPayload("checkpoint", { ...cps[0]!.payload, size: 99 }, ROGUE)] }))],
    ["a JSON string", () => '"hello"'],
  ];

  it.each(refused)("refused, exit 2, never rewritten: %s", async (name, text) => {
    const dir = join(t.dir, `refused-${refused.findIndex((x) => x[0] === name)}`);
    mkdirSync(dir);
    const file = join(dir, "w.json");
    const body = text();
    writeFileSync(file, body);
    const r = await witnessRun(bus, ID, file);
    expect(r.code, r.stderr).toBe(2);
    expect(readFileSync(file, "utf8")).toBe(body);
    expect(tempLeftovers(dir)).toEqual([]);
  });

  it("entries reordered, or one doubled: read as the same checkpoints, the file rewritten in order", async () => {
    for (const [name, text] of [
      ["reversed", edit((v) => ({ ...v, checkpoints: [...v.checkpoints].reverse() }))],
      ["shuffled", edit((v) => ({ ...v, checkpoints: [v.checkpoints[2], v.checkpoints[0], v.checkpoints[3], v.checkpoints[1]] }))],
      ["one doubled", edit((v) => ({ ...v, checkpoints: [...v.checkpoints, v.checkpoints[1]] }))],
      ["the first format, a bare array, reversed", JSON.stringify([...cps].reverse())],
    ] as const) {
      const file = join(t.dir, `reordered-${name.replace(/\W+/g, "-")}.json`);
      writeFileSync(file, text);
      const r = await witnessRun(bus, ID, file);
      expect(r.code, `${name}: ${JSON.stringify(r.report)}`).toBe(0);
      expect(r.report, name).toMatchObject({ added: 0, held: 4, consistency: "proved", findings: [] });
      expect(readWitness(file).checkpoints, name).toEqual(cps);
      expect(readWitness(file).consistentThrough, name).toBe(cps.at(-1)!.payload.size);
    }
  });

  it("an entry dropped from the file is restored from the stream and proved again", async () => {
    const file = join(t.dir, "dropped.json");
    writeFileSync(file, edit((v) => ({ ...v, checkpoints: v.checkpoints.filter((_, i) => i !== 1) })));
    const r = await witnessRun(bus, ID, file);
    expect(r.code, JSON.stringify(r.report)).toBe(0);
    expect(r.report).toMatchObject({ added: 1, held: 4, consistency: "proved", findings: [] });
    expect(r.report.proofsVerified).toBeGreaterThanOrEqual(1);
    expect(readWitness(file).checkpoints).toEqual(cps);
  });

  it("the witness file is a directory: an I/O error (exit 2)", async () => {
    const dir = join(t.dir, "a-dir.json");
    mkdirSync(dir);
    expect((await witnessRun(bus, ID, dir)).code).toBe(2);
  });
});

/** Two logs of `id` under one key, sharing their first 4 records: A checkpoints 4, 9, 14; B 4, 6, 9, 16. */
async function forkedLogs(id: string): Promise<{ a: GatewayLog; b: GatewayLog }> {
  const a = await GatewayLog.open(id, join(t.dir, `${id}-a`));
  const b = await GatewayLog.open(id, join(t.dir, `${id}-b`));
  await a.grow(4, "p");
  await b.grow(4, "p");
  await a.grow(4, "a1");
  await a.grow(4, "a2");
  await b.grow(1, "b0");
  await b.grow(2, "b1");
  await b.grow(6, "b2");
  expect(sizesOf(a.checkpoints)).toEqual([4, 9, 14]);
  expect(sizesOf(b.checkpoints)).toEqual([4, 6, 9, 16]);
  expect(a.checkpoints[0]).toEqual(b.checkpoints[0]);
  expect(a.checkpoints[1]!.payload.root).not.toBe(b.checkpoints[2]!.payload.root);
  return { a, b };
}

describe("a genuine fork: two logs signed by one gateway key", () => {
  const ID = "gw-fork";
  let a: GatewayLog;
  let b: GatewayLog;

  beforeAll(async () => {
    ({ a, b } = await forkedLogs(ID));
  });

  afterAll(async () => {
    await a.close().catch(() => undefined);
    await b.close().catch(() => undefined);
  });

  it("is reported (exit 1) however it shows: below the watermark, at one size, above it; replay then fails the other history", async () => {
    const file = join(t.dir, "fork.json");
    for (const cp of a.checkpoints) await publishCheckpoint(bus, ID, JSON.stringify(cp));
    a.serveProofs(bus.nc);
    let r = await witnessRun(bus, ID, file);
    expect(r.code, JSON.stringify(r.report)).toBe(0);
    const proved = readWitness(file);
    expect(proved.consistentThrough).toBe(14);

    // B's checkpoint at 6, below what is proved: A's own signed proof from 6 to 9 does not
    // start from B's root at 6.
    await publishCheckpoint(bus, ID, JSON.stringify(b.checkpoints[1]));
    r = await witnessRun(bus, ID, file);
    expect(r.code, JSON.stringify(r.report)).toBe(1);
    expect(r.report.findings.map((f) => f.kind)).toEqual(["INCONSISTENT"]);
    expect(r.report.findings[0]!.evidence!.map((c) => c.payload.size)).toEqual([6, 9]);

    // B's checkpoint at 9: two roots, one size.
    await publishCheckpoint(bus, ID, JSON.stringify(b.checkpoints[2]));
    r = await witnessRun(bus, ID, file);
    expect(r.code).toBe(1);
    const fork = r.report.findings.find((f) => f.kind === "FORK");
    expect(fork?.evidence).toEqual([a.checkpoints[1], b.checkpoints[2]]);

    // B's checkpoint at 16, with both gateways answering proofs: the chain is still broken
    // below (6 against 4 or 9, whichever gateway answers), so it is reported again.
    b.serveProofs(bus.nc);
    await publishCheckpoint(bus, ID, JSON.stringify(b.checkpoints[3]));
    r = await witnessRun(bus, ID, file);
    expect(r.code).toBe(1);
    expect(r.report.findings.map((f) => f.kind)).toContain("INCONSISTENT");
    // The file never holds two roots for one size, and the watermark never rose past A's 14.
    const held = readWitness(file);
    expect(new Set(sizesOf(held.checkpoints)).size).toBe(held.checkpoints.length);
    expect(held.checkpoints.find((c) => c.payload.size === 9)).toEqual(a.checkpoints[1]);
    expect(held.consistentThrough).toBeLessThanOrEqual(14);

    // What the witness kept before B showed up passes A and fails B.
    const before = join(t.dir, "fork-before.json");
    writeFileSync(before, fileText(ID, proved.consistentThrough, proved.checkpoints));
    await a.close();
    await b.close();
    expect((await replayRun(a.dir, before)).code).toBe(0);
    const rb = await replayRun(b.dir, before);
    expect(rb.code).toBe(1);
    expect(rb.kinds).toContain("CHECKPOINT_ROOT");
    // What it keeps now fails both: each log contradicts some checkpoint the key signed.
    expect((await replayRun(a.dir, file)).code).toBe(1);
    expect((await replayRun(b.dir, file)).code).toBe(1);
  }, 40_000);

  it("above the watermark: a history grown past the proved size is no answer from the old gateway (exit 2), and INCONSISTENT on the new one's signed proof", async () => {
    const id = "gw-fork-up";
    const f = await forkedLogs(id);
    try {
      const file = join(t.dir, "fork-up.json");
      for (const cp of f.a.checkpoints) await publishCheckpoint(bus, id, JSON.stringify(cp));
      f.a.serveProofs(bus.nc);
      expect((await witnessRun(bus, id, file)).code).toBe(0);
      await publishCheckpoint(bus, id, JSON.stringify(f.b.checkpoints[3]));
      // Only A answers: it has no size 16 and refuses, unsigned: nothing proved, nothing found.
      let r = await witnessRun(bus, id, file);
      expect(r.code, JSON.stringify(r.report)).toBe(2);
      expect(r.report).toMatchObject({ findings: [], consistentThrough: 14, unproven: 1 });
      // B answers too: its signed proof from 14 starts from its own root, not A's.
      f.b.serveProofs(bus.nc);
      r = await witnessRun(bus, id, file);
      expect(r.code, JSON.stringify(r.report)).toBe(1);
      expect(r.report.findings.map((x) => x.kind)).toEqual(["INCONSISTENT"]);
      expect(r.report.findings[0]!.evidence).toEqual([f.a.checkpoints[2], f.b.checkpoints[3]]);
      expect(readWitness(file).consistentThrough).toBe(14);
    } finally {
      await f.a.close();
      await f.b.close();
    }
  });

  it("a witness file that itself holds both sides of a fork (two roots for one size, both signed) is a FORK finding (exit 1), not a usage error", async () => {
    // As a file merged from two witnesses, or written by an older witness, would hold them.
    const [, a9] = [a.checkpoints[0]!, a.checkpoints[1]!];
    const b9 = b.checkpoints[2]!;
    for (const [name, text] of [
      ["v1 file", fileText(ID, 4, [a.checkpoints[0], a9, b9])],
      ["bare array", JSON.stringify([a.checkpoints[0], a9, b9])],
    ] as const) {
      const file = join(t.dir, `held-fork-${name.replace(/\W+/g, "-")}.json`);
      writeFileSync(file, text);
      const r = await witnessRun(bus, ID, file, "--no-consistency");
      expect(r.code, `${name}: ${r.stderr}`).toBe(1);
      const fork = r.report.findings.find((f) => f.kind === "FORK");
      expect(fork?.evidence, name).toEqual([a9, b9]);
      // The evidence is not erased from the file.
      expect(readFileSync(file, "utf8"), name).toContain(b9.payload.root);
    }
  });
});
