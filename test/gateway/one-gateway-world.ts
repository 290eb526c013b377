// One harness per test with one gateway (key gateway-1) and a client runtime with short
// timeouts that trusts that gateway's key, plus root grants and a transfer.
import { afterEach } from "vitest";
import type { SignedArtifact } from "../../src/core/types.ts";
import type { Gateway, GatewayOptions } from "../../src/gateway/gateway.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";

export const agent = namedKey("agent-0");
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface OneGatewayWorld {
  h: Harness;
  gw: Gateway;
  client: Runtime;
  grant(taskId: string): Promise<SignedArtifact>;
  /** Submit a transfer of `args` (default {amount: 1}) under a fresh root grant. */
  run(args?: JsonValue): Promise<{ taskId: string; outcome: TaskOutcome }>;
}

let grants = 0;

/** One world per test, closed after it. */
export function worldPerTest(): (gateway?: Partial<GatewayOptions>) => Promise<OneGatewayWorld> {
  let h: Harness | undefined;
  let client: Runtime | undefined;
  afterEach(async () => {
    await client?.close().catch(() => undefined);
    await h?.close();
    h = undefined;
    client = undefined;
  });
  return async (gateway = {}) => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    const gw = await hh.startGateway(gateway);
    client = await Runtime.connect({ natsUrl: hh.url, gatewayKeys: [gw.keyId], outcomeTimeoutMs: 3_000, maxSkewMs: 300 });
    const c = client;
    const grant = async (taskId: string): Promise<SignedArtifact> =>
      (
        await hh.authority.grant({
          taskId,
          holder: agent.keyId,
          scope: DEFAULT_SCOPE,
          validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 },
          nonce: namedNonce(`one-gateway-${grants++}`),
          attribution: { initiator: "t", reason: "one-gateway world" },
        })
      ).artifact;
    return {
      h: hh,
      gw,
      client: c,
      grant,
      async run(args = { amount: 1 }) {
        const taskId = newTaskId();
        const outcome = await c.spawn({ agent, action: "transfer", resource: "payments/transfer", args, chain: [await grant(taskId)], taskId }).outcome;
        return { taskId, outcome };
      },
    };
  };
}
