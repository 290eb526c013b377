// `failclosed simulate [scenario…]`: load and validate scenario files, run them through the
// simulation engine, print a summary (or the RunReport as JSON) and optionally an HTML report.
import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { formatSummaryTable, runPassed, summarizeRun, type RunReport, type SimulationOptions, type SimulationProgress } from "../sim/report.ts";
import { renderReportHtml } from "../sim/report-html.ts";
import { loadScenario, loadScenarios, ScenarioFormatError, type Scenario } from "../sim/scenario-format.ts";
import { CliError, EXIT, jsonText, writeOutFile, type CliIo } from "./io.ts";

type RunSimulation = (scenarios: Scenario[], opts: SimulationOptions) => Promise<RunReport>;

const SIMULATOR_URL = new URL("../sim/simulator.ts", import.meta.url);

/** The engine lands separately; until it does, `simulate` says so instead of crashing. */
async function loadSimulator(): Promise<RunSimulation> {
  if (!existsSync(fileURLToPath(SIMULATOR_URL))) {
    throw new CliError("NOT_AVAILABLE", "the simulation engine (src/sim/simulator.ts) is not in this build yet; `failclosed simulate --validate` checks the scenario files");
  }
  const mod = (await import(SIMULATOR_URL.href)) as { runSimulation?: unknown };
  if (typeof mod.runSimulation !== "function") throw new CliError("NOT_AVAILABLE", "src/sim/simulator.ts does not export runSimulation(scenarios, opts)");
  return mod.runSimulation as RunSimulation;
}

/** Files and directories → scenarios; every format problem of every file is reported at once. */
export function loadScenarioArgs(paths: readonly string[]): Scenario[] {
  const out: Scenario[] = [];
  const problems: string[] = [];
  for (const p of paths) {
    try {
      let isDir: boolean;
      try {
        isDir = statSync(p).isDirectory();
      } catch (e) {
        throw new CliError("IO", `cannot read ${p}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      if (isDir) out.push(...loadScenarios(p));
      else out.push(loadScenario(p));
    } catch (e) {
      if (e instanceof ScenarioFormatError || e instanceof CliError) problems.push(e.message);
      else throw e;
    }
  }
  if (problems.length > 0) throw new CliError("INVALID_INPUT", `invalid scenarios:\n${problems.join("\n")}`, { details: problems });
  const seen = new Set<string>();
  for (const s of out) {
    if (seen.has(s.name)) throw new CliError("INVALID_INPUT", `scenario "${s.name}" given twice`);
    seen.add(s.name);
  }
  if (out.length === 0) throw new CliError("USAGE", `no scenario files (*.yaml) in ${paths.join(", ")}`);
  return out;
}

function progressLine(io: CliIo): (p: SimulationProgress) => void {
  return (p) => {
    const mark = p.phase === "done" ? (p.status === "pass" ? "✓" : "✗") : "…";
    io.err(`\r\x1b[K[${p.index + 1}/${p.total}] ${mark} ${p.scenario}`);
    if (p.phase === "done" && p.index + 1 === p.total) io.err("\r\x1b[K");
  };
}

function unexpectedLines(report: RunReport): string {
  const lines: string[] = [];
  for (const s of report.scenarios) {
    if (s.error !== undefined) lines.push(`${s.name}: error: ${s.error}`);
    for (const t of s.tasks) {
      if (!t.ok) lines.push(`${s.name}: ${t.taskId}: expected ${t.expected}, got ${t.actual.verdict}${t.actual.executed ? " (executed)" : ""}${t.actual.codes.length > 0 ? ` ${t.actual.codes.join(",")}` : ""}`);
    }
    for (const i of s.invariants) if (!i.ok) lines.push(`${s.name}: invariant ${i.name} failed${i.detail !== undefined ? `: ${i.detail}` : ""}`);
    for (const d of s.audit.replay.divergences) lines.push(`${s.name}: replay divergence at seq ${d.seq}: ${d.kind} ${d.detail}`);
  }
  return lines.length > 0 ? `\n${lines.join("\n")}\n` : "";
}

export function simulateCommand(io: CliIo, version: string): Command {
  return new Command("simulate")
    .description("run scenario files (default: ./scenarios) and report every decision")
    .argument("[scenario...]", "scenario files or directories of them", ["scenarios"])
    .option("--report <file>", "write a self-contained HTML report here")
    .option("--nats <url>", "use this NATS server instead of starting one")
    .option("--validate", "only load and check the scenario files")
    .option("--json", "print the RunReport (or, with --validate, the scenario list) as JSON")
    .action(async (paths: string[], o: { report?: string; nats?: string; validate?: boolean; json?: boolean }): Promise<void> => {
      const scenarios = loadScenarioArgs(paths);
      if (o.validate) {
        const rows = scenarios.map((s) => ({ name: s.name, file: s.file, tasks: s.steps.length }));
        io.out(o.json ? jsonText({ valid: true, scenarios: rows }) : `${scenarios.length} scenarios valid\n${rows.map((r) => `  ${r.name}  (${r.file})`).join("\n")}\n`);
        return;
      }
      const runSimulation = await loadSimulator();
      const report = await runSimulation(scenarios, {
        version,
        ...(o.nats !== undefined ? { nats: o.nats } : {}),
        ...(io.progressTTY && !o.json ? { onProgress: progressLine(io) } : {}),
      });
      if (o.report !== undefined) writeOutFile(o.report, renderReportHtml(report));
      if (o.json) io.out(jsonText(report));
      else io.out(formatSummaryTable(summarizeRun(report)) + unexpectedLines(report) + (o.report !== undefined ? `report: ${o.report}\n` : ""));
      io.setExitCode(runPassed(report) ? EXIT.OK : EXIT.FAILED);
    });
}
