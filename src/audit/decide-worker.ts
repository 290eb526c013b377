// Worker-thread body for decide-pool.ts: recompute decisions, reply with the mismatches.
import { parentPort } from "node:worker_threads";
import { recomputeChunk, type DecideChunk } from "./decide-pool.ts";

parentPort?.on("message", (m: { id: number; chunk: DecideChunk } | { close: true }) => {
  // A graceful close: the worker leaves once its event loop is empty. Terminating it from
  // outside while V8 still compiles Cedar's wasm in the background crashed the whole process
  // (a V8 fatal, seen as `trap int3`), so the pool asks instead of killing.
  if ("close" in m) {
    parentPort?.close();
    return;
  }
  parentPort?.postMessage({ id: m.id, mismatches: recomputeChunk(m.chunk) });
});
