// Ed25519 verification on worker threads. A gateway thread spends most of a decision's CPU
// on three signature checks while the machine's other cores sit idle; the pool verifies them
// there first, and the results only ever *warm* decide's memo of verified signatures
// (core/decide.ts primeVerified). decide itself is unchanged and still synchronous: a
// signature the pool did not confirm, for whatever reason, is verified by decide as before.
import { WorkerPool, type WorkerPoolOptions } from "../infra/worker-thread.ts";
import type { VerifyJob } from "./verify-worker.ts";

export type { VerifyJob };

/** `u` itself when it spans its whole buffer, else a copy that does. */
function exact(u: Uint8Array): Uint8Array {
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? u : u.slice();
}

export class VerifyPool {
  readonly #pool: WorkerPool<VerifyJob[], boolean[]>;

  constructor(size: number, opts: Pick<WorkerPoolOptions<boolean[]>, "onWorkerLost"> = {}) {
    // unref: idle verify workers must not keep a gateway process alive. A worker that dies is
    // replaced; meanwhile (and if it keeps dying) decide verifies on the calling thread.
    this.#pool = new WorkerPool(import.meta.url, "verify-worker", size, {
      ...opts,
      unref: true,
      accept: (body): body is boolean[] => Array.isArray(body) && body.every((b) => typeof b === "boolean"),
    });
  }

  get size(): number {
    return this.#pool.size;
  }

  /**
   * One boolean per job, as verifyEd25519 answers on a worker; undefined when the pool cannot
   * answer (empty, closed, worker gone, timeout). Never rejects.
   */
  async verify(jobs: readonly VerifyJob[], timeoutMs = 1_000): Promise<boolean[] | undefined> {
    if (jobs.length === 0 || this.#pool.size === 0) return undefined;
    try {
      // Exact-size copies: a view into Node's shared 8 KiB buffer pool (what base64url decoding
      // gives) would carry the whole block across to the worker.
      const ok = await this.#pool.request(
        jobs.map((j) => ({ pub: exact(j.pub), msg: exact(j.msg), sig: exact(j.sig) })),
        timeoutMs,
      );
      return ok.length === jobs.length ? ok : undefined;
    } catch {
      return undefined;
    }
  }

  // Graceful first (see infra/worker-thread.ts); terminate only a worker that ignores it.
  close(): Promise<void> {
    return this.#pool.close(5_000);
  }
}
