// Worker-thread body for decide-pool.ts: recompute decisions, reply with the mismatches.
import { serveRequests } from "../infra/worker-thread.ts";
import { recomputeChunk, type DecideChunk } from "./decide-pool.ts";

serveRequests((chunk: DecideChunk) => recomputeChunk(chunk));
