// Replay of committed, recorded logs (Temporal-style): they must keep replaying clean, and any
// edit to them must come back as a typed divergence. v1 copies each decision's trust snapshot;
// v2 refers to the log's own trust (src/audit/trust-view.ts); v3 adds the task-id claim to every
// decision input; v4 signs the policy activation. All formats stay replayable.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { jsonlLogSource } from "../../src/audit/log-source.ts";
import { canonicalize } from "../../src/canonical/jcs.ts";
import { replay, type TrustRoots } from "../../src/audit/replay.ts";

const FIXTURES = new URL("../fixtures/audit/", import.meta.url);
const withLines = (ls: string[]): string => ls.map((l) => `${l}\n`).join("");

type Edit = [string, (ls: string[]) => string[], string, number | ((ls: string[]) => number)];
const firstDenied = (ls: string[]): number => ls.findIndex((l) => l.includes('"verdict":"deny"') && l.startsWith('{"decision"'));
const firstRevokedDeny = (ls: string[]): number => ls.findIndex((l) => l.startsWith('{"decision"') && l.includes('"reasons":["REVOKED"]'));

// Edits only a by-reference log can suffer: its trust reference replaced or garbled.
const V2_EDITS: Edit[] = [
  [
    // v1 was written by the same deterministic scenario, so its line holds this decision's full snapshot.
    "a trust reference replaced by a copied snapshot that omits the revocation",
    (ls) =>
      ls.map((l, i) => {
        if (i !== firstRevokedDeny(ls)) return l;
        const v1 = JSON.parse(readFileSync(new URL("scenario-v1.jsonl", FIXTURES), "utf8").split("\n")[i]!) as { input: { trust: { revokedArtifacts: string[] } } };
        const r = JSON.parse(l) as { input: { trust: unknown } };
        r.input.trust = { ...v1.input.trust, revokedArtifacts: [] };
        return canonicalize(r);
      }),
    "TRUST_STATE",
    (ls) => firstRevokedDeny(ls),
  ],
  ["a trust reference garbled", (ls) => ls.map((l, i) => (i === firstDenied(ls) ? l.replace('"trust":{"source":"log"}', '"trust":{"source":"lol"}') : l)), "TRUST_STATE", (ls) => firstDenied(ls)],
];

// Edits only a log with task-id claims can suffer.
const V3_EDITS: Edit[] = [
  [
    "a task claim edited to say the id was already decided",
    (ls) => ls.map((l, i) => (i === firstDenied(ls) ? l.replace('"local":"fresh","taskId"', '"local":"decided","taskId"') : l)),
    "TASK_STATE",
    (ls) => firstDenied(ls),
  ],
];

// Edits only a log with signed policy activations can suffer.
const V4_EDITS: Edit[] = [
  [
    "the policy activation's version edited",
    (ls) => ls.map((l, i) => (i === 2 ? l.replace('"version":1700000000000', '"version":1700000000001') : l)),
    "POLICY_UNVERIFIED",
    2,
  ],
];

function fixtureSuite(version: "v1" | "v2" | "v3" | "v4", extra: Edit[]): void {
  const text = readFileSync(new URL(`scenario-${version}.jsonl`, FIXTURES), "utf8");
  const trust = JSON.parse(readFileSync(new URL(`scenario-${version}.trust.json`, FIXTURES), "utf8")) as TrustRoots;
  const lines = text.split("\n").filter((l) => l !== "");

  describe(`audit fixtures: scenario-${version} (recorded log)`, () => {
    it("replays with no divergence and re-derives every decision", async () => {
      const rep = await replay(jsonlLogSource(text), trust);
      expect(rep.divergences).toEqual([]);
      expect(rep.recordsChecked).toBe(lines.length);
      expect(rep.decisionsRederived).toBe(24);
      expect(rep.checkpointsVerified).toBeGreaterThanOrEqual(6);
      expect(rep.uncheckpointedTail).toBe(0);
    });

    const edits: Edit[] = [
      ["a verdict flipped", (ls) => ls.map((l, i) => (i === firstDenied(ls) ? l.replace('"verdict":"deny"', '"verdict":"allow"') : l)), "DECISION_MISMATCH", (ls) => firstDenied(ls)],
      ["a line deleted", (ls) => ls.filter((_, i) => i !== 40), "SEQ_MISMATCH", 40],
      ["two lines swapped", (ls) => ls.map((l, i) => (i === 50 ? ls[51]! : i === 51 ? ls[50]! : l)), "SEQ_MISMATCH", 50],
      ["whitespace added (not canonical)", (ls) => ls.map((l, i) => (i === 10 ? l.replace('"type"', ' "type"') : l)), "RECORD_MALFORMED", 10],
      ["the tail cut and the final checkpoint kept", (ls) => [...ls.slice(0, 100), ls[ls.length - 1]!], "CHAIN_BROKEN", 100],
      ...extra,
    ];

    it.each(edits)("%s → %s", async (_name, edit, kind, seq) => {
      const edited = edit(lines);
      const rep = await replay(jsonlLogSource(withLines(edited)), trust);
      expect(rep.ok).toBe(false);
      const want = typeof seq === "number" ? seq : seq(lines);
      expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toContain(`${want}:${kind}`);
      expect(rep.divergences[0]!.seq).toBe(want);
    });
  });
}

fixtureSuite("v1", []);
fixtureSuite("v2", V2_EDITS);
fixtureSuite("v3", [...V2_EDITS.filter(([name]) => name === "a trust reference garbled"), ...V3_EDITS]);
fixtureSuite("v4", [...V2_EDITS.filter(([name]) => name === "a trust reference garbled"), ...V3_EDITS, ...V4_EDITS]);
