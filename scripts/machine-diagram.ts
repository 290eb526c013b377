// Regenerates docs/task-machine.md from the task machine. `--check` exits non-zero instead of
// writing when the committed file is stale (the test suite does the same comparison).
import { readFileSync, writeFileSync } from "node:fs";
import { taskMachineDoc } from "../src/gateway/machine-diagram.ts";

const target = new URL("../docs/task-machine.md", import.meta.url);
const doc = taskMachineDoc();

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {
    // Missing counts as stale.
  }
  if (current !== doc) {
    console.error("docs/task-machine.md is stale: run `npx tsx scripts/machine-diagram.ts`");
    process.exitCode = 1;
  }
} else {
  writeFileSync(target, doc);
  console.log("wrote docs/task-machine.md");
}
