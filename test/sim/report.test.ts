// The HTML report as a person sees it: rendered by headless Chromium from a file, no network,
// no script. The Debian `chromium` package provides the browser; playwright-core only drives it.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { renderReportHtml, esc } from "../../src/sim/report-html.ts";
import { formatSummaryTable, runPassed, summarizeRun } from "../../src/sim/report.ts";
import { HOSTILE, sampleReport } from "./report-sample.ts";

/** The bits of the DOM the checks read (tsconfig has no DOM lib: the code under test is Node). */
interface Dom {
  getComputedStyle(e: unknown): { backgroundColor: string };
  __pwned?: number;
}

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env["CI"] !== undefined) {
  throw new Error(`${CHROMIUM} missing: install the Debian "chromium" package (the report test needs a real browser in CI)`);
}
if (!haveChromium) console.warn(`report.test: ${CHROMIUM} not found, skipping the browser checks (apt-get install chromium)`);

describe("summary", () => {
  it("counts tasks, denials by code and the replay verdict per scenario", () => {
    const rows = summarizeRun(sampleReport());
    expect(rows.map((r) => [r.scenario, r.tasks, r.allowed, r.denied, r.deniedByCode, r.unexpected, r.replay])).toEqual([
      ["happy-orchestrator-depth3", 3, 3, 0, {}, 0, "clean (3 decisions)"],
      ["denied-expired-window", 2, 1, 1, { EXPIRED: 1 }, 1, "1 divergence"],
    ]);
    const table = formatSummaryTable(rows);
    expect(table).toMatch(/^scenario\s+status\s+tasks\s+allowed\s+denied \(by code\)\s+replay$/m);
    expect(table).toMatch(/denied-expired-window\s+FAIL\s+2\s+1\s+EXPIRED×1\s+1 divergence/);
    expect(table).toMatch(/2 scenarios\s+1 pass/);
    expect(runPassed(sampleReport())).toBe(false);
  });

  it("escapes every markup character", () => {
    expect(esc(`<a href="x" title='y'>&</a>`)).toBe("&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    const html = renderReportHtml(sampleReport());
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("<img");
    expect(html).not.toMatch(/https?:\/\//); // self-contained: no external assets
  });
});

describe.skipIf(!haveChromium)("HTML report in headless Chromium", () => {
  let dir: string;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "failclosed-report-"));
    const file = join(dir, "run.html");
    await writeFile(file, renderReportHtml(sampleReport()));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage();
    page.on("request", (r) => requests.push(r.url()));
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    await page.goto(pathToFileURL(file).href);
  });

  afterAll(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("shows the summary table with one visible row per scenario", async () => {
    const rows = page.locator("table.summary tbody tr");
    await expect.poll(() => rows.count()).toBe(2);
    await expect.poll(() => rows.nth(0).isVisible()).toBe(true);
    expect(await rows.nth(0).innerText()).toMatch(/happy-orchestrator-depth3\s+PASS\s+3\s+3\s+3/);
    expect(await rows.nth(1).innerText()).toMatch(/denied-expired-window\s+FAIL/);
    expect(await rows.nth(1).innerText()).toContain("EXPIRED×1");
    expect(await page.title()).toContain("FAIL");
  });

  it("shows a denied task with its code, and its failed check highlighted once expanded", async () => {
    const item = page.locator('li.task[data-task-id="summarize-too-late"]');
    const summary = item.locator("summary");
    expect(await summary.isVisible()).toBe(true);
    expect(await summary.innerText()).toMatch(/DENIED\s+EXPIRED/);
    expect(await summary.innerText()).toContain("expected denied: EXPIRED ✓");
    const failedRow = item.locator("tr.check-fail");
    expect(await failedRow.isVisible()).toBe(false); // collapsed: the outcome was as expected
    await summary.click();
    expect(await failedRow.isVisible()).toBe(true);
    expect(await failedRow.innerText()).toMatch(/validity\s+✗ failed\s+EXPIRED\s+artifact\[0\] expired/);
    const bg = await failedRow.locator("td").first().evaluate((td) => (globalThis as unknown as Dom).getComputedStyle(td).backgroundColor);
    expect(bg).not.toBe("rgba(0, 0, 0, 0)");
    // Passed checks are listed too: the reader sees every check, not just the failure.
    expect(await item.locator("tr.check-ok").count()).toBe(3);
  });

  it("opens unexpected outcomes by default and marks them", async () => {
    const item = page.locator("li.task.task-unexpected");
    expect(await item.count()).toBe(1);
    expect(await item.locator("tr.check-fail").isVisible()).toBe(true);
    expect(await item.locator("summary").innerText()).toContain("UNEXPECTED");
  });

  it("shows replay status and checkpoints per scenario", async () => {
    const replays = page.locator("p.replay");
    expect(await replays.nth(0).innerText()).toBe("Replay: clean — 3 decisions re-derived, 0 divergences (clean (3 decisions))");
    expect(await replays.nth(1).innerText()).toMatch(/^Replay: DIVERGED — 2 decisions re-derived, 1 divergences/);
    expect(await page.locator(".audit").nth(0).innerText()).toContain("Checkpoints verified: 2 (1 of them published on NATS and held as a witness would)");
    expect(await page.locator("table.divergences").innerText()).toContain("DECISION_MISMATCH");
  });

  it("draws the lineage tree parent → child", async () => {
    const child = page.locator('.lineage li[data-task-id="plan-release"] > ul > li[data-task-id="plan-sprint"]');
    expect(await child.isVisible()).toBe(true);
    const grandchild = child.locator('> ul > li[data-task-id="research-api-docs"]');
    expect(await grandchild.isVisible()).toBe(true);
    expect(await grandchild.getAttribute("data-parent-id")).toBe("plan-sprint");
    const parentBox = await page.locator('.lineage li[data-task-id="plan-release"] > .node').boundingBox();
    const childBox = await child.locator("> .node").boundingBox();
    expect(childBox!.x).toBeGreaterThan(parentBox!.x); // indented under its parent
    expect(childBox!.y).toBeGreaterThan(parentBox!.y);
  });

  it("renders hostile strings as inert text: no script ran, nothing was fetched", async () => {
    expect(await page.evaluate(() => (globalThis as unknown as Dom).__pwned)).toBeUndefined();
    expect(await page.locator("script").count()).toBe(0);
    expect(await page.locator("main img").count()).toBe(0);
    const bad = page.locator("li.task.task-unexpected");
    expect(await bad.locator("tr.check-fail td.detail").innerText()).toBe(HOSTILE);
    expect(await page.locator("section.scenario").nth(1).locator("p").first().innerText()).toContain("<script>window.__pwned = 1</script>");
    expect(requests.filter((u) => !u.startsWith("file:"))).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
});
