// Caller mistakes with the runtime API are TypeErrors thrown up front, before anything reaches
// the bus: task ids that are not subject tokens (or, for a child, not in its parent's
// namespace), a second handler for an action, use after close.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { childTaskId, isChildTaskIdOf } from "../../src/core/child-task-id.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

const BAD_TASK_IDS = ["pay.1", "pay 1", "", "pay*", "pay>", "t-\n", "x".repeat(129)];

describe("runtime API: caller mistakes", () => {
  let w: RuntimeWorld;
  beforeAll(async () => {
    w = await runtimeWorld();
  });
  afterAll(async () => {
    await w.close();
  });

  it("spawn throws TypeError for a task id that is not a subject token, before publishing anything", async () => {
    const art = await w.grant(newTaskId());
    const seen: string[] = [];
    const sub = w.h.runtime.nc.subscribe("failclosed.>", { callback: (_e, m) => void seen.push(m.subject) });
    await w.h.runtime.nc.flush();
    for (const taskId of BAD_TASK_IDS) {
      expect(() => w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [art], taskId }), JSON.stringify(taskId)).toThrow(TypeError);
    }
    // A round trip after the attempts: anything they had published would have arrived by now.
    await w.rt.nc.flush();
    await w.h.runtime.nc.flush();
    sub.unsubscribe();
    expect(seen.filter((s) => !s.startsWith("failclosed.gov.heartbeat"))).toEqual([]);
  });

  it("child throws TypeError for a child or parent task id that is not a subject token", async () => {
    const parentTaskId = newTaskId();
    const parent = await w.grant(parentTaskId);
    const childAgent = namedKey("agent-child");
    const base = {
      parent,
      parentTaskId,
      holderKey: agent,
      childAgent,
      delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { max: 10 } } }, validity: parent.payload.validity, nonce: namedNonce("child-delegation"), attribution: { initiator: "t", reason: "r" } },
      action: "transfer",
      resource: "payments/child",
      args: { amount: 1 },
    };
    for (const taskId of BAD_TASK_IDS) {
      expect(() => w.rt.child({ ...base, taskId }), JSON.stringify(taskId)).toThrow(TypeError);
      expect(() => w.rt.child({ ...base, parentTaskId: taskId }), JSON.stringify(taskId)).toThrow(TypeError);
    }
  });

  it("child names its task id in the parent's namespace, and throws TypeError for one outside it", async () => {
    const parentTaskId = newTaskId();
    const parent = await w.grant(parentTaskId);
    const base = {
      parent,
      parentTaskId,
      holderKey: agent,
      childAgent: namedKey("agent-child"),
      delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { max: 10 } } }, validity: parent.payload.validity, nonce: namedNonce("child-namespace"), attribution: { initiator: "t", reason: "r" } },
      action: "transfer",
      resource: "payments/child",
      args: { amount: 1 },
    };
    // By default: a random label, a fresh id each time.
    const a = w.rt.child(base).request.payload.taskId;
    const b = w.rt.child(base).request.payload.taskId;
    expect(a).not.toBe(b);
    expect([isChildTaskIdOf(parentTaskId, a), isChildTaskIdOf(parentTaskId, b)]).toEqual([true, true]);
    expect(w.rt.child({ ...base, label: "child-1" }).request.payload.taskId).toBe(childTaskId(parentTaskId, "child-1"));
    expect(w.rt.child({ ...base, taskId: childTaskId(parentTaskId, "child-1") }).request.payload.taskId).toBe(childTaskId(parentTaskId, "child-1"));
    // Another task's id, root or child, and a parent's own: not this parent's to name.
    for (const taskId of ["child-1", newTaskId(), parentTaskId, childTaskId(newTaskId(), "child-1")]) {
      expect(() => w.rt.child({ ...base, taskId }), taskId).toThrow(TypeError);
    }
    for (const label of ["", "a.b", "x".repeat(106)]) expect(() => w.rt.child({ ...base, label }), label).toThrow(TypeError);
    expect(() => w.rt.child({ ...base, label: "child-1", taskId: childTaskId(parentTaskId, "child-1") })).toThrow(TypeError);
  });

  it("Authority.grant rejects with TypeError for a task id that is not a subject token", async () => {
    for (const taskId of BAD_TASK_IDS) {
      await expect(
        w.h.authority.grant({
          taskId,
          holder: agent.keyId,
          scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} },
          validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 60_000 },
          nonce: namedNonce(`bad-grant-${taskId}`),
          attribution: { initiator: "t", reason: "r" },
        }),
        JSON.stringify(taskId),
      ).rejects.toThrow(TypeError);
    }
  });

  it("registerAction refuses a second handler for a name; the first one stays in effect", async () => {
    const calls: string[] = [];
    w.rt.registerAction("transfer", () => (calls.push("first"), { h: 1 }));
    expect(() => w.rt.registerAction("transfer", () => (calls.push("second"), { h: 2 }))).toThrow(TypeError);
    expect(() => w.rt.registerAction("transfer", () => (calls.push("second"), { h: 2 }))).toThrow(/already has a handler/);
    const taskId = newTaskId();
    const out = await w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await w.grant(taskId)], taskId }).outcome;
    expect(out, JSON.stringify(out)).toMatchObject({ status: "succeeded", result: { h: 1 } });
    expect(calls).toEqual(["first"]);
    // Another name is still welcome.
    expect(() => w.rt.registerAction("read", () => ({ ok: true }))).not.toThrow();
  });

  it("after close(), spawn and registerAction throw TypeError instead of reporting an outcome", async () => {
    const taskId = newTaskId();
    const art = await w.grant(taskId);
    await w.rt.close();
    expect(() => w.rt.registerAction("deploy", () => ({ ok: true }))).toThrow(TypeError);
    expect(() => w.rt.registerAction("deploy", () => ({ ok: true }))).toThrow(/closed/);
    expect(() => w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [art], taskId })).toThrow(TypeError);
    expect(() => w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [art], taskId })).toThrow(/closed/);
  });
});
