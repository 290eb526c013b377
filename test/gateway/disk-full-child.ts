// Action handlers for the disk-full test (disk-full.test.ts), loaded into a real `failclosed
// gateway` child with `--actions`. Each handler says that it started, before it does anything,
// on a pipe the parent passed as an extra fd: a pipe, not a file, because the child runs under a
// file-size limit (RLIMIT_FSIZE) that a file of its own would hit too, and a run it failed to
// report would look like a run that never happened.
import { writeSync } from "node:fs";
import type { ActionHandler } from "../../src/gateway/gateway.ts";

// The limit's signal: its default action ends the process (a core dump), and then no write
// fails, the process just dies. Node 20 already starts with SIGXFSZ ignored (checked: a write
// past `ulimit -f` throws EFBIG); a listener keeps it so whatever changes that default. Installed
// here, at import, which the service does before it opens the audit log.
process.on("SIGXFSZ", () => undefined);

const runsFd = Number(process.env["FAILCLOSED_DISK_FULL_RUNS_FD"]);
if (!Number.isSafeInteger(runsFd) || runsFd < 3) throw new Error("disk-full-child: set FAILCLOSED_DISK_FULL_RUNS_FD to the fd of the runs pipe");

const read: ActionHandler = ({ taskId }) => {
  // Synchronous: the line is in the pipe before the handler can have any effect. If it cannot be
  // written the handler throws and does nothing else.
  writeSync(runsFd, `run ${taskId}\n`);
  return { ran: taskId };
};

export const actions: Record<string, ActionHandler> = { read };
