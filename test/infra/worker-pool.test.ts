// WorkerPool (src/infra/worker-thread.ts) under workers that fail: a request always settles, a
// dead worker is never picked again, a worker that keeps dying is retired, and no answer of the
// wrong shape resolves a request. The verify and replay pools are built on it.
import { afterEach, describe, expect, it } from "vitest";
import { WorkerPool, WorkerPoolError } from "../../src/infra/worker-thread.ts";

type Cmd = { op: string; v?: unknown };
const isNumber = (b: unknown): b is number => typeof b === "number";

const pools: WorkerPool<Cmd, unknown>[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close(2_000)));
});

function pool(size: number, opts: ConstructorParameters<typeof WorkerPool<Cmd, number>>[3] = {}, name = "misbehaving-worker"): WorkerPool<Cmd, number> {
  const p = new WorkerPool<Cmd, number>(import.meta.url, name, size, { accept: isNumber, ...opts });
  pools.push(p);
  return p;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (e) {
    return e instanceof WorkerPoolError ? e.code : `other: ${String(e)}`;
  }
}

describe("WorkerPool", () => {
  it("a worker that crashes fails its request and is replaced; later requests are answered", async () => {
    const lost: string[] = [];
    const p = pool(1, { onWorkerLost: (e) => lost.push(e.code) });
    expect(await p.request({ op: "echo", v: 1 })).toBe(1);
    expect(await codeOf(p.request({ op: "crash" }))).toBe("WORKER_LOST");
    expect(await p.request({ op: "echo", v: 2 }, 10_000)).toBe(2);
    expect(await p.request({ op: "echo", v: 3 }, 10_000)).toBe(3);
    expect(lost).toEqual(["WORKER_LOST"]);
    expect(p.size).toBe(1);
  });

  it("a worker that exits with code 0 mid-request counts as lost too", async () => {
    const p = pool(1);
    expect(await codeOf(p.request({ op: "exit0" }))).toBe("WORKER_LOST");
    expect(await p.request({ op: "echo", v: 5 }, 10_000)).toBe(5);
  });

  it("with two workers, one lost, every later request is answered", async () => {
    const p = pool(2);
    expect(await codeOf(p.request({ op: "crash" }))).toBe("WORKER_LOST");
    const answers = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((v) => p.request({ op: "echo", v }, 10_000)));
    expect(answers).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("a worker that keeps dying is retired, and an empty pool rejects at once", async () => {
    const lost: string[] = [];
    const p = pool(1, { maxRestartsPerMinute: 2, onWorkerLost: (e) => lost.push(e.code) });
    for (let i = 0; i < 3; i++) expect(await codeOf(p.request({ op: "crash" }, 10_000))).toBe("WORKER_LOST");
    expect(p.size).toBe(0);
    expect(p.backlog).toBe(Infinity);
    expect(await codeOf(p.request({ op: "echo", v: 1 }))).toBe("NO_WORKER");
    expect(lost).toHaveLength(3);
  });

  it("a request that is not answered in time rejects and leaves nothing waiting", async () => {
    const p = pool(1);
    expect(await codeOf(p.request({ op: "wrong-id", v: 1 }, 300))).toBe("TIMEOUT");
    expect(p.backlog).toBe(0);
    expect(await p.request({ op: "echo", v: 2 }, 10_000)).toBe(2);
  });

  it("with replaceOnTimeout, a hung worker is replaced", async () => {
    const p = pool(1, { replaceOnTimeout: true });
    expect(await codeOf(p.request({ op: "hang" }, 500))).toBe("TIMEOUT");
    expect(await p.request({ op: "echo", v: 9 }, 10_000)).toBe(9);
  });

  it("an answer of the wrong shape rejects its request; a message with no id is ignored without throwing", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown): void => void uncaught.push(e);
    process.prependListener("uncaughtException", onUncaught);
    try {
      const p = pool(1);
      expect(await codeOf(p.request({ op: "bad-body" }, 5_000))).toBe("BAD_REPLY");
      expect(await codeOf(p.request({ op: "null-reply" }, 500))).toBe("TIMEOUT");
      expect(await p.request({ op: "echo", v: 4 }, 5_000)).toBe(4);
    } finally {
      process.removeListener("uncaughtException", onUncaught);
    }
    expect(uncaught).toEqual([]);
  });

  it("a handler that throws fails only its own request (serveRequests)", async () => {
    const lost: unknown[] = [];
    const p = pool(1, { onWorkerLost: (e) => lost.push(e) }, "handler-worker");
    expect(await codeOf(p.request({ op: "throw" }, 10_000))).toBe("HANDLER_FAILED");
    expect(await p.request({ op: "echo", v: 6 }, 10_000)).toBe(6);
    expect(lost).toEqual([]);
  });

  it("a closed pool rejects with POOL_CLOSED", async () => {
    const p = pool(1);
    await p.close(2_000);
    expect(await codeOf(p.request({ op: "echo", v: 1 }))).toBe("POOL_CLOSED");
  });
});
