// Running the CLI in-process for tests: what it printed on each stream and its exit code.
import type { CliIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/main.ts";

export interface Ran {
  code: number;
  out: string;
  err: string;
}

/** `failclosed ...argv` through runCli, with stdout and stderr captured. */
export async function cli(...argv: string[]): Promise<Ran> {
  let out = "";
  let err = "";
  const io: CliIo = { out: (t) => void (out += t), err: (t) => void (err += t), progressTTY: false, setExitCode: () => undefined };
  const code = await runCli(argv, io);
  return { code, out, err };
}
