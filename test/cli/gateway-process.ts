// `failclosed gateway …` (and the CLI entry it runs through) as a real child process, for the tests of the commands.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const TSX = import.meta.resolve("tsx");
export const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

export interface GatewayProcess {
  proc: ChildProcess;
  /** What it has written to stderr so far (its log lines). */
  logs: () => string;
  exited: Promise<number | null>;
}

/** Start `failclosed gateway <args>`; resolves once it logs "started on", or after 15 s (the caller checks). */
export async function startGatewayProcess(args: readonly string[]): Promise<GatewayProcess> {
  const proc = spawn(process.execPath, ["--import", TSX, MAIN, "gateway", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let logs = "";
  proc.stderr?.on("data", (d: Buffer) => (logs += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  for (let i = 0; i < 300 && !logs.includes("started on") && proc.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  return { proc, logs: () => logs, exited };
}
