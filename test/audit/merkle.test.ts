import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  EMPTY_ROOT,
  MerkleFrontier,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  nodesNeeded,
  rootAt,
  verifyConsistency,
  verifyInclusion,
  type NodeLookup,
} from "../../src/audit/merkle.ts";
import { describeWithVectors } from "../helpers/vectors.ts";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
// The Merkle vectors are Go-marshalled []byte: standard base64 with padding.
const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith(".json") ? [p] : [];
  });
}

/** Reference MTH straight from RFC 9162 §2.1.1, recursive over raw leaf hashes. */
function referenceRoot(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return EMPTY_ROOT;
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(referenceRoot(leaves.slice(0, k)), referenceRoot(leaves.slice(k)));
}

/** An in-memory node store filled by the frontier, as the audit store does. */
function buildTree(n: number): { frontier: MerkleFrontier; get: NodeLookup; leaves: Uint8Array[]; roots: Uint8Array[] } {
  const frontier = new MerkleFrontier();
  const nodes = new Map<string, Uint8Array>();
  const leaves: Uint8Array[] = [];
  const roots: Uint8Array[] = [EMPTY_ROOT];
  for (let i = 0; i < n; i++) {
    const lh = leafHash(new TextEncoder().encode(`leaf-${i}`));
    leaves.push(lh);
    for (const c of frontier.append(lh)) nodes.set(`${c.id.level}/${c.id.index}`, c.hash);
    roots.push(frontier.root());
  }
  const get: NodeLookup = (level, index) => {
    const h = nodes.get(`${level}/${index}`);
    if (!h) throw new Error(`node ${level}/${index} not stored`);
    return h;
  };
  return { frontier, get, leaves, roots };
}

describeWithVectors("merkle: RFC 6962 public vectors (transparency-dev/merkle)", (dir) => {
  const base = join(dir, "merkle-rfc6962");

  it("reproduces reference-tree.json: leaf hashes and roots for sizes 0..8", () => {
    const ref = JSON.parse(readFileSync(join(base, "reference-tree.json"), "utf8")) as {
      leafInputsHex: string[];
      leafHashesHex: string[];
      rootHashesBySizeHex: Record<string, string>;
    };
    const f = new MerkleFrontier();
    expect(hex(f.root())).toBe(ref.rootHashesBySizeHex["0"]);
    ref.leafInputsHex.forEach((input, i) => {
      const lh = leafHash(unhex(input));
      expect(hex(lh)).toBe(ref.leafHashesHex[i]);
      f.append(lh);
      expect(hex(f.root())).toBe(ref.rootHashesBySizeHex[String(i + 1)]);
    });
  });

  const inclusion = walk(join(base, "inclusion"));
  const consistency = walk(join(base, "consistency"));

  it("has all 196 probes", () => {
    expect(inclusion.length + consistency.length).toBe(196);
  });

  describe("inclusion", () => {
    it.each(inclusion.map((p) => [relative(base, p), p]))("%s", (_name, p) => {
      const v = JSON.parse(readFileSync(p, "utf8")) as {
        leafIdx: number;
        treeSize: number;
        root: string;
        leafHash: string;
        proof: string[] | null;
        wantErr: boolean;
      };
      const r = verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), (v.proof ?? []).map(b64), b64(v.root));
      expect(!r.ok).toBe(v.wantErr);
    });
  });

  describe("consistency", () => {
    it.each(consistency.map((p) => [relative(base, p), p]))("%s", (_name, p) => {
      const v = JSON.parse(readFileSync(p, "utf8")) as {
        size1: number;
        size2: number;
        root1: string;
        root2: string;
        proof: string[] | null;
        wantErr: boolean;
      };
      const r = verifyConsistency(v.size1, v.size2, (v.proof ?? []).map(b64), b64(v.root1), b64(v.root2));
      expect(!r.ok).toBe(v.wantErr);
    });
  });

  it("generates the proofs of the happy-path probes byte for byte over the reference leaves", () => {
    const ref = JSON.parse(readFileSync(join(base, "reference-tree.json"), "utf8")) as { leafInputsHex: string[] };
    const f = new MerkleFrontier();
    const nodes = new Map<string, Uint8Array>();
    for (const input of ref.leafInputsHex) for (const c of f.append(leafHash(unhex(input)))) nodes.set(`${c.id.level}/${c.id.index}`, c.hash);
    const get: NodeLookup = (l, i) => nodes.get(`${l}/${i}`)!;
    let checked = 0;
    for (const p of inclusion.filter((q) => q.endsWith("happy-path.json"))) {
      const v = JSON.parse(readFileSync(p, "utf8")) as { leafIdx: number; treeSize: number; proof: string[] | null };
      if (v.treeSize > 8) continue;
      expect(inclusionProof(v.leafIdx, v.treeSize, get).map((b) => Buffer.from(b).toString("base64"))).toEqual(v.proof ?? []);
      checked++;
    }
    for (const p of consistency.filter((q) => q.endsWith("happy-path.json"))) {
      const v = JSON.parse(readFileSync(p, "utf8")) as { size1: number; size2: number; proof: string[] | null };
      if (v.size2 > 8) continue;
      expect(consistencyProof(v.size1, v.size2, get).map((b) => Buffer.from(b).toString("base64"))).toEqual(v.proof ?? []);
      checked++;
    }
    expect(checked).toBeGreaterThan(4);
  });
});

