// Ed25519 verification on worker threads. A gateway thread spends most of a decision's CPU
// on three signature checks while the machine's other cores sit idle; the pool verifies them
// there first, and the results only ever *warm* decide's memo of verified signatures
// (core/decide.ts primeVerified). decide itself is unchanged and still synchronous: a
// signature the pool did not confirm, for whatever reason, is verified by decide as before.
import type { Worker } from "node:worker_threads";
import { startWorker } from "../infra/worker-thread.ts";
import type { VerifyJob } from "./verify-worker.ts";

export type { VerifyJob };

export class VerifyPool {
  readonly #slots: { w: Worker; pending: Map<number, (ok: boolean[] | undefined) => void> }[] = [];
  #nextId = 0;
  #closed = false;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const slot = { w: startWorker(import.meta.url, "verify-worker"), pending: new Map<number, (ok: boolean[] | undefined) => void>() };
      slot.w.on("message", (m: { id: number; ok: boolean[] }) => {
        const done = slot.pending.get(m.id);
        slot.pending.delete(m.id);
        done?.(m.ok);
      });
      // A failed worker answers nothing: its callers fall back to verifying themselves.
      const fail = (): void => {
        for (const done of slot.pending.values()) done(undefined);
        slot.pending.clear();
      };
      slot.w.on("error", fail);
      slot.w.on("exit", fail);
      slot.w.unref();
      this.#slots.push(slot);
    }
  }

  get size(): number {
    return this.#slots.length;
  }

  /**
   * Verify on the least busy worker. Resolves with one boolean per job, or undefined when the
   * pool cannot answer (closed, worker gone, timeout): never rejects.
   */
  verify(jobs: readonly VerifyJob[], timeoutMs = 1_000): Promise<boolean[] | undefined> {
    if (this.#closed || this.#slots.length === 0 || jobs.length === 0) return Promise.resolve(undefined);
    const slot = this.#slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        slot.pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
      timer.unref();
      slot.pending.set(id, (ok) => {
        clearTimeout(timer);
        resolve(ok !== undefined && ok.length === jobs.length ? ok : undefined);
      });
      try {
        slot.w.postMessage({ id, jobs });
      } catch {
        slot.pending.delete(id);
        clearTimeout(timer);
        resolve(undefined);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(
      this.#slots.map(async (s) => {
        for (const done of s.pending.values()) done(undefined);
        s.pending.clear();
        const exited = new Promise<void>((resolve) => s.w.once("exit", () => resolve()));
        s.w.postMessage({ close: true });
        // Graceful first (see audit/decide-worker.ts); terminate only a worker that ignores it.
        const timer = setTimeout(() => void s.w.terminate(), 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}
