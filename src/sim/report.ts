// The result of a simulation run, as plain JSON: `failclosed simulate --json` prints it, the HTML
// report renders it, and a CI job can diff two of them. Everything an attacker could influence
// (task ids, details, resource names) is data here; renderers must escape it.
import type { Check, DenialCode, Verdict } from "../core/types.ts";

export const RUN_REPORT_KIND = "failclosed/run-report/v1";

export interface RunReport {
  kind: typeof RUN_REPORT_KIND;
  run: RunMetadata;
  scenarios: ScenarioReport[];
}

export interface RunMetadata {
  /** Unique per run (e.g. a timestamp plus random suffix). */
  id: string;
  /** ISO 8601 wall-clock instants of the run itself (not the scenarios' virtual clock). */
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** failclosed version that produced the report. */
  version: string;
  /** NATS server URL used, or "embedded" when the simulator started its own. */
  nats: string;
  /** Gateway ids that took part across the run. */
  gateways: string[];
  /** Node version and platform, for reproducing a run. */
  host?: string;
}

export type ScenarioStatus = "pass" | "fail" | "error";

export interface ScenarioReport {
  name: string;
  description: string;
  /** Path of the scenario file, relative to where the run started. */
  file: string;
  tags: string[];
  /** pass: every expectation and invariant held and replay is clean; error: the run itself broke. */
  status: ScenarioStatus;
  /** Why the scenario could not complete (status "error"). */
  error?: string;
  durationMs: number;
  /** Epoch ms of the scenario's virtual t=0. */
  start: number;
  /** In submission order. */
  tasks: TaskReport[];
  /** Faults, revocations and other non-task steps, in order (the timeline's other lane). */
  events: TimelineEvent[];
  /** Parent task → child task links the gateway accepted or was shown. */
  lineage: LineageEdge[];
  invariants: InvariantResult[];
  audit: AuditSummary;
}

export interface TaskOutcome {
  /** "none": no decision was observed (e.g. never reached a gateway). */
  verdict: Verdict | "none";
  executed: boolean;
  /** The decision's reasons (distinct denial codes in check order); empty for allow. */
  codes: DenialCode[];
}

export interface TaskReport {
  /** The task id from the scenario (for a replay step, its label). */
  taskId: string;
  /** Index of the step in the scenario file (0-based), for finding it again. */
  step: number;
  agent: string;
  action: string;
  resource: string;
  parentTaskId?: string;
  /** Grant or delegation id the task used. */
  uses?: string;
  artifactId?: string;
  gateway?: string;
  /** Human descriptions of tampering applied, e.g. "forge-signature: artifact". */
  tamper: string[];
  note?: string;
  /** describeExpectation() of the scenario's `expect`, e.g. "denied: EXPIRED". */
  expected: string;
  actual: TaskOutcome;
  /** expectationMet(expect, actual). */
  ok: boolean;
  /** Every check of the decision, in decide() order; empty when no decision was observed. */
  checks: Check[];
  /** Epoch ms, on the scenario's virtual clock. */
  submittedAt: number;
  decidedAt?: number;
  executedAt?: number;
}

export interface TimelineEvent {
  step: number;
  /** Epoch ms, virtual clock. */
  at: number;
  /** The step kind: "fault", "heal", "revoke", "revokeKey", "advance", "grant", "delegate", "changeAgent". */
  kind: string;
  /** One line a person can read, e.g. "nats-outage during read-q2". */
  summary: string;
}

export interface LineageEdge {
  parentTaskId: string;
  childTaskId: string;
  parentArtifactId?: string;
  childArtifactId?: string;
  /** false when the decision found this link broken (LINEAGE_BROKEN) or it was tampered. */
  ok: boolean;
}

export interface InvariantResult {
  /** e.g. "exactlyOneExecuted: race-a, race-b" */
  name: string;
  ok: boolean;
  detail?: string;
}

export interface ReplayDivergenceSummary {
  seq: number;
  /** DivergenceKind of src/audit/replay.ts, e.g. "DECISION_MISMATCH". */
  kind: string;
  detail: string;
}

