// With no answer by its deadline, a client reads the task id's claim to tell "denied" from
// "unknown" (client.ts taskClaimHolder). Anyone with rights on the claims bucket can put bytes
// there: junk must read as "unknown", and a value put over a gateway's claim must never make the
// client say "denied" for a task that ran (README: "denied" only when no copy can run).
import { afterEach, expect, it } from "vitest";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { grantRoot } from "../gateway/client-support.ts";
import { claimText, eventually, putClaim, watchSubmits } from "./client-hostile-support.ts";
import { agent, childAgent, childOf, runtimeWorld, type RuntimeWorld } from "./support.ts";

let h: Harness | undefined;
let w: RuntimeWorld | undefined;
const extra: Runtime[] = [];
afterEach(async () => {
  for (const r of extra.splice(0)) await r.close().catch(() => undefined);
  await w?.close();
  w = undefined;
  await h?.close();
  h = undefined;
});

/** A client that runs no gateway: decision deadline 1.5 s, skew 0.2 s. */
async function client(url: string, keys: string[], timeoutMs = 1_500): Promise<Runtime> {
  const rt = await Runtime.connect({ natsUrl: url, gatewayKeys: keys, outcomeTimeoutMs: timeoutMs, maxSkewMs: 200, lateOutcomeWaitMs: 1_000 });
  extra.push(rt);
  return rt;
}

it("hostile claim values with no gateway running: junk is unknown, never denied or succeeded; a claim that keeps every copy out is denied", { timeout: 40_000 }, async () => {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const rt = await client(hh.url, [namedKey("gateway-7").keyId]);
  const cases: { name: string; value: (sid: string) => string | undefined; want: TaskOutcome["status"] }[] = [
    { name: "no claim", value: () => undefined, want: "denied" },
    { name: "not JSON", value: () => "{not json", want: "unknown" },
    { name: "binary", value: () => "\u0000\u0001\uffff", want: "unknown" },
    { name: "duplicate keys", value: (sid) => `{"outcome":"held","submissionId":${JSON.stringify(sid)},"outcome":"denied"}`, want: "unknown" },
    { name: "oversized deny", value: () => JSON.stringify({ outcome: "denied", pad: "x".repeat(5_000) }), want: "unknown" },
    { name: "array", value: () => "[]", want: "unknown" },
    { name: "null", value: () => "null", want: "unknown" },
    { name: "empty object", value: () => "{}", want: "unknown" },
    { name: "unsafe integer", value: () => `{"outcome":"denied","n":9007199254740993}`, want: "unknown" },
    { name: "denied-copies, ids not an array", value: (sid) => JSON.stringify({ outcome: "denied-copies", submissionIds: sid }), want: "unknown" },
    { name: "denied-copies, 17 ids", value: (sid) => JSON.stringify({ outcome: "denied-copies", submissionIds: [sid, ...Array.from({ length: 16 }, (_, i) => `x${i}`)] }), want: "unknown" },
    { name: "denied-copies, a non-string id", value: (sid) => JSON.stringify({ outcome: "denied-copies", submissionIds: [sid, 1] }), want: "unknown" },
    { name: "held for this submission", value: (sid) => JSON.stringify({ submissionId: sid }), want: "unknown" },
    // No gateway runs and none can any more (past the deadline): these are true denies.
    { name: "denied-copies naming it", value: (sid) => JSON.stringify({ outcome: "denied-copies", submissionIds: [sid] }), want: "denied" },
    { name: "denied-copies not naming it", value: () => JSON.stringify({ outcome: "denied-copies", submissionIds: ["someone-else"] }), want: "denied" },
    { name: "held for another submission", value: () => JSON.stringify({ submissionId: "someone-else" }), want: "denied" },
    { name: "spent by a deny", value: () => JSON.stringify({ outcome: "denied" }), want: "denied" },
  ];
  const results = await Promise.all(
    cases.map(async (c) => {
      const taskId = newTaskId();
      const submits = watchSubmits(rt.nc, taskId);
      const { outcome, late } = rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await grantRoot(hh, taskId)], taskId });
      const seen = await eventually(() => submits.ids.length > 0, 1_000);
      const v = seen ? c.value(submits.ids[0]!) : undefined;
      if (v !== undefined) await putClaim(rt.nc, taskId, v);
      submits.stop();
      const o = await outcome;
      const l = await late;
      return { name: c.name, status: o.status, verdict: o.verdict, late: l, client: o.gatewayId };
    }),
  );
  expect(results).toEqual(cases.map((c) => ({ name: c.name, status: c.want, verdict: "deny", late: undefined, client: "client" })));
});

