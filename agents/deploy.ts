// A deploy agent bound to where it runs and to what it is. Its artifact binds the named
// environment (staging) and the SHA-256 of this very source file; the gateway measures both
// independently (its `attributes` and its `measureAgentCode` hook) and denies on any
// difference. A different build holding a deploy grant, or a grant for production presented
// at a staging gateway, is ENVIRONMENT_MISMATCH.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { generateKeyPair, newTaskId, type ActionHandler, type ArtifactBindings, type JsonValue, type KeyPair } from "../src/index.ts";
import { ALLOW, deny, freshNonce, judge, sideCheck, summarize, windowFromNow, type AgentEnv, type AgentReport, type Expectation, type TaskReport } from "./report.ts";

/** This agent's code: what its artifact binds and what the gateway measures. */
export const DEPLOY_AGENT_SOURCE = fileURLToPath(new URL("./deploy.ts", import.meta.url));

/** base64url SHA-256 of a file's bytes (the code digest format artifacts bind). */
export function measureFile(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("base64url");
}

export interface Deployment {
  taskId: string;
  service: string;
  version: string;
  environment: string;
  agent: string;
  gatewayId: string;
}

/** The `deploy` action: args {service, version, environment}; records the deployment. */
export function deployHandler(deployments: Deployment[]): ActionHandler {
  return ({ taskId, agent, gatewayId, args }) => {
    const a = args as { service?: JsonValue; version?: JsonValue; environment?: JsonValue } | null;
    if (typeof a?.service !== "string" || typeof a.version !== "string" || typeof a.environment !== "string") {
      throw new TypeError("deploy: args must be {service, version, environment}");
    }
    const d: Deployment = { taskId, service: a.service, version: a.version, environment: a.environment, agent, gatewayId };
    deployments.push(d);
    return { deployed: `${d.service}@${d.version}`, environment: d.environment };
  };
}

export interface DeployAgents {
  /** The genuine deploy agent: its measured code is this file. */
  key: KeyPair;
  /** A second deploy agent whose host runs a different build. */
  otherBuildKey: KeyPair;
  run(env: AgentEnv, deployments: Deployment[]): Promise<AgentReport>;
}

export function createDeployAgents(): DeployAgents {
  const key = generateKeyPair();
  const otherBuildKey = generateKeyPair();
  return {
    key,
    otherBuildKey,
    async run(env, deployments) {
      const digest = measureFile(DEPLOY_AGENT_SOURCE);
      const staging: ArtifactBindings = { environment: { name: "staging" }, agentCodeDigest: digest };
      const attempts: { label: string; agent: KeyPair; bindings: ArtifactBindings; environment: string; expected: Expectation }[] = [
        { label: "deploys to staging, bound to staging and its own code", agent: key, bindings: staging, environment: "staging", expected: ALLOW },
        {
          label: "a different build holding a grant bound to this code",
          agent: otherBuildKey,
          bindings: staging,
          environment: "staging",
          expected: deny("ENVIRONMENT_MISMATCH"),
        },
        {
          label: "a grant bound to production, presented at the staging gateway",
          agent: key,
          bindings: { environment: { name: "production" }, agentCodeDigest: digest },
          environment: "production",
          expected: deny("ENVIRONMENT_MISMATCH"),
        },
      ];
      const tasks: TaskReport[] = [];
      for (const a of attempts) {
        const taskId = newTaskId();
        const resource = `services/web/${a.environment}`;
        const { artifact } = await env.authority.grant({
          taskId,
          holder: a.agent.keyId,
          scope: { actions: ["deploy"], resources: ["services/web/"], constraints: {} },
          bindings: a.bindings,
          validity: windowFromNow(60_000, 10 * 60_000),
          nonce: freshNonce(),
          attribution: { initiator: "release-manager@example.com", reason: `release web 4.2.0 to ${a.environment}` },
        });
        const o = await env.rt.spawn({ agent: a.agent, action: "deploy", resource, args: { service: "web", version: "4.2.0", environment: a.environment }, chain: [artifact], taskId }).outcome;
        const t = judge({ agent: "deploy", label: a.label, action: "deploy", resource, depth: 0, expected: a.expected }, o);
        env.log(`deploy: ${t.label}: ${t.actual.verdict} ${t.actual.codes.join(",")}`);
        tasks.push(t);
      }
      const mine = deployments.filter((d) => tasks.some((t) => t.taskId === d.taskId));
      const checks = [sideCheck("deploy", "deployments recorded", "web@4.2.0→staging", mine.map((d) => `${d.service}@${d.version}→${d.environment}`).join(" "))];
      return summarize("deploy", tasks, checks);
    },
  };
}
