// `failclosed gateway`: the long-running execution gateway. The service itself lives in
// src/gateway/service.ts; this command owns the process concerns: options, signals, exit code.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { CliError, type CliIo } from "./io.ts";

// The options type lives with the service; this command only loads it when run.
import type { GatewayServiceOptions } from "../gateway/service.ts";

type RunGatewayService = (opts: GatewayServiceOptions) => Promise<void>;

const SERVICE_URL = new URL("../gateway/service.ts", import.meta.url);

async function loadService(): Promise<RunGatewayService> {
  if (!existsSync(fileURLToPath(SERVICE_URL))) throw new CliError("NOT_AVAILABLE", "the gateway service (src/gateway/service.ts) is not in this build yet");
  const mod = (await import(SERVICE_URL.href)) as { runGatewayService?: unknown };
  if (typeof mod.runGatewayService !== "function") throw new CliError("NOT_AVAILABLE", "src/gateway/service.ts does not export runGatewayService(opts)");
  return mod.runGatewayService as RunGatewayService;
}

export function gatewayCommand(io: CliIo): Command {
  return new Command("gateway")
    .description("run an execution gateway until SIGINT/SIGTERM (then shut down gracefully)")
    .option("--nats <url>", "NATS server", "nats://127.0.0.1:4222")
    .option("--data <dir>", "directory of the audit log (LevelDB)", "./data")
    .option("--id <gatewayId>", "this gateway's id", "gw-1")
    .option("--key <file>", "the gateway's key file")
    .option("--authority <keyId...>", "trusted authority key ids (default: $FAILCLOSED_AUTHORITIES)")
    .option("--actions <module>", "module exporting `actions` (handlers by action name)")
    .option("--snapshot-every <entries>", "snapshot the audit fold every this many entries, so a restart after a crash folds at most that many (0: only at shutdown)", "1000000")
    .option("--proof-rate <perSec>", "consistency proofs answered per second for witnesses on failclosed.audit.proof.<id> (0: none)", "100")
    .option("--json", "log lines as JSON")
    .action(async (o: { nats: string; data: string; id: string; key?: string; json?: boolean; authority?: string[]; actions?: string; snapshotEvery: string; proofRate: string }): Promise<void> => {
      const proofRate = Number(o.proofRate);
      if (!/^\d+$/.test(o.proofRate) || !Number.isSafeInteger(proofRate)) throw new CliError("USAGE", `--proof-rate: expected a whole number per second, got ${JSON.stringify(o.proofRate)}`);
      const snapshotEvery = Number(o.snapshotEvery);
      if (!/^\d+$/.test(o.snapshotEvery) || !Number.isSafeInteger(snapshotEvery)) throw new CliError("USAGE", `--snapshot-every: expected a whole number of entries, got ${JSON.stringify(o.snapshotEvery)}`);
      const run = await loadService();
      const stop = new AbortController();
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals): void => {
        signals++;
        if (signals === 1) {
          const msg = `${sig}, shutting down (again to force)`;
          // With --json every line on stderr is one JSON object, this one too.
          io.err(o.json === true ? `${JSON.stringify({ msg, gateway: o.id, signal: sig })}\n` : `failclosed gateway: ${msg}\n`);
          stop.abort(sig);
        } else {
          // A second signal means the operator gave up waiting; pending tasks were never allowed.
          process.exit(130);
        }
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        await run({
          nats: o.nats,
          dataDir: o.data,
          gatewayId: o.id,
          ...(o.key !== undefined ? { keyFile: o.key } : {}),
          ...(o.authority !== undefined ? { authorities: o.authority } : {}),
          ...(o.actions !== undefined ? { actionsModule: o.actions } : {}),
          snapshotEveryEntries: snapshotEvery,
          proofRequestsPerSec: proofRate,
          signal: stop.signal,
          log: (line) => io.err(`${line}\n`),
          json: o.json === true,
        });
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
