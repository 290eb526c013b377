// Worker-thread body for verify-pool.ts: the one accept rule (ed25519.ts), off the main thread.
import { parentPort } from "node:worker_threads";
import { verifyEd25519 } from "./ed25519.ts";

export interface VerifyJob {
  readonly pub: Uint8Array;
  readonly msg: Uint8Array;
  readonly sig: Uint8Array;
}

parentPort?.on("message", (m: { id: number; jobs: VerifyJob[] } | { close: true }) => {
  if ("close" in m) {
    parentPort?.close();
    return;
  }
  parentPort?.postMessage({ id: m.id, ok: m.jobs.map((j) => verifyEd25519(j.pub, j.msg, j.sig)) });
});
