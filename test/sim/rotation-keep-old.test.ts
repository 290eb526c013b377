// Found by review: the simulator's rotate-authority-key with retireOld: false keeps the old key
// trusted, and the simulator restarts gateways with only the authorities in its map. When gateways
// removed, at start, every key their log trusted beyond the configured ones, a crash-and-restart
// silently untrusted the old key and its still-valid grants were denied UNTRUSTED_ISSUER. That
// removal is now opt-in (retireUnconfiguredAuthorities, set by `failclosed gateway` only).
import { describe, expect, it } from "vitest";
import { runSimulation } from "../../src/sim/simulator.ts";
import { parseScenario } from "../../src/sim/scenario-format.ts";

const SCENARIO = `
name: rotation-keep-old-restart
description: rotation that keeps the old key, then a gateway restart
tags: [fault, keys]
agents:
  - { name: deployer, role: release, environment: { name: staging } }
grants:
  - &deploy
    id: old-key-grant-1
    to: deployer
    actions: [deploy]
    resources: [services/api/]
    validFor: 2h
  - { <<: *deploy, id: old-key-grant-2 }
steps:
  - fault: rotate-authority-key
    retireOld: false
  - task: old-key-after-rotation
    agent: deployer
    action: deploy
    resource: services/api/staging
    args: { version: 1.8.0 }
    uses: old-key-grant-1
    expect: executed
  - fault: crash-gateway
  - task: old-key-after-restart
    agent: deployer
    action: deploy
    resource: services/api/staging
    args: { version: 1.8.1 }
    uses: old-key-grant-2
    expect: executed
`;

describe("a kept (not retired) authority key survives a gateway restart", () => {
  it("old-key grants still run after the restart", async () => {
    const report = await runSimulation([parseScenario(SCENARIO)], { version: "regression" });
    const s = report.scenarios[0]!;
    expect(s.tasks.map((t) => `${t.taskId}: ${t.actual.verdict} ${t.actual.codes.join(",")}`)).toEqual(s.tasks.map((t) => `${t.taskId}: ${t.ok ? t.actual.verdict : "executed"} `));
    expect(s.status).toBe("pass");
  }, 120_000);
});
