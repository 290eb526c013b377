// `npm run bench`: every figure the issues ask for, each beside the physical baseline
// measured in the same run. Not part of the tests: timing never gates CI.
import { printTrustCore, runTrustCoreBench } from "./trust-core.ts";

const only = process.argv.slice(2);
const want = (name: string) => only.length === 0 || only.includes(name);

const results: Record<string, Record<string, number>> = {};
if (want("trust")) {
  results["trust"] = runTrustCoreBench();
  printTrustCore(results["trust"]);
}
if (want("audit")) {
  try {
    const m = (await import("./audit.ts"));
    if (m.runAuditBench) results["audit"] = await m.runAuditBench();
  } catch (e) {
    console.error(`audit bench failed: ${String(e)}`);
    process.exitCode = 1;
  }
}
if (want("e2e")) {
  try {
    const m = await import("./e2e.ts");
    results["e2e"] = await m.runE2eBench();
  } catch (e) {
    console.error(`e2e bench failed: ${String(e)}`);
    process.exitCode = 1;
  }
}
if (process.env["BENCH_JSON"]) {
  const { writeFileSync } = await import("node:fs");
  writeFileSync(process.env["BENCH_JSON"], JSON.stringify(results, null, 2));
}
