// Worker threads on our own modules: how to start one (from compiled JS, or from the TypeScript
// sources under tsx/vitest, where the worker must load tsx's ESM hooks first), a small pool
// that sends each request to the least busy worker, and the worker-side loop that answers.
// Used by the replay pool (audit/decide-pool.ts) and the gateway's verify pool.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker, parentPort } from "node:worker_threads";

/** `base` is the caller's import.meta.url; `name` the worker module without extension. */
export function startWorker(base: string, name: string): Worker {
  const self = new URL(base);
  const target = new URL(self.pathname.endsWith(".ts") ? `./${name}.ts` : `./${name}.js`, self).href;
  if (!target.endsWith(".ts")) return new Worker(new URL(target));
  const req = createRequire(base);
  const api = pathToFileURL(req.resolve("tsx/esm/api").replace(/index\.cjs$/, "index.mjs")).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
  return new Worker(code, { eval: true });
}

type Message<Req> = { readonly id: number; readonly body: Req } | { readonly close: true };

/** The worker side: answer each request with `handle(body)` until the pool asks it to close. */
export function serveRequests<Req, Res>(handle: (body: Req) => Res): void {
  parentPort?.on("message", (m: Message<Req>) => {
    // A graceful close: the worker leaves once its event loop is empty. Terminating it from
    // outside while V8 still compiles Cedar's wasm in the background crashed the whole process
    // (a V8 fatal, seen as `trap int3`), so the pool asks instead of killing.
    if ("close" in m) {
      parentPort?.close();
      return;
    }
    parentPort?.postMessage({ id: m.id, body: handle(m.body) });
  });
}

type Pending<Res> = { resolve(r: Res): void; reject(e: unknown): void };

/**
 * `size` workers running `name` (a module that calls serveRequests). A request rejects when its
 * worker fails or exits, or once the pool is closed: a caller never waits forever.
 */
export class WorkerPool<Req, Res> {
  readonly #slots: { readonly w: Worker; readonly pending: Map<number, Pending<Res>>; readonly exited: Promise<void> }[] = [];
  #nextId = 0;
  #closed = false;

  constructor(base: string, name: string, size: number, opts: { unref?: boolean } = {}) {
    for (let i = 0; i < size; i++) {
      const w = startWorker(base, name);
      const slot = { w, pending: new Map<number, Pending<Res>>(), exited: new Promise<void>((resolve) => w.once("exit", () => resolve())) };
      slot.w.on("message", (m: { id: number; body: Res }) => {
        const p = slot.pending.get(m.id);
        slot.pending.delete(m.id);
        p?.resolve(m.body);
      });
      const fail = (why: unknown): void => {
        for (const p of slot.pending.values()) p.reject(why);
        slot.pending.clear();
      };
      slot.w.on("error", fail);
      slot.w.on("exit", (code) => fail(new Error(`worker ${name} exited (${code})`)));
      if (opts.unref === true) slot.w.unref();
      this.#slots.push(slot);
    }
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Requests waiting on the least busy worker (Infinity for an empty or closed pool). */
  get backlog(): number {
    if (this.#closed) return Infinity;
    return this.#slots.reduce((m, s) => Math.min(m, s.pending.size), Infinity);
  }

  request(body: Req): Promise<Res> {
    if (this.#closed || this.#slots.length === 0) return Promise.reject(new Error("worker pool closed"));
    const slot = this.#slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.#nextId++;
    return new Promise<Res>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      try {
        slot.w.postMessage({ id, body } satisfies Message<Req>);
      } catch (e) {
        slot.pending.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  /** Ask every worker to leave; terminate only one that ignores it for `graceMs`. */
  async close(graceMs = 30_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(
      this.#slots.map(async (s) => {
        s.w.postMessage({ close: true } satisfies Message<Req>);
        const timer = setTimeout(() => void s.w.terminate(), graceMs);
        await s.exited;
        clearTimeout(timer);
      }),
    );
  }
}
