// Worker-thread body for decide-pool.ts: recompute decisions, reply with the mismatches. The
// replica of replay's trust history lives as long as the worker; each chunk brings its changes.
import { serveRequests } from "../infra/worker-thread.ts";
import { recomputeJobs, syncReplica, type DecideChunk } from "./decide-pool.ts";
import { TrustHistory } from "./trust-view.ts";

const replica = new TrustHistory();

serveRequests((chunk: DecideChunk) => {
  syncReplica(replica, chunk.trust);
  return recomputeJobs(chunk.jobs, replica);
});
