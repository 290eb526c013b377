// Caller mistakes throw TypeError (Runtime.spawn's contract): args that are not I-JSON (a
// BigInt, an undefined member, a Date) are one, in spawn() and child() alike, with the reason,
// before anything is published; not a CanonicalError from signing the request.
import { afterAll, beforeAll, expect, it } from "vitest";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { CanonicalError } from "../../src/canonical/errors.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

const BAD_ARGS: [string, unknown][] = [
  ["a BigInt", { amount: 1n }],
  ["an undefined member", { amount: 1, memo: undefined }],
  ["a Date", { amount: 1, at: new Date(0) }],
];

let w: RuntimeWorld;
beforeAll(async () => {
  w = await runtimeWorld();
});
afterAll(async () => {
  await w.close();
});

const thrownBy = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
};

it("spawn: a TypeError naming the reason, with the CanonicalError as its cause; nothing published", { timeout: 60_000 }, async () => {
  // The grants first: granting publishes the task's root lineage.
  const grants = await Promise.all(
    BAD_ARGS.map(async () => {
      const taskId = newTaskId();
      return { taskId, chain: [await w.grant(taskId)] };
    }),
  );
  const seen: string[] = [];
  const sub = w.h.runtime.nc.subscribe("failclosed.>", { callback: (_e, m) => void seen.push(m.subject) });
  await w.h.runtime.nc.flush();
  for (const [i, [what, args]] of BAD_ARGS.entries()) {
    const { taskId, chain } = grants[i]!;
    const e = thrownBy(() => w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: args as JsonValue, chain, taskId }));
    expect(e, what).toBeInstanceOf(TypeError);
    expect((e as Error).message, what).toMatch(/^spawn: not I-JSON/);
    expect((e as Error).cause, what).toBeInstanceOf(CanonicalError);
  }
  await w.rt.nc.flush();
  await w.h.runtime.nc.flush();
  sub.unsubscribe();
  expect(seen.filter((s) => !s.startsWith("failclosed.gov.heartbeat"))).toEqual([]);
});

it("child: the same", { timeout: 60_000 }, async () => {
  const parentTaskId = newTaskId();
  const parent = await w.grant(parentTaskId);
  for (const [what, args] of BAD_ARGS) {
    const e = thrownBy(() =>
      w.rt.child({
        parent,
        parentTaskId,
        holderKey: agent,
        childAgent: namedKey("agent-child"),
        delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { max: 10 } } }, validity: parent.payload.validity, nonce: namedNonce(`child-args-${what}`), attribution: { initiator: "t", reason: "r" } },
        action: "transfer",
        resource: "payments/child",
        args: args as JsonValue,
      }),
    );
    expect(e, what).toBeInstanceOf(TypeError);
    expect((e as Error).message, what).toMatch(/^child: not I-JSON/);
  }
});
