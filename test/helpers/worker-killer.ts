// Stands in for a worker thread that dies (an OOM, a fatal error in native code): while `run`
// is pending, every worker thread the code under test starts is terminated as soon as it is up,
// or only the first `limit` of them.
import { Worker } from "node:worker_threads";

export async function withWorkersKilled<T>(run: () => Promise<T>, limit = Infinity): Promise<{ result: T; killed: number }> {
  const seen = new Set<Worker>();
  let killed = 0;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored below, and called with .call
  const on = Worker.prototype.on;
  Worker.prototype.on = function (this: Worker, event: string, listener: (...args: unknown[]) => void) {
    if (!seen.has(this)) {
      seen.add(this);
      if (killed < limit) {
        killed++;
        this.once("online", () => void this.terminate());
      }
    }
    return on.call(this, event, listener);
  } as typeof Worker.prototype.on;
  try {
    return { result: await run(), killed };
  } finally {
    Worker.prototype.on = on;
  }
}
