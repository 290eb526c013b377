// A hand-built RunReport for the renderer tests: two scenarios, a lineage chain, a denial, a
// replay divergence, and hostile strings where attackers control the bytes.
import { RUN_REPORT_KIND, type RunReport, type TaskReport } from "../../src/sim/report.ts";

export const T0 = 1_800_000_000_000;
export const HOSTILE = `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">"'&`;

const ok = (check: TaskReport["checks"][number]["check"]): TaskReport["checks"][number] => ({ check, ok: true });

function task(p: Partial<TaskReport> & Pick<TaskReport, "taskId" | "step">): TaskReport {
  return {
    agent: "agent",
    action: "read",
    resource: "reports/q1",
    tamper: [],
    expected: "executed",
    actual: { verdict: "allow", executed: true, codes: [] },
    ok: true,
    checks: [ok("governance"), ok("schema"), ok("evidence"), ok("request-signature"), ok("validity"), ok("policy"), ok("nonce")],
    submittedAt: T0,
    decidedAt: T0 + 12,
    executedAt: T0 + 20,
    ...p,
  };
}

export function sampleReport(): RunReport {
  return {
    kind: RUN_REPORT_KIND,
    run: {
      id: "run-2027-01-15-abc",
      startedAt: "2027-01-15T08:00:00.000Z",
      finishedAt: "2027-01-15T08:00:03.000Z",
      durationMs: 3000,
      version: "0.1.0",
      nats: "nats://127.0.0.1:4222",
      gateways: ["gw-1"],
    },
    scenarios: [
      {
        name: "happy-orchestrator-depth3",
        description: "An orchestrator delegates down a chain.",
        file: "scenarios/01-happy-orchestrator-depth3.yaml",
        tags: ["happy-path"],
        status: "pass",
        durationMs: 800,
        start: T0,
        tasks: [
          task({ taskId: "plan-release", step: 0, agent: "orchestrator", action: "plan" }),
          task({ taskId: "plan-sprint", step: 1, agent: "planner", action: "plan", parentTaskId: "plan-release", submittedAt: T0 + 100 }),
          task({ taskId: "research-api-docs", step: 2, agent: "researcher", parentTaskId: "plan-sprint", submittedAt: T0 + 200 }),
        ],
        events: [],
        lineage: [
          { parentTaskId: "plan-release", childTaskId: "plan-sprint", ok: true },
          { parentTaskId: "plan-sprint", childTaskId: "research-api-docs", ok: true },
        ],
        invariants: [],
        audit: { records: 14, checkpoints: 2, witnessed: 1, lastCheckpointRoot: "q9w8e7", replay: { ok: true, decisions: 3, divergences: [] } },
      },
      {
        name: "denied-expired-window",
        description: `Temporal validity. ${HOSTILE}`,
        file: "scenarios/06-denied-expired-window.yaml",
        tags: ["denial"],
        status: "fail",
        durationMs: 500,
        start: T0,
        tasks: [
          task({
            taskId: "summarize-too-late",
            step: 1,
            action: "summarize",
            expected: "denied: EXPIRED",
            actual: { verdict: "deny", executed: false, codes: ["EXPIRED"] },
            checks: [
              ok("governance"),
              ok("schema"),
              { check: "validity", ok: false, code: "EXPIRED", detail: "artifact[0] expired at 1800000900000" },
              ok("policy"),
            ],
            submittedAt: T0 + 1_200_000,
            decidedAt: T0 + 1_200_010,
          }),
          task({
            taskId: `evil-${HOSTILE}`,
            step: 2,
            resource: HOSTILE,
            expected: "denied: BAD_SIGNATURE",
            actual: { verdict: "allow", executed: true, codes: [] },
            ok: false,
            checks: [ok("governance"), { check: "request-signature", ok: false, code: "BAD_SIGNATURE", detail: HOSTILE }],
            tamper: ["forge-signature: request"],
            submittedAt: T0 + 1_300_000,
          }),
        ],
        events: [{ step: 0, at: T0, kind: "advance", summary: "clock +20m" }],
        lineage: [],
        invariants: [{ name: "notExecuted: x", ok: false, detail: HOSTILE }],
        audit: { records: 5, checkpoints: 1, replay: { ok: false, decisions: 2, divergences: [{ seq: 4, kind: "DECISION_MISMATCH", detail: HOSTILE }] } },
      },
    ],
  };
}
