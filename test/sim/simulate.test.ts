// The main job, end to end: every scenario in scenarios/ against real nats-servers, gateways
// and LevelDB logs, each log replayed; then the HTML report of that real run, in Chromium.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSimulation } from "../../src/sim/simulator.ts";
import { loadScenarios } from "../../src/sim/scenario-format.ts";
import { renderReportHtml } from "../../src/sim/report-html.ts";
import { summarizeRun, type RunReport } from "../../src/sim/report.ts";
import { DENIAL_CODES } from "../../src/core/types.ts";

const SCENARIOS = fileURLToPath(new URL("../../scenarios", import.meta.url));
const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";

describe("simulate: every scenario", () => {
  let report: RunReport;
  let dir: string;
  beforeAll(async () => {
    report = await runSimulation(loadScenarios(SCENARIOS), { version: "test" });
    dir = await mkdtemp(join(tmpdir(), "failclosed-sim-report-"));
  }, 300_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("has at least 20 scenarios and each passes: every task as expected, invariants held, replay clean", () => {
    expect(report.scenarios.length).toBeGreaterThanOrEqual(20);
    const problems = report.scenarios.flatMap((s) => [
      ...(s.error !== undefined ? [`${s.name}: ${s.error}`] : []),
      ...s.tasks.filter((t) => !t.ok).map((t) => `${s.name}/${t.taskId}: expected ${t.expected}, got ${t.actual.verdict} ${t.actual.codes.join(",")}`),
      ...s.invariants.filter((i) => !i.ok).map((i) => `${s.name}: ${i.name}`),
      ...s.audit.replay.divergences.map((d) => `${s.name}: seq ${d.seq} ${d.kind} ${d.detail}`),
    ]);
    expect(problems).toEqual([]);
    for (const s of report.scenarios) {
      expect(s.status).toBe("pass");
      // Checked in every scenario, declared or not: no task id's handler ran twice.
      expect(s.invariants.find((i) => i.name === "every task id ran at most once"), s.name).toMatchObject({ ok: true });
      expect(s.audit.replay.ok).toBe(true);
      expect(s.audit.replay.decisions).toBeGreaterThan(0);
      // Every log was also held to the checkpoints its gateway published on NATS.
      expect(s.audit.witnessed, s.name).toBeGreaterThan(0);
    }
    // And, while the gateways still ran, their published checkpoints were proved to extend one
    // another with the gateways' own consistency proofs (none failed or went unproved: those
    // would be divergences above).
    expect(report.scenarios.reduce((n, s) => n + (s.audit.proved ?? 0), 0)).toBeGreaterThan(0);
  });

  it("produces every denial code of DESIGN §3 somewhere in the run", () => {
    const seen = new Set(report.scenarios.flatMap((s) => s.tasks.flatMap((t) => t.actual.codes)));
    expect([...DENIAL_CODES].filter((c) => !seen.has(c))).toEqual([]);
  });

  it.skipIf(!existsSync(CHROMIUM))("renders the run as an HTML report a person can read", async () => {
    const file = join(dir, "run.html");
    await writeFile(file, renderReportHtml(report));
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage();
      await page.goto(pathToFileURL(file).href);
      const rows = page.locator("table.summary tbody tr");
      expect(await rows.count()).toBe(report.scenarios.length);
      const text = await page.locator("table.summary").innerText();
      for (const r of summarizeRun(report)) expect(text).toContain(r.scenario);
      expect(text).not.toContain("FAIL");
      expect(await page.locator("body").innerText()).toContain("LINEAGE_BROKEN");
    } finally {
      await browser.close();
    }
  });
});

describe("simulate against an external NATS ($NATS_URL / --nats)", () => {
  it("runs there, and gives an outage scenario a private server it may kill", async () => {
    const { startNatsServer } = await import("../../src/infra/nats-launcher.ts");
    const external = await startNatsServer();
    try {
      const all = loadScenarios(SCENARIOS);
      const picked = all.filter((s) => s.name === "fault-nats-outage" || s.name === "happy-treasury-transfer");
      expect(picked.length).toBe(2);
      const r = await runSimulation(picked, { version: "test", nats: external.url });
      expect(r.run.nats).toBe(external.url);
      expect(r.scenarios.map((s) => [s.name, s.status])).toEqual(picked.map((s) => [s.name, "pass"]));
      // The shared server survived the outage scenario: it was never the one killed.
      expect(external.running).toBe(true);
    } finally {
      await external.stop();
    }
  }, 120_000);
});
