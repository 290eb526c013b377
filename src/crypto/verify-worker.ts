// Worker-thread body for verify-pool.ts: the one accept rule (ed25519.ts), off the main thread.
import { serveRequests } from "../infra/worker-thread.ts";
import { verifyEd25519 } from "./ed25519.ts";

export interface VerifyJob {
  readonly pub: Uint8Array;
  readonly msg: Uint8Array;
  readonly sig: Uint8Array;
}

serveRequests((jobs: VerifyJob[]) => jobs.map((j) => verifyEd25519(j.pub, j.msg, j.sig)));
