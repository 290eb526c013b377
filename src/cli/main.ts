// The `failclosed` command line. Run with `npx tsx src/cli/main.ts …` or the `failclosed` bin.
// Commands that land in other modules (simulation engine, gateway service, audit tools) are
// loaded dynamically, so this CLI works — and says what is missing — before they exist.
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "commander";
import { delegateCommand, issueCommand, revokeCommand } from "./artifacts.ts";
import { authorityCommand } from "./authority.ts";
import { gatewayCommand } from "./gateway.ts";
import { CliError, EXIT, jsonErrorText, processIo, stableErrorCode, wantsJson, type CliIo } from "./io.ts";
import { keysCommand } from "./keys.ts";
import { policyCommand } from "./policy.ts";
import { simulateCommand } from "./simulate.ts";

export const HELP_EPILOG = `
Exit codes:
  0  success
  1  a check failed: a scenario's expectations or replay did not hold, an audit log
     diverged or was tampered with, a key or artifact file does not verify
  2  the command could not run: bad usage, unreadable or invalid input, a refused
     delegation (it would widen its parent), I/O error, a component not in this build

Every command that prints results takes --json; with it, a failure also prints
{"error": {code, message, details?}} on stdout. Files: keys are JSON
{kind, keyId, publicKey, seed} written 0600; an artifact file is the chain
[root, …, leaf] as a JSON array; a revocation file is one signed revocation.

Examples:
  failclosed keys generate --out authority.json
  failclosed keys generate --out agent.json
  failclosed issue --authority authority.json --holder agent.json \\
      --actions transfer --resources payments/ --max amount=5000 --valid-for 1h --out root.json
  failclosed delegate --parent root.json --key agent.json --holder <keyId> --max amount=1000 --out child.json
  failclosed revoke --authority authority.json --artifact root.json --reason leaked --out rev.json
  failclosed simulate --report run.html
`;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

const AUDIT_URL = new URL("../audit/cli.ts", import.meta.url);

/** `audit …` from src/audit/cli.ts when present; otherwise a stub that says it is missing. */
async function auditCommandOrStub(io: CliIo): Promise<Command> {
  if (existsSync(fileURLToPath(AUDIT_URL))) {
    const mod = (await import(AUDIT_URL.href)) as { auditCommand?: unknown };
    if (typeof mod.auditCommand === "function") {
      const make = mod.auditCommand as (io: { out(s: string): void; err(s: string): void; isTTY: boolean; setExitCode(c: number): void }) => Command;
      return make({ out: (s) => io.out(s), err: (s) => io.err(s), isTTY: io.progressTTY, setExitCode: (c) => io.setExitCode(c) });
    }
  }
  return new Command("audit")
    .description("audit log tools (not in this build)")
    .allowUnknownOption()
    .argument("[args...]")
    .action(() => {
      throw new CliError("NOT_AVAILABLE", "the audit commands (src/audit/cli.ts) are not in this build yet");
    });
}

export async function buildProgram(io: CliIo): Promise<Command> {
  const version = packageVersion();
  const program = new Command("failclosed")
    .description("fail-closed execution runtime for autonomous agents")
    .version(version)
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText("after", HELP_EPILOG);
  program.addCommand(keysCommand(io));
  program.addCommand(policyCommand(io));
  program.addCommand(issueCommand(io));
  program.addCommand(delegateCommand(io));
  program.addCommand(revokeCommand(io));
  program.addCommand(simulateCommand(io, version));
  program.addCommand(gatewayCommand(io));
  program.addCommand(authorityCommand(io));
  program.addCommand(await auditCommandOrStub(io));
  // addCommand does not pass these settings down: make every level throw instead of exiting,
  // and write where `io` says, so runCli owns the exit code.
  const configure = (c: Command): void => {
    c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
    c.commands.forEach(configure);
  };
  configure(program);
  return program;
}

/** Run the CLI on `argv` (without node and script); resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let code: number = EXIT.OK;
  const tracked: CliIo = { out: (t) => io.out(t), err: (t) => io.err(t), progressTTY: io.progressTTY, setExitCode: (c) => void (code = c) };
  // Whether the command that ran was given --json, as commander parsed it (so a "--json" that is
  // another option's value does not count); before any action ran, the argv's own flag.
  let jsonOption: boolean | undefined;
  try {
    const program = await buildProgram(tracked);
    program.hook("preAction", (_program, action) => {
      jsonOption = action.opts<{ json?: unknown }>().json === true;
    });
    await program.parseAsync([...argv], { from: "user" });
    return code;
  } catch (e) {
    // With --json, a failure also prints one JSON object on stdout (io.ts jsonErrorText).
    const json = jsonOption ?? wantsJson(argv);
    if (e instanceof CommanderError) {
      // --help and --version end with exitCode 0; everything else commander refuses is usage.
      if (e.exitCode === 0) return EXIT.OK;
      if (json) io.out(jsonErrorText("USAGE", e.message.replace(/^error: /, "")));
      return EXIT.USAGE;
    }
    if (e instanceof CliError) {
      io.err(`failclosed: ${e.message}\n`);
      if (json) io.out(jsonErrorText(e.code, e.message, e.details));
      return e.exitCode;
    }
    // Not a CliError: most often an operator's input another layer refused (an unreachable
    // server, a malformed key id, an option out of range). One line, exit 2; the stack only
    // when asked for.
    // The causes always (the reason is often one or two below: a held LevelDB lock); the stack
    // only when asked for.
    const debug = process.env["FAILCLOSED_DEBUG"] === "1";
    const causes: string[] = [];
    for (let c: unknown = e instanceof Error ? e.cause : undefined; c !== undefined && causes.length < 5; c = c instanceof Error ? c.cause : undefined) {
      causes.push(c instanceof Error ? c.message : typeof c === "string" ? c : JSON.stringify(c));
    }
    const head = e instanceof Error ? (debug ? (e.stack ?? e.message) : e.message) : String(e);
    io.err(`failclosed: ${head}${causes.map((c) => `: cause: ${c}`).join("")}${debug ? "" : " (FAILCLOSED_DEBUG=1 shows where)"}\n`);
    if (json) io.out(jsonErrorText(stableErrorCode(e), e instanceof Error ? e.message : String(e), causes.length > 0 ? causes.map((c) => `cause: ${c}`) : undefined));
    return EXIT.USAGE;
  }
}

function isMain(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) process.exitCode = await runCli(process.argv.slice(2));