describe("merkle: frontier, generation and verification agree", () => {
  const N = 70;
  const { frontier, get, leaves, roots } = buildTree(N);

  it("frontier root equals the recursive RFC 9162 definition at every size", () => {
    for (let n = 0; n <= N; n++) expect(hex(roots[n]!)).toBe(hex(referenceRoot(leaves.slice(0, n))));
    expect(frontier.size).toBe(N);
  });

  it("rootAt recomputes any past root from stored nodes", () => {
    for (let n = 0; n <= N; n++) expect(hex(rootAt(n, get))).toBe(hex(roots[n]!));
  });

  it("every inclusion proof verifies, and fails for a neighbouring index or another leaf", () => {
    for (let n = 1; n <= N; n++) {
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(i, n, get);
        expect(verifyInclusion(i, n, leaves[i]!, proof, roots[n]!)).toEqual({ ok: true });
        if (n > 1) expect(verifyInclusion((i + 1) % n, n, leaves[i]!, proof, roots[n]!).ok).toBe(false);
        expect(verifyInclusion(i, n, leaves[(i + 1) % N]!, proof, roots[n]!).ok).toBe(false);
      }
    }
  });

  it("every consistency proof verifies, and fails against the wrong old root", () => {
    for (let n = 1; n <= N; n++) {
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(m, n, get);
        expect(verifyConsistency(m, n, proof, roots[m]!, roots[n]!)).toEqual({ ok: true });
        if (m > 1) expect(verifyConsistency(m, n, proof, roots[m - 1]!, roots[n]!).ok).toBe(false);
      }
    }
  });

  it("a frontier restored from its peaks continues identically", () => {
    const partial = buildTree(37);
    const restored = new MerkleFrontier(37, partial.frontier.peaks().map((p) => p.hash));
    for (let i = 37; i < N; i++) restored.append(leaves[i]!);
    expect(hex(restored.root())).toBe(hex(roots[N]!));
  });

  it("proofs read O(log n) stored nodes", () => {
    const size = 1_000_000;
    expect(nodesNeeded((g) => inclusionProof(123_456, size, g)).length).toBeLessThanOrEqual(40);
    expect(nodesNeeded((g) => consistencyProof(333_333, size, g)).length).toBeLessThanOrEqual(60);
  });

  it("generators refuse caller mistakes with RangeError; verifiers never throw on garbage", () => {
    expect(() => inclusionProof(5, 5, get)).toThrow(RangeError);
    expect(() => consistencyProof(0, 5, get)).toThrow(RangeError);
    expect(() => consistencyProof(6, 5, get)).toThrow(RangeError);
    fc.assert(
      fc.property(
        fc.integer({ min: -3, max: 100 }),
        fc.integer({ min: -3, max: 100 }),
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 10 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 40 }),
        (a, b, proof, x, y) => {
          expect(verifyInclusion(a, b, x, proof, y).ok).toBe(false);
          const c = verifyConsistency(a, b, proof, x, y);
          // Only equal sizes with an empty proof and equal roots may pass on random input.
          if (c.ok) expect(a === b && proof.length === 0 && hex(x) === hex(y)).toBe(true);
        },
      ),
    );
    expect(verifyInclusion(0.5, 2, leaves[0]!, [], roots[1]!).ok).toBe(false);
    expect(verifyInclusion(0, Number.MAX_SAFE_INTEGER + 2, leaves[0]!, [], roots[1]!).ok).toBe(false);
  });
});
