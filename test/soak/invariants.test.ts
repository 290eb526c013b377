// The soak's checker, on made-up facts: each invariant must catch its own violation (an oracle
// that can never fail proves nothing), and a clean run must pass.
import { describe, expect, it } from "vitest";
import type { ReplayReport } from "../../src/audit/replay.ts";
import { checkInvariants, fixStaleWindows, type LogFacts, type RunFacts } from "./invariants.ts";
import { TIMINGS, type Invocation, type TaskRecord } from "./soak-world.ts";

const clean: ReplayReport = { ok: true, recordsChecked: 10, decisionsRederived: 2, checkpointsVerified: 1, size: 10, root: "r", uncheckpointedTail: 0, divergences: [] };

function task(taskId: string, expect: TaskRecord["expect"], extra: Partial<TaskRecord> = {}): TaskRecord {
  return { taskId, kind: "k", expect, why: "because", multiSubmission: false, notes: [], nonce: `n-${taskId}`, ...extra };
}

function log(gatewayId: string, decisions: [string, number, "allow" | "deny", number][], outcomes: [string, number][] = [], rep: ReplayReport = clean): LogFacts {
  const d: LogFacts["decisions"] = new Map();
  for (const [taskId, seq, verdict, now] of decisions) d.set(taskId, [...(d.get(taskId) ?? []), { seq, verdict, reasons: [], now, busConnected: true, feedAt: now, nonceKey: `n-${taskId}`, time: now }]);
  const o: LogFacts["outcomes"] = new Map();
  for (const [taskId, seq] of outcomes) o.set(taskId, [...(o.get(taskId) ?? []), { seq, status: "succeeded" }]);
  return { gatewayId, size: 100, decisions: d, outcomes: o, revocations: new Map(), verify: clean, replay: rep };
}

const inv = (taskId: string, gatewayId = "gw-1", extra: Partial<Invocation> = {}): Invocation => ({ gatewayId, taskId, nonce: `n-${taskId}`, action: "transfer", at: 1_000, durableSize: 50, ...extra });

function facts(o: Partial<RunFacts>): RunFacts {
  return { seed: 7, timings: TIMINGS, hangBoundMs: 60_000, tasks: new Map(), invocations: [], logs: [log("gw-1", []), log("gw-2", [])], busDown: [], stale: [], otherPolicy: [], heartbeats: [], errors: [], ...o };
}

const tasks = (...rs: TaskRecord[]) => new Map(rs.map((r) => [r.taskId, r]));

describe("soak invariants", () => {
  it("a clean run passes", () => {
    const ok = task("t-ok", "may-run", { client: { startedAt: 0, settledAt: 100, via: "runtime.spawn", outcome: { taskId: "t-ok", gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded" } } });
    expect(checkInvariants(facts({ tasks: tasks(ok), invocations: [inv("t-ok")], logs: [log("gw-1", [["t-ok", 3, "allow", 500]], [["t-ok", 9]]), log("gw-2", [])] }))).toEqual([]);
  });

  it.each([
    ["INV1", facts({ tasks: tasks(task("t-d", "must-deny")), invocations: [inv("t-d")], logs: [log("gw-1", [["t-d", 3, "allow", 500]], [["t-d", 9]]), log("gw-2", [])] })],
    ["INV1", facts({ tasks: tasks(task("t-b", "may-run", { onlyOn: ["gw-1"] })), invocations: [inv("t-b", "gw-2")], logs: [log("gw-1", []), log("gw-2", [["t-b", 3, "allow", 500]], [["t-b", 9]])] })],
    ["INV2", facts({ tasks: tasks(task("t-2", "may-run")), invocations: [inv("t-2"), inv("t-2", "gw-2")], logs: [log("gw-1", [["t-2", 3, "allow", 500]], [["t-2", 9]]), log("gw-2", [["t-2", 3, "allow", 500]], [["t-2", 9]])] })],
    ["INV2", facts({ tasks: tasks(task("t-a", "may-run"), task("t-c", "may-run")), invocations: [inv("t-a", "gw-1", { nonce: "same" }), inv("t-c", "gw-2", { nonce: "same" })], logs: [log("gw-1", [["t-a", 3, "allow", 500]], [["t-a", 9]]), log("gw-2", [["t-c", 3, "allow", 500]], [["t-c", 9]])] })],
    ["INV3", facts({ tasks: tasks(task("t-3", "may-run")), invocations: [inv("t-3")] })],
    ["INV3", facts({ tasks: tasks(task("t-3", "may-run")), invocations: [inv("t-3", "gw-1", { durableSize: 3 })], logs: [log("gw-1", [["t-3", 3, "allow", 500]], [["t-3", 9]]), log("gw-2", [])] })],
    ["INV3", facts({ tasks: tasks(task("t-3", "may-run")), invocations: [inv("t-3")], logs: [log("gw-1", [["t-3", 3, "allow", 500]]), log("gw-2", [])] })],
    ["INV3", facts({ tasks: tasks(task("t-3", "may-run")), logs: [log("gw-1", [["t-3", 3, "allow", 500]]), log("gw-2", [])] })],
    ["INV4", facts({ tasks: tasks(task("t-4", "may-run", { client: { startedAt: 0, via: "ctx.spawn" } })) })],
    ["INV4", facts({ tasks: tasks(task("t-4", "may-run", { client: { startedAt: 0, settledAt: 70_000, via: "runtime.spawn" } })) })],
    ["INV5", facts({ logs: [log("gw-1", [], [], { ...clean, ok: false, divergences: [{ seq: 4, kind: "DECISION_MISMATCH", detail: "x" }] }), log("gw-2", [])] })],
    ["INV6", facts({ tasks: tasks(task("t-6", "may-run")), busDown: [{ from: 1_000, to: 3_000, what: "down" }], logs: [log("gw-1", [["t-6", 3, "allow", 2_000]]), log("gw-2", [])] })],
    ["INV6", facts({ tasks: tasks(task("t-6", "may-run")), stale: [{ from: 1_000, to: 3_000, what: "stale" }], logs: [log("gw-1", [["t-6", 3, "allow", 2_000]]), log("gw-2", [])] })],
    ["INV6", facts({ tasks: tasks(task("t-6", "may-run")), otherPolicy: [{ from: 1_000, to: 3_000, what: "policy B" }], logs: [log("gw-1", [["t-6", 3, "allow", 2_000]]), log("gw-2", [])] })],
    [
      "INV7",
      facts({
        tasks: tasks(task("t-7", "may-run", { client: { startedAt: 0, settledAt: 10, via: "submitTask", outcome: { taskId: "t-7", gatewayId: "gw-2", verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "denied" } } })),
        invocations: [inv("t-7")],
        logs: [log("gw-1", [["t-7", 3, "allow", 500]], [["t-7", 9]]), log("gw-2", [])],
      }),
    ],
  ] as const)("%s is caught", (code, f) => {
    const v = checkInvariants(f);
    expect(v.some((x) => x.startsWith(`[seed=7] ${code} `)), v.join("\n")).toBe(true);
  });

  it("a stale window starts at the last heartbeat before it ends, plus the feed bound", () => {
    const stale = [{ from: Number.NaN, to: 10_000, what: "s" }];
    fixStaleWindows(stale, [1_000, 4_000, 12_000], 3_000);
    expect(stale[0]!.from).toBe(7_000);
  });
});
