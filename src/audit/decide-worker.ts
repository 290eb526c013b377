// Worker-thread body for decide-pool.ts: recompute decisions, reply with the mismatches.
import { parentPort } from "node:worker_threads";
import { recomputeChunk, type DecideJob } from "./decide-pool.ts";

parentPort?.on("message", (m: { id: number; jobs: DecideJob[] }) => {
  parentPort?.postMessage({ id: m.id, mismatches: recomputeChunk(m.jobs) });
});
