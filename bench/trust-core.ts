// Trust-core figures (issue: trust core): Ed25519 verifies/s per backend and decide() ops/s
// at chain depth 0, 1 and 3, each as a ratio to raw node:crypto verify/s in the same run.
import { createPublicKey, verify } from "node:crypto";
import { clearSignatureMemo, decide } from "../src/core/decide.ts";
import { publicKeyFromSeed, signEd25519, verifyEd25519, verifyNobleStrict, verifyReference } from "../src/crypto/ed25519.ts";
import { buildTask, inputFor, makeWorld } from "../src/testkit/world.ts";
import type { DecisionInput } from "../src/core/types.ts";
import { fmt, opsPerSec } from "./util.ts";

export function runTrustCoreBench(): Record<string, number> {
  const seed = new Uint8Array(32).fill(7);
  const pub = publicKeyFromSeed(seed);
  const msg = new Uint8Array(400).fill(1);
  const sig = signEd25519(seed, msg);
  const key = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), pub]), format: "der", type: "spki" });
  const raw = opsPerSec(() => verify(null, msg, key, sig), 3000);
  const out: Record<string, number> = { "ed25519.raw_node_verify_per_s": raw };
  out["ed25519.hot_path_per_s"] = opsPerSec(() => verifyEd25519(pub, msg, sig), 3000);
  out["ed25519.noble_strict_per_s"] = opsPerSec(() => verifyNobleStrict(pub, msg, sig), 300);
  out["ed25519.reference_both_per_s"] = opsPerSec(() => verifyReference(pub, msg, sig), 300);

  const w = makeWorld();
  // Warm the JIT, Cedar's wasm and the policy cache before any figure is taken, so the first
  // depth measured is not penalised for going first.
  const warm0 = Array.from({ length: 50 }, (_, i) => inputFor(w, buildTask(w, { depth: 1, tag: `jit-${i}` })));
  for (let r = 0; r < 8; r++) for (const x of warm0) decide(x);
  for (const depth of [0, 1, 3]) {
    // Cold: every decision on fresh evidence, memo cleared — all 1 + 2(depth+1) signatures verified.
    const N = 400;
    const cold: DecisionInput[] = Array.from({ length: N }, (_, i) => inputFor(w, buildTask(w, { depth, tag: `cold-${depth}-${i}` })));
    const coldRate = opsPerSec(
      (i) => {
        clearSignatureMemo();
        const d = decide(cold[i % N]!);
        if (d.verdict !== "allow") throw new Error(`bench input denied: ${d.reasons.join(",")}`);
      },
      N,
      3,
    );
    // Warm ancestors: siblings under one parent (the gateway's steady state): the request,
    // the leaf artifact and its lineage are new each time; ancestors were verified before.
    const warm: DecisionInput[] = Array.from({ length: N }, (_, i) => {
      const b = buildTask(w, { depth, tag: `warm-${depth}-${i}` });
      if (depth > 0) {
        const shared = buildTask(w, { depth, tag: `warm-${depth}-0` });
        for (let k = 0; k < depth; k++) {
          b.chain[k] = shared.chain[k]!;
          b.lineage[k] = shared.lineage[k]!;
        }
        // Rebuild the leaf on the shared prefix.
        return inputFor(w, buildTaskOn(w, depth, i, shared));
      }
      return inputFor(w, b);
    });
    const warmRate = opsPerSec(
      (i) => {
        // Each sample starts from an empty memo holding only the shared ancestors, so no leaf
        // is ever a memo hit (samples reuse the same inputs).
        if (i % N === 0) {
          clearSignatureMemo();
          decide(warm[0]!);
        }
        const d = decide(warm[i % N]!);
        if (d.verdict !== "allow") throw new Error(`bench input denied: ${d.reasons.join(",")}`);
      },
      N,
      3,
    );
    const sigs = 1 + 2 * (depth + 1);
    out[`decide.depth${depth}.cold_per_s`] = coldRate;
    out[`decide.depth${depth}.cold_ratio_to_raw_verify`] = coldRate / raw;
    out[`decide.depth${depth}.signature_bound_ceiling_per_s`] = raw / sigs;
    out[`decide.depth${depth}.warm_ancestors_per_s`] = warmRate;
  }
  return out;
}

import { delegateArtifact, signRequest, spawnLineage, artifactId } from "../src/core/artifacts.ts";
import { namedNonce, T0, type World, type Built } from "../src/testkit/world.ts";

/** A new leaf (artifact, lineage, request) under the shared ancestors of `shared`. */
function buildTaskOn(w: World, depth: number, i: number, shared: Built): Built {
  const parent = shared.chain[depth - 1]!;
  const holderIdx = (depth - 1) % w.agents.length;
  const leafHolder = w.agents[depth % w.agents.length]!;
  const leaf = delegateArtifact(parent, w.agents[holderIdx]!, {
    holder: leafHolder.keyId,
    scope: parent.payload.scope,
    validity: parent.payload.validity,
    nonce: namedNonce(`leaf-${depth}-${i}`),
    attribution: { initiator: "bench", reason: "sibling" },
  });
  const taskId = `sib-${depth}-${i}`;
  const lineage = spawnLineage(w.gateway, {
    gatewayId: w.gatewayId,
    childTaskId: taskId,
    childArtifact: leaf,
    parentTaskId: shared.taskIds[depth - 1]!,
    parentArtifactId: artifactId(parent),
    parentDecisionId: artifactId(parent),
    emittedAt: T0 - 500,
  });
  const args = { amount: 100, to: "acct-42" };
  const request = signRequest(leafHolder, { taskId, action: "transfer", resource: "payments/transfer", args, artifact: leaf, parentTaskId: shared.taskIds[depth - 1]!, createdAt: T0 - 10 });
  return { chain: [...shared.chain.slice(0, depth), leaf], lineage: [...shared.lineage.slice(0, depth), lineage], taskIds: [...shared.taskIds.slice(0, depth), taskId], request, args, holder: leafHolder };
}

export function printTrustCore(r: Record<string, number>): void {
  const raw = r["ed25519.raw_node_verify_per_s"]!;
  console.log("\n## Trust core (medians; ratios to raw node:crypto verify in this run)");
  console.log(`raw node:crypto Ed25519 verify      ${fmt(raw)}/s   (1.00x)`);
  for (const k of ["hot_path", "noble_strict", "reference_both"]) {
    const v = r[`ed25519.${k}_per_s`]!;
    console.log(`${("verify " + k).padEnd(36)} ${fmt(v)}/s   (${fmt(v / raw, 2)}x)`);
  }
  for (const d of [0, 1, 3]) {
    const cold = r[`decide.depth${d}.cold_per_s`]!;
    const warm = r[`decide.depth${d}.warm_ancestors_per_s`]!;
    const ceil = r[`decide.depth${d}.signature_bound_ceiling_per_s`]!;
    console.log(
      `decide depth ${d}: cold ${fmt(cold)}/s (${fmt(cold / raw, 3)}x raw, ${fmt((cold / ceil) * 100)}% of the ${fmt(ceil)}/s signature-bound ceiling); warm ancestors ${fmt(warm)}/s (${fmt(warm / raw, 3)}x raw)`,
    );
  }
}
