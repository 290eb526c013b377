// Replay of committed, recorded logs (Temporal-style): they must keep replaying clean, and any
// edit to them must come back as a typed divergence.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { jsonlLogSource } from "../../src/audit/log-source.ts";
import { replay, type TrustRoots } from "../../src/audit/replay.ts";

const FIXTURES = new URL("../fixtures/audit/", import.meta.url);
const text = readFileSync(new URL("scenario-v1.jsonl", FIXTURES), "utf8");
const trust = JSON.parse(readFileSync(new URL("scenario-v1.trust.json", FIXTURES), "utf8")) as TrustRoots;
const lines = text.split("\n").filter((l) => l !== "");
const withLines = (ls: string[]): string => ls.map((l) => `${l}\n`).join("");

describe("audit fixtures: scenario-v1 (recorded log)", () => {
  it("replays with no divergence and re-derives every decision", async () => {
    const rep = await replay(jsonlLogSource(text), trust);
    expect(rep.divergences).toEqual([]);
    expect(rep.recordsChecked).toBe(lines.length);
    expect(rep.decisionsRederived).toBe(24);
    expect(rep.checkpointsVerified).toBeGreaterThanOrEqual(6);
    expect(rep.uncheckpointedTail).toBe(0);
  });

  const edits: [string, (ls: string[]) => string[], string, number | ((ls: string[]) => number)][] = [
    ["a verdict flipped", (ls) => ls.map((l, i) => (i === firstDenied(ls) ? l.replace('"verdict":"deny"', '"verdict":"allow"') : l)), "DECISION_MISMATCH", (ls) => firstDenied(ls)],
    ["a line deleted", (ls) => ls.filter((_, i) => i !== 40), "SEQ_MISMATCH", 40],
    ["two lines swapped", (ls) => ls.map((l, i) => (i === 50 ? ls[51]! : i === 51 ? ls[50]! : l)), "SEQ_MISMATCH", 50],
    ["whitespace added (not canonical)", (ls) => ls.map((l, i) => (i === 10 ? l.replace('"type"', ' "type"') : l)), "RECORD_MALFORMED", 10],
    ["the tail cut and the final checkpoint kept", (ls) => [...ls.slice(0, 100), ls[ls.length - 1]!], "CHAIN_BROKEN", 100],
  ];
  function firstDenied(ls: string[]): number {
    return ls.findIndex((l) => l.includes('"verdict":"deny"') && l.startsWith('{"decision"'));
  }

  it.each(edits)("%s → %s", async (_name, edit, kind, seq) => {
    const edited = edit(lines);
    const rep = await replay(jsonlLogSource(withLines(edited)), trust);
    expect(rep.ok).toBe(false);
    const want = typeof seq === "number" ? seq : seq(lines);
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toContain(`${want}:${kind}`);
    expect(rep.divergences[0]!.seq).toBe(want);
  });
});
