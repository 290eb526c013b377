import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { namedKey, namedNonce, DEFAULT_SCOPE } from "../../src/testkit/world.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";

const agent = namedKey("agent-0");
const sub = namedKey("agent-1");

describe("gateway over a real nats-server", () => {
  let h: Harness;
  const executed: string[] = [];
  beforeAll(async () => {
    h = await startHarness();
    const gw = h.gateways[0]!;
    gw.registerAction("transfer", ({ taskId, args }) => {
      executed.push(taskId);
      return { ok: true, args };
    });
    gw.registerAction("plan", async (ctx) => {
      executed.push(ctx.taskId);
      // Spawn one child with an attenuated artifact.
      const child = h.runtime.child({
        parent: ctx.chain[ctx.chain.length - 1]!,
        parentTaskId: ctx.taskId,
        holderKey: agent,
        childAgent: sub,
        delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { max: 100 } } }, validity: ctx.chain[0]!.payload.validity, nonce: namedNonce(`child-of-${ctx.taskId}`), attribution: { initiator: "planner", reason: "sub-task" } },
        action: "transfer",
        resource: "payments/transfer",
        args: { amount: 50 },
      });
      const out = await ctx.spawn(child);
      return { child: out.status, childTask: child.request.payload.taskId };
    });
  });
  afterAll(async () => {
    await h.close();
  });

  async function grant(taskId: string, scope = DEFAULT_SCOPE, actions?: string[]) {
    const now = Date.now();
    return h.authority.grant({
      taskId,
      holder: agent.keyId,
      scope: actions ? { ...scope, actions } : scope,
      validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
      nonce: namedNonce(`root-${taskId}`),
      attribution: { initiator: "alice@example.com", reason: "e2e" },
    });
  }

  it("runs a verified task: allow is durable before the handler runs, outcome recorded", async () => {
    const taskId = newTaskId();
    const { artifact } = await grant(taskId);
    const { outcome } = h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 10 }, chain: [artifact], taskId });
    const o = await outcome;
    expect(o).toMatchObject({ taskId, verdict: "allow", status: "succeeded", codes: [] });
    expect(executed).toContain(taskId);
    const store = h.gateways[0]!.ledger.store;
    const rec = await store.getRecord(o.decisionSeq!);
    expect(rec).toMatchObject({ type: "decision", taskId, decision: { verdict: "allow" } });
  });

  it("denies a task with no artifact at the evidence deadline, handler never invoked", async () => {
    const taskId = newTaskId();
    const { artifact } = await grant(taskId);
    // Sign a request but publish no artifact chain.
    const { signRequest } = await import("../../src/core/artifacts.ts");
    const { submitTask } = await import("../../src/runtime/client.ts");
    const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
    const o = await submitTask(h.runtime.nc, { request, args: { amount: 1 } });
    expect(o).toMatchObject({ verdict: "deny", status: "denied" });
    expect(o.codes).toContain("NO_ARTIFACT");
    expect(executed).not.toContain(taskId);
  });

  it("spawns a child from an executing parent with gateway-signed lineage (depth 1)", async () => {
    const taskId = newTaskId();
    const { artifact } = await grant(taskId, { actions: ["plan", "transfer"], resources: ["payments/"], constraints: {} });
    const o = await h.runtime.spawn({ agent, action: "plan", resource: "payments/batch", args: {}, chain: [artifact], taskId }).outcome;
    expect(o).toMatchObject({ verdict: "allow", status: "succeeded" });
    expect((o.result as { child: string }).child).toBe("succeeded");
  });

  it("a replayed submission is denied REPLAYED and runs nothing", async () => {
    const taskId = newTaskId();
    const { artifact } = await grant(taskId);
    const first = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 5 }, chain: [artifact], taskId }).outcome;
    expect(first.verdict).toBe("allow");
    const count = executed.length;
    // The captured submission, sent again as is: its artifact's nonce is spent.
    const again = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 5 }, chain: [artifact], taskId }).outcome;
    expect(again).toMatchObject({ verdict: "deny", status: "denied" });
    expect(again.codes).toContain("REPLAYED");
    expect(executed.length).toBe(count);
  });

  it("the gateway's audit log replays clean: every decision re-derived, no divergence", async () => {
    const r = await replayGateway(h.gateways[0]!);
    expect(r.divergences).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.decisionsRederived).toBeGreaterThan(5);
  });
});
