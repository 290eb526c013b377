#!/usr/bin/env node
// Launcher for the `failclosed` bin: the CLI is TypeScript run through tsx, registered in this
// process so that signals (gateway shutdown) and exit codes need no forwarding.
import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../src/cli/main.ts");
process.exitCode = await runCli(process.argv.slice(2));
