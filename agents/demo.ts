// The four example agents against one authority and one in-process gateway on a real bus.
// The authority publishes the default policy and heartbeats; the gateway measures the deploy
// agents' code and says it runs in staging; every agent's tasks are judged against what the
// agent expected. Used by test/agents and runnable by hand:
//   NATS_URL=nats://127.0.0.1:4222 npx tsx agents/demo.ts ./demo-audit
import { fileURLToPath } from "node:url";
import { Authority, DEFAULT_POLICY, Runtime, generateKeyPair, type RevocationTarget } from "../src/index.ts";
import { createAdversary, eavesdrop, ADVERSARY_ACCOUNT } from "./adversary.ts";
import { createDeployAgents, deployHandler, measureFile, DEPLOY_AGENT_SOURCE, type Deployment } from "./deploy.ts";
import { createOrchestrator } from "./orchestrator.ts";
import { describeTask, type AgentEnv, type AgentReport } from "./report.ts";
import { createTreasuryAgent, transferHandler, TreasuryLedger, TREASURY_ACCOUNT } from "./treasury.ts";

export interface DemoReport {
  ok: boolean;
  gatewayId: string;
  /** Key ids an auditor replaying the gateway's log (in `dataDir`) trusts. */
  gatewayKeyId: string;
  authorityKeyId: string;
  dataDir: string;
  agents: { orchestrator: AgentReport; treasury: AgentReport; deploy: AgentReport; adversary: AgentReport };
  /** Side effects the allowed tasks had. */
  ledger: Record<string, number>;
  deployments: Deployment[];
}

const GATEWAY_ID = "gw-agents";
/** A build other than the deploy agent's: what the second deploy key's host measures as. */
const OTHER_BUILD_SOURCE = fileURLToPath(new URL("./adversary.ts", import.meta.url));

export async function runAgentDemo(opts: { natsUrl: string; dataDir: string; log?: (line: string) => void }): Promise<DemoReport> {
  const log = opts.log ?? (() => undefined);
  const authority = await Authority.connect({ natsUrl: opts.natsUrl, key: generateKeyPair() });
  let rt: Runtime | undefined;
  try {
    await authority.publishPolicy(DEFAULT_POLICY);
    await authority.startHeartbeats(1_000);

    const treasury = createTreasuryAgent();
    const deploy = createDeployAgents();
    const adversary = createAdversary();
    // The gateway measures code by agent key: which file each deploy agent's host runs.
    const codeOf = new Map([
      [deploy.key.keyId, DEPLOY_AGENT_SOURCE],
      [deploy.otherBuildKey.keyId, OTHER_BUILD_SOURCE],
    ]);
    const gatewayKey = generateKeyPair();
    rt = await Runtime.connect({
      natsUrl: opts.natsUrl,
      dataDir: opts.dataDir,
      outcomeTimeoutMs: 20_000,
      // Outcomes count only when signed by the gateway (its key is added by connect).
      gatewayKeys: [],
      gateway: {
        gatewayId: GATEWAY_ID,
        gatewayKey,
        authorities: [authority.keyId],
        attributes: { name: "staging" },
        measureAgentCode: (agentKeyId) => {
          const file = codeOf.get(agentKeyId);
          return file === undefined ? null : measureFile(file);
        },
        evidenceDeadlineMs: 1_500,
        checkpointEvery: 50,
        onWarning: (w) => log(`gateway warning: ${w}`),
      },
    });
    const runtime = rt;
    const gateway = runtime.gateway;
    if (!gateway) throw new Error("runtime started without its gateway");

    const ledger = new TreasuryLedger({ [TREASURY_ACCOUNT]: 100_000, [ADVERSARY_ACCOUNT]: 0 });
    const deployments: Deployment[] = [];
    const orchestrator = createOrchestrator(runtime, { gatewayId: GATEWAY_ID });
    runtime.registerAction("plan", orchestrator.handlers.plan);
    runtime.registerAction("read", orchestrator.handlers.read);
    runtime.registerAction("summarize", orchestrator.handlers.summarize);
    runtime.registerAction("transfer", transferHandler(ledger));
    runtime.registerAction("deploy", deployHandler(deployments));

    const env: AgentEnv = { rt: runtime, authority, gatewayId: GATEWAY_ID, log };
    // The adversary listens to the bus while the honest agents work.
    const overheard = eavesdrop(runtime);
    const orchestratorReport = await orchestrator.run(env);
    const treasuryReport = await treasury.run(env, ledger);
    const deployReport = await deploy.run(env, deployments);
    overheard.stop();
    const adversaryReport = await adversary.run(env, {
      overheard,
      balanceOf: (account) => ledger.balance(account),
      // Revocations travel on their own stream; wait until this gateway has one in force so
      // the attempt that follows tests the revocation, not a race with its delivery.
      awaitRevocation: async (target: RevocationTarget) => {
        for (let i = 0; i < 250; i++) {
          const s = gateway.ledger.state;
          if (target.type === "artifact" ? s.revokedArtifacts.has(target.id) : s.revokedKeys.has(target.keyId)) return;
          await new Promise((r) => setTimeout(r, 20));
        }
        throw new Error(`revocation of ${target.type} not in force at ${GATEWAY_ID} after 5 s`);
      },
    });

    const agents = { orchestrator: orchestratorReport, treasury: treasuryReport, deploy: deployReport, adversary: adversaryReport };
    for (const a of Object.values(agents)) {
      for (const t of a.tasks) log(describeTask(t));
      for (const c of a.checks) log(`${c.ok ? "ok  " : "FAIL"} [${c.agent}] ${c.label}: expected ${c.expected}, got ${c.actual}`);
    }
    return {
      ok: Object.values(agents).every((a) => a.ok),
      gatewayId: GATEWAY_ID,
      gatewayKeyId: gatewayKey.keyId,
      authorityKeyId: authority.keyId,
      dataDir: opts.dataDir,
      agents,
      ledger: { [TREASURY_ACCOUNT]: ledger.balance(TREASURY_ACCOUNT), "vendor-acme": ledger.balance("vendor-acme"), [ADVERSARY_ACCOUNT]: ledger.balance(ADVERSARY_ACCOUNT) },
      deployments,
    };
  } finally {
    await rt?.close();
    await authority.close();
  }
}

// Run by hand: `npx tsx agents/demo.ts [dataDir]` with NATS_URL pointing at a JetStream server.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const natsUrl = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
  const dataDir = process.argv[2] ?? "./agents-demo-audit";
  runAgentDemo({ natsUrl, dataDir, log: (l) => console.log(l) })
    .then((r) => {
      console.log(r.ok ? "all agents behaved as expected" : "UNEXPECTED outcomes above");
      process.exitCode = r.ok ? 0 : 1;
    })
    .catch((e: unknown) => {
      console.error(e);
      process.exitCode = 2;
    });
}
