// Ed25519 verification on worker threads. A gateway thread spends most of a decision's CPU
// on three signature checks while the machine's other cores sit idle; the pool verifies them
// there first, and the results only ever *warm* decide's memo of verified signatures
// (core/decide.ts primeVerified). decide itself is unchanged and still synchronous: a
// signature the pool did not confirm, for whatever reason, is verified by decide as before.
import { WorkerPool } from "../infra/worker-thread.ts";
import type { VerifyJob } from "./verify-worker.ts";

export type { VerifyJob };

export class VerifyPool {
  readonly #pool: WorkerPool<VerifyJob[], boolean[]>;

  constructor(size: number) {
    // unref: idle verify workers must not keep a gateway process alive.
    this.#pool = new WorkerPool(import.meta.url, "verify-worker", size, { unref: true });
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
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
      timer.unref();
    });
    try {
      const ok = await Promise.race([this.#pool.request([...jobs]), timeout]);
      return ok !== undefined && ok.length === jobs.length ? ok : undefined;
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  // Graceful first (see infra/worker-thread.ts); terminate only a worker that ignores it.
  close(): Promise<void> {
    return this.#pool.close(5_000);
  }
}
