// The example agents end to end on a real nats-server: every task's decision matches what its
// agent expected, the orchestrator's chain really reaches depth 3, and the gateway's audit log
// replays clean for an auditor who trusts only the demo's authority and gateway keys.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAgentDemo, type DemoReport } from "../../agents/demo.ts";
import { LevelBackend, backendLogSource, replay, startNatsServer, type NatsServerHandle } from "../../src/index.ts";

describe("example agents against one gateway", () => {
  let server: NatsServerHandle;
  let dir: string;
  let report: DemoReport;
  const lines: string[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    dir = await mkdtemp(join(tmpdir(), "failclosed-agents-"));
    report = await runAgentDemo({ natsUrl: server.url, dataDir: join(dir, "audit"), log: (l) => lines.push(l) });
  }, 120_000);

  afterAll(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("every task's decision matches its agent's expectation", () => {
    const all = Object.values(report.agents).flatMap((a) => a.tasks);
    const wrong = all.filter((t) => !t.ok).map((t) => `${t.agent}: ${t.label}: expected ${JSON.stringify(t.expected)}, got ${JSON.stringify(t.actual)}`);
    expect(wrong).toEqual([]);
    for (const t of all) {
      expect(t.actual.verdict).toBe(t.expected.verdict);
      // Exactly the expected reasons: every expected code present, nothing unexpected besides.
      expect(new Set(t.actual.codes), t.label).toEqual(new Set(t.expected.codes));
    }
    const checks = Object.values(report.agents).flatMap((a) => a.checks);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("the orchestrator delegated three levels deep, each level a governed, allowed task", () => {
    const tasks = report.agents.orchestrator.tasks;
    expect(tasks.map((t) => [t.agent, t.depth, t.actual.verdict, t.actual.status])).toEqual([
      ["orchestrator", 0, "allow", "succeeded"],
      ["planner", 1, "allow", "succeeded"],
      ["researcher", 2, "allow", "succeeded"],
      ["writer", 3, "allow", "succeeded"],
    ]);
    expect(new Set(tasks.map((t) => t.taskId)).size).toBe(4);
  });

  it("treasury: one transfer allowed; over the artifact limit and over Cedar's limit both POLICY_MISMATCH; money moved once", () => {
    const t = report.agents.treasury.tasks;
    expect(t.map((x) => x.actual.verdict)).toEqual(["allow", "deny", "deny"]);
    expect(t[1]?.actual.codes).toContain("POLICY_MISMATCH");
    expect(t[2]?.actual.codes).toContain("POLICY_MISMATCH");
    expect(t[2]?.actual.detail ?? "").not.toBe("");
    expect(report.ledger["vendor-acme"]).toBe(1200);
  });

  it("deploy: staging allowed; other build and production binding ENVIRONMENT_MISMATCH; one deployment recorded", () => {
    const t = report.agents.deploy.tasks;
    expect(t.map((x) => x.actual.verdict)).toEqual(["allow", "deny", "deny"]);
    expect(t[1]?.actual.codes).toContain("ENVIRONMENT_MISMATCH");
    expect(t[2]?.actual.codes).toContain("ENVIRONMENT_MISMATCH");
    expect(report.deployments.map((d) => `${d.service}@${d.version}:${d.environment}`)).toEqual(["web@4.2.0:staging"]);
  });

  it("adversary: every attack denied with its code, and only the honest payment ran", () => {
    const byLabel = new Map(report.agents.adversary.tasks.map((t) => [t.label, t]));
    const expectCode = (label: string, code: string) => {
      const t = byLabel.get(label);
      expect(t, label).toBeDefined();
      expect(t?.actual.verdict).toBe("deny");
      expect(t?.actual.codes).toContain(code);
    };
    expectCode("hand-signed delegation widening its amount limit", "LINEAGE_BROKEN");
    expectCode("the same submission replayed verbatim", "REPLAYED");
    expectCode("grant with a raised limit under the authority's old signature", "BAD_SIGNATURE");
    expectCode("a grant that expired an hour ago", "EXPIRED");
    expectCode("own link grafted under the planner's genuine lineage", "LINEAGE_BROKEN");
    expectCode("uses a grant after it was revoked", "REVOKED");
    expectCode("uses an unrevoked grant after its key was revoked", "REVOKED");
    expect(report.agents.adversary.checks.find((c) => c.label.startsWith("delegateArtifact"))?.actual).toBe("TypeError");
    expect(report.ledger["adversary"]).toBe(40);
  });

  it("the gateway's audit log replays clean: every decision re-derived, no divergence", async () => {
    const backend = await LevelBackend.open(report.dataDir, { createIfMissing: false });
    try {
      const r = await replay(backendLogSource(backend), { gatewayKeys: [report.gatewayKeyId], authorities: [report.authorityKeyId], origin: report.gatewayId });
      expect(r.divergences).toEqual([]);
      expect(r.ok).toBe(true);
      const tasks = Object.values(report.agents).flatMap((a) => a.tasks).length;
      expect(r.decisionsRederived).toBeGreaterThanOrEqual(tasks);
      expect(r.checkpointsVerified).toBeGreaterThan(0);
    } finally {
      await backend.close();
    }
  });
});