export interface AuditSummary {
  /** Records in the audit log(s) for this scenario. */
  records: number;
  /** Signed checkpoints the replay verified: the log's own, and each one the witness held (so those count twice). */
  checkpoints: number;
  /** Checkpoints the gateways published on NATS, kept as a witness would and held against each log by the replay. */
  witnessed?: number;
  /** Consistency proofs a live gateway gave and the witness verified: each published checkpoint extends the one before. */
  proved?: number;
  /** Root of the last checkpoint (base64url), if any. */
  lastCheckpointRoot?: string;
  replay: {
    ok: boolean;
    /** Decisions re-derived. */
    decisions: number;
    divergences: ReplayDivergenceSummary[];
  };
}

// ---------- the simulator's entry (implemented in ./simulator.ts) ----------

export interface SimulationProgress {
  /** 0-based index of the scenario in the run, and how many there are. */
  index: number;
  total: number;
  scenario: string;
  phase: "start" | "done";
  /** Set when phase is "done". */
  status?: ScenarioStatus;
}

/**
 * Options `failclosed simulate` passes to `runSimulation(scenarios, opts): Promise<RunReport>`,
 * exported by src/sim/simulator.ts.
 */
export interface SimulationOptions {
  /** An external NATS server; absent: the simulator starts its own. */
  nats?: string;
  /** failclosed version for the report's metadata. */
  version: string;
  /** Called as scenarios start and finish (the CLI draws a progress line on a terminal). */
  onProgress?: (p: SimulationProgress) => void;
}

// ---------- summary ----------

export interface SummaryRow {
  scenario: string;
  status: ScenarioStatus;
  tasks: number;
  allowed: number;
  executed: number;
  /** Denials per code (a denial with several codes counts under each). */
  deniedByCode: Partial<Record<DenialCode, number>>;
  denied: number;
  /** Tasks whose outcome differed from the expectation. */
  unexpected: number;
  /** "clean (N decisions)" or "N divergences". */
  replay: string;
}

export function summarizeRun(report: RunReport): SummaryRow[] {
  return report.scenarios.map((s) => {
    const deniedByCode: Partial<Record<DenialCode, number>> = {};
    let allowed = 0;
    let executed = 0;
    let denied = 0;
    for (const t of s.tasks) {
      if (t.actual.verdict === "allow") allowed++;
      if (t.actual.executed) executed++;
      if (t.actual.verdict === "deny") {
        denied++;
        for (const c of t.actual.codes) deniedByCode[c] = (deniedByCode[c] ?? 0) + 1;
      }
    }
    return {
      scenario: s.name,
      status: s.status,
      tasks: s.tasks.length,
      allowed,
      executed,
      deniedByCode,
      denied,
      unexpected: s.tasks.filter((t) => !t.ok).length,
      replay: replayVerdict(s.audit),
    };
  });
}

export function replayVerdict(a: AuditSummary): string {
  if (a.replay.ok && a.replay.divergences.length === 0) return `clean (${a.replay.decisions} decisions)`;
  const n = a.replay.divergences.length;
  return n === 0 ? "failed" : `${n} divergence${n === 1 ? "" : "s"}`;
}

export function deniedText(row: SummaryRow): string {
  const parts = Object.entries(row.deniedByCode).map(([c, n]) => `${c}×${n}`);
  return parts.length === 0 ? "-" : parts.join(" ");
}

/** A plain-text table for a terminal; totals on the last line. */
export function formatSummaryTable(rows: SummaryRow[]): string {
  const header = ["scenario", "status", "tasks", "allowed", "denied (by code)", "replay"];
  const body = rows.map((r) => [r.scenario, r.status.toUpperCase(), String(r.tasks), String(r.allowed), deniedText(r), r.replay]);
  const passed = rows.filter((r) => r.status === "pass").length;
  const totals = [
    `${rows.length} scenarios`,
    `${passed} pass`,
    String(rows.reduce((n, r) => n + r.tasks, 0)),
    String(rows.reduce((n, r) => n + r.allowed, 0)),
    String(rows.reduce((n, r) => n + r.denied, 0)),
    `${rows.filter((r) => r.replay.startsWith("clean")).length} clean`,
  ];
  const all = [header, ...body, totals];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i >= 2 && i <= 3 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...body.map(line), rule, line(totals)].join("\n") + "\n";
}

/** Exit status for a run: 0 when every scenario passed, 1 otherwise. */
export function runPassed(report: RunReport): boolean {
  return report.scenarios.length > 0 && report.scenarios.every((s) => s.status === "pass");
}
