// A harness (real nats-server, an authority that heartbeats) and a Runtime running its own
// gateway, with grants for the runtime's agent: what the runtime API tests need.
import { join } from "node:path";
import type { SignedArtifact } from "../../src/core/types.ts";
import type { ActionContext, ChildTask, GatewayOptions } from "../../src/gateway/gateway.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

export const agent = namedKey("agent-0");

export interface RuntimeWorld {
  h: Harness;
  rt: Runtime;
  /** A root grant for `taskId` held by `agent`, valid from a minute ago for an hour. */
  grant(taskId: string): Promise<SignedArtifact>;
  close(): Promise<void>;
}

export async function runtimeWorld(gatewayOptions: Partial<GatewayOptions> = {}): Promise<RuntimeWorld> {
  const h = await startHarness({ gateways: 0 });
  try {
    const rt = await Runtime.connect({
      natsUrl: h.url,
      dataDir: join(h.dir, "rt-gw"),
      gateway: { gatewayId: "rt-gw", gatewayKey: namedKey("gateway-7"), authorities: [h.authority.keyId], attributes: { name: "staging" }, evidenceDeadlineMs: 1_500, ...gatewayOptions },
      outcomeTimeoutMs: 10_000,
      maxSkewMs: 500,
    });
    // The gateway allows nothing before it holds the policy the authority published.
    for (let i = 0; i < 200 && rt.gateway?.ledger.state.policy === undefined; i++) await new Promise((r) => setTimeout(r, 25));
    let n = 0;
    return {
      h,
      rt,
      grant: async (taskId) =>
        (
          await h.authority.grant({
            taskId,
            holder: agent.keyId,
            scope: DEFAULT_SCOPE,
            validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 },
            nonce: namedNonce(`runtime-${taskId}-${n++}`),
            attribution: { initiator: "t", reason: "runtime tests" },
          })
        ).artifact,
      async close() {
        await rt.close().catch(() => undefined);
        await h.close();
      },
    };
  } catch (e) {
    await h.close();
    throw e;
  }
}

export const childAgent = namedKey("agent-1");

/** The child task a parent handler spawns: a transfer of 1 by `childAgent`, delegated from the parent's leaf. */
export function childOf(rt: Runtime, ctx: ActionContext): ChildTask {
  const leaf = ctx.chain[ctx.chain.length - 1]!;
  return rt.child({
    parent: leaf,
    parentTaskId: ctx.taskId,
    holderKey: agent,
    childAgent,
    delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { max: 10 } } }, validity: leaf.payload.validity, nonce: namedNonce(`child-of-${ctx.taskId}`), attribution: { initiator: "t", reason: "child" } },
    action: "transfer",
    resource: "payments/child",
    args: { amount: 1 },
  });
}
