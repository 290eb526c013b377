// Shared by the witness suites that run real gateways: tasks that fill a gateway's log with
// published checkpoints, and the shape of `audit witness --json`'s report.
import { expect } from "vitest";
import type { CheckpointPayload } from "../../src/audit/records.ts";
import type { SignedConsistencyProof } from "../../src/core/types.ts";
import type { Signed } from "../../src/crypto/signing.ts";
import type { Gateway } from "../../src/gateway/gateway.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import type { Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");

/** `audit witness --json`'s report, as far as these suites read it. */
export interface WitnessReport {
  ok: boolean;
  added?: number;
  held: number;
  largestSize: number;
  consistency: string;
  consistentThrough: number;
  proofsVerified: number;
  unproven: number;
  stopped?: string;
  findings: { kind: string; where: string; detail: string; evidence?: Signed<CheckpointPayload>[]; proof?: SignedConsistencyProof }[];
}

/** Gateways whose "transfer" handler is set (a gateway takes an action's handler once). */
const registered = new WeakSet<Gateway>();

/** Run `n` transfers on `g`, each succeeding, then have it checkpoint what is left over (published like the others). */
export async function runTasks(h: Harness, g: Gateway, n: number, tag: string): Promise<void> {
  if (!registered.has(g)) {
    g.registerAction("transfer", () => ({ ok: true }));
    registered.add(g);
  }
  for (let i = 0; i < n; i++) {
    const taskId = newTaskId();
    const now = Date.now();
    const { artifact } = await h.authority.grant({
      taskId,
      holder: agent.keyId,
      scope: DEFAULT_SCOPE,
      validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
      nonce: namedNonce(`${tag}-${taskId}`),
      attribution: { initiator: "t", reason: "witness" },
    });
    const o = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 10 + i }, chain: [artifact], taskId }).outcome;
    expect(o, JSON.stringify(o)).toMatchObject({ status: "succeeded" });
  }
  await g.ledger.store.checkpoint();
}