it("the real answer after the client's wait, or signed by a key it does not trust: unknown (never denied, never taken)", { timeout: 40_000 }, async () => {
  w = await runtimeWorld();
  const ww = w;
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  const started = new Set<string>();
  ww.rt.registerAction("transfer", async ({ taskId, args }) => {
    started.add(taskId);
    if ((args as { hold?: boolean }).hold === true) await released;
    return { ok: true };
  });
  const gwKey = ww.rt.gateway!.keyId;
  const slowClient = await client(ww.h.url, [gwKey], 1_500);
  const wrongKeys = await client(ww.h.url, [namedKey("gateway-evil").keyId], 1_500);
  const slow = newTaskId();
  const s = slowClient.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1, hold: true }, chain: [await ww.grant(slow)], taskId: slow });
  const quick = newTaskId();
  const q = wrongKeys.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(quick)], taskId: quick });
  const [so, qo] = await Promise.all([s.outcome, q.outcome]);
  release();
  expect(so).toMatchObject({ status: "unknown", verdict: "deny", gatewayId: "client" });
  expect(qo).toMatchObject({ status: "unknown", verdict: "deny", gatewayId: "client" });
  expect(qo.detail).toContain(gwKey);
  expect(await s.late).toBeUndefined();
  expect(await q.late).toBeUndefined();
  expect(started.has(slow) && started.has(quick)).toBe(true);
});

it("a value put over the gateway's claim while the task runs never makes the client say denied", { timeout: 40_000 }, async () => {
  w = await runtimeWorld();
  const ww = w;
  let release: () => void = () => undefined;
  const released = new Promise<void>((r) => (release = r));
  const started = new Set<string>();
  const finished = new Set<string>();
  ww.rt.registerAction("transfer", async ({ taskId }) => {
    started.add(taskId);
    await released;
    finished.add(taskId);
    return { ok: true };
  });
  const rt = await client(ww.h.url, [ww.rt.gateway!.keyId], 2_000);
  const overwrites: { name: string; value: (sid: string) => string | undefined }[] = [
    { name: "none put (control)", value: () => undefined },
    { name: "spent by a deny", value: () => JSON.stringify({ outcome: "denied" }) },
    { name: "spent by a deny naming it", value: (sid) => JSON.stringify({ outcome: "denied", submissionId: sid }) },
    { name: "denied-copies naming it", value: (sid) => JSON.stringify({ outcome: "denied-copies", submissionIds: [sid] }) },
    { name: "denied-copies not naming it", value: () => JSON.stringify({ outcome: "denied-copies", submissionIds: ["someone-else"] }) },
    { name: "held for another submission", value: () => JSON.stringify({ submissionId: "someone-else" }) },
  ];
  const results = await Promise.all(
    overwrites.map(async (c) => {
      const taskId = newTaskId();
      const submits = watchSubmits(rt.nc, taskId);
      const { outcome } = rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId });
      // The gateway allowed it (its claim is made) and the handler runs: then the attacker puts.
      const running = await eventually(() => started.has(taskId) && submits.ids.length > 0, 5_000);
      const before = await claimText(rt.nc, taskId);
      const v = running ? c.value(submits.ids[0]!) : undefined;
      if (v !== undefined) await putClaim(rt.nc, taskId, v);
      submits.stop();
      const o = await outcome;
      return { name: c.name, running, heldBefore: before?.includes(submits.ids[0] ?? "?") ?? false, status: o.status };
    }),
  );
  release();
  expect(await eventually(() => finished.size === overwrites.length)).toBe(true);
  // Every one of these tasks ran: the client may say "unknown" (no answer in its wait), never "denied".
  expect(results).toEqual(overwrites.map((c) => ({ name: c.name, running: true, heldBefore: true, status: "unknown" })));
});

it("ctx.spawn: a value put over the child's claim while the child runs never makes the parent's gateway report the child denied", { timeout: 40_000 }, async () => {
  w = await runtimeWorld({ childTimeoutMs: 2_000, limits: { maxSkewMs: 200 } });
  const ww = w;
  // Child requests signed with a 2 s decision deadline (Runtime.child signs notAfter = now + its outcomeTimeoutMs).
  const signer = await client(ww.h.url, [ww.rt.gateway!.keyId], 2_000);
  let releaseChild: () => void = () => undefined;
  const childReleased = new Promise<void>((r) => (releaseChild = r));
  let childStarted = false;
  let childRan = false;
  let seen: { status: string; put: boolean } | undefined;
  ww.rt.registerAction("transfer", async (ctx) => {
    if (ctx.agent === childAgent.keyId) {
      childStarted = true;
      await childReleased;
      childRan = true;
      return { child: "ran" };
    }
    const c = childOf(signer, ctx);
    const childTaskId = c.request.payload.taskId;
    const submits = watchSubmits(ww.rt.nc, childTaskId);
    const p = ctx.spawn(c);
    const running = await eventually(() => childStarted && submits.ids.length > 0, 5_000);
    submits.stop();
    if (running) await putClaim(ww.rt.nc, childTaskId, JSON.stringify({ outcome: "denied" }));
    const o = await p;
    seen = { status: o.status, put: running };
    releaseChild();
    return { child: o.status };
  });
  const taskId = newTaskId();
  await ww.rt.spawn({ agent, action: "transfer", resource: "payments/parent", args: { amount: 1 }, chain: [await ww.grant(taskId)], taskId }).outcome;
  expect(await eventually(() => childRan)).toBe(true);
  // The child ran: its parent may be told "unknown", never "denied".
  expect(seen).toEqual({ status: "unknown", put: true });
});
