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
    // A request the handler throws on fails alone: the worker answers with the error and stays.
    let reply: { id: number; body: Res } | { id: number; error: string };
    try {
      reply = { id: m.id, body: handle(m.body) };
    } catch (e) {
      reply = { id: m.id, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
    }
    parentPort?.postMessage(reply);
  });
}

type Pending<Res> = { resolve(r: Res): void; reject(e: Error): void; timer: NodeJS.Timeout | undefined };

type Slot<Res> = {
  w: Worker;
  readonly pending: Map<number, Pending<Res>>;
  exited: Promise<void>;
  /** performance.now() of the replacements started for this slot, newest last. */
  readonly restarts: number[];
  /** False once its worker failed and no replacement may be started: out of rotation for good. */
  live: boolean;
};

export interface WorkerPoolOptions<Res> {
  /** Idle workers do not keep the process alive. */
  unref?: boolean;
  /** Checks a worker's answer; an answer it refuses rejects the request instead of resolving it. */
  accept?: (body: unknown) => body is Res;
  /** Told when a worker fails or exits unasked (the pool replaces it, within maxRestartsPerMinute). */
  onWorkerLost?: (why: WorkerPoolError) => void;
  /** Replacements started per slot in any 60 s; past that the slot is retired. Default 5. */
  maxRestartsPerMinute?: number;
  /**
   * A request that times out means its worker hangs (not a queue): replace the worker, failing
   * what else it holds. For pools whose requests have a known bound; default false.
   */
  replaceOnTimeout?: boolean;
}

export class WorkerPoolError extends Error {
  override readonly name = "WorkerPoolError";
  constructor(
    readonly code: "POOL_CLOSED" | "NO_WORKER" | "WORKER_LOST" | "TIMEOUT" | "BAD_REPLY" | "HANDLER_FAILED" | "POST_FAILED",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * `size` workers running `name` (a module that calls serveRequests). A caller never waits
 * forever and never gets an answer it did not ask for:
 * - a request rejects when its worker fails or exits, when its `timeoutMs` passes, when the
 *   answer is malformed, or once the pool is closed;
 * - a worker that fails is taken out of rotation at once and replaced (a message posted to a dead
 *   worker is silently dropped, so it must never be picked again); a slot whose worker keeps
 *   failing is retired, and a pool with no live worker rejects every request at once.
 */
export class WorkerPool<Req, Res> {
  readonly #slots: Slot<Res>[] = [];
  readonly #base: string;
  readonly #name: string;
  readonly #o: WorkerPoolOptions<Res>;
  #nextId = 0;
  #closed = false;

  constructor(base: string, name: string, size: number, opts: WorkerPoolOptions<Res> = {}) {
    this.#base = base;
    this.#name = name;
    this.#o = opts;
    for (let i = 0; i < size; i++) {
      const slot: Slot<Res> = { w: undefined as unknown as Worker, pending: new Map(), exited: Promise.resolve(), restarts: [], live: true };
      this.#spawn(slot);
      this.#slots.push(slot);
    }
  }

  #spawn(slot: Slot<Res>): void {
    const w = startWorker(this.#base, this.#name);
    slot.w = w;
    slot.exited = new Promise<void>((resolve) => w.once("exit", () => resolve()));
    w.on("message", (m: unknown) => {
      // Policy: never throw out of this listener (it would be an uncaught exception in the
      // caller's thread) and never resolve a request with an answer of the wrong shape.
      try {
        const id = typeof m === "object" && m !== null ? (m as { id?: unknown }).id : undefined;
        const p = typeof id === "number" ? slot.pending.get(id) : undefined;
        if (p === undefined || typeof id !== "number") return; // timed out, or not ours
        slot.pending.delete(id);
        clearTimeout(p.timer);
        const { body, error } = m as { body?: unknown; error?: unknown };
        if (error !== undefined) p.reject(new WorkerPoolError("HANDLER_FAILED", `worker ${this.#name} could not handle the request: ${typeof error === "string" ? error : "(no message)"}`));
        else if (this.#o.accept !== undefined && !this.#o.accept(body)) p.reject(new WorkerPoolError("BAD_REPLY", `worker ${this.#name} answered with a malformed reply`));
        else p.resolve(body as Res);
      } catch (e) {
        this.#lost(slot, w, new WorkerPoolError("BAD_REPLY", `worker ${this.#name} reply could not be read`, { cause: e }));
      }
    });
    w.on("error", (e) => this.#lost(slot, w, new WorkerPoolError("WORKER_LOST", `worker ${this.#name} failed: ${e.message}`, { cause: e })));
    w.on("messageerror", (e) => this.#lost(slot, w, new WorkerPoolError("WORKER_LOST", `worker ${this.#name} sent a message that could not be read`, { cause: e })));
    w.on("exit", (code) => this.#lost(slot, w, new WorkerPoolError("WORKER_LOST", `worker ${this.#name} exited (${code})`)));
    if (this.#o.unref === true) w.unref();
  }

  /** `w` (the slot's worker, or an older one) failed: fail what it holds, replace or retire it. */
  #lost(slot: Slot<Res>, w: Worker, why: WorkerPoolError): void {
    if (slot.w !== w) return; // an already-replaced worker's later events
    for (const p of slot.pending.values()) {
      clearTimeout(p.timer);
      p.reject(why);
    }
    slot.pending.clear();
    if (this.#closed || !slot.live) return;
    w.removeAllListeners("message");
    void w.terminate().catch(() => undefined);
    this.#o.onWorkerLost?.(why);
    const now = performance.now();
    while (slot.restarts.length > 0 && now - (slot.restarts[0] ?? 0) > 60_000) slot.restarts.shift();
    if (slot.restarts.length >= (this.#o.maxRestartsPerMinute ?? 5)) {
      slot.live = false;
      return;
    }
    slot.restarts.push(now);
    try {
      this.#spawn(slot);
    } catch (e) {
      slot.live = false;
      this.#o.onWorkerLost?.(new WorkerPoolError("WORKER_LOST", `worker ${this.#name} could not be restarted`, { cause: e }));
    }
  }

  /** Workers in rotation. */
  get size(): number {
    return this.#closed ? 0 : this.#slots.filter((s) => s.live).length;
  }

  /** Requests waiting on the least busy worker (Infinity for an empty or closed pool). */
  get backlog(): number {
    if (this.#closed) return Infinity;
    return this.#slots.reduce((m, s) => (s.live ? Math.min(m, s.pending.size) : m), Infinity);
  }

  request(body: Req, timeoutMs?: number): Promise<Res> {
    return this.requestWith(() => body, timeoutMs);
  }

  /**
   * A request whose body depends on the worker that takes it: `make` is called with the chosen
   * worker (an object that a replacement never shares) right before the body is posted to it;
   * its throw rejects the request. For a caller that keeps state per worker (replay sends each
   * worker only the trust changes it has not had).
   */
  requestWith(make: (worker: Worker) => Req, timeoutMs?: number): Promise<Res> {
    if (this.#closed) return Promise.reject(new WorkerPoolError("POOL_CLOSED", "worker pool closed"));
    let slot: Slot<Res> | undefined;
    for (const s of this.#slots) if (s.live && (slot === undefined || s.pending.size < slot.pending.size)) slot = s;
    if (slot === undefined) return Promise.reject(new WorkerPoolError("NO_WORKER", `no live ${this.#name} worker`));
    const chosen = slot;
    const worker = slot.w;
    const id = this.#nextId++;
    return new Promise<Res>((resolve, reject) => {
      const p: Pending<Res> = { resolve, reject, timer: undefined };
      if (timeoutMs !== undefined) {
        p.timer = setTimeout(() => {
          // The answer, if it ever comes, finds no entry and is dropped.
          if (!chosen.pending.delete(id)) return;
          const why = new WorkerPoolError("TIMEOUT", `worker ${this.#name} did not answer in ${timeoutMs} ms`);
          reject(why);
          if (this.#o.replaceOnTimeout === true) this.#lost(chosen, worker, why);
        }, timeoutMs);
        p.timer.unref();
      }
      chosen.pending.set(id, p);
      try {
        worker.postMessage({ id, body: make(worker) } satisfies Message<Req>);
      } catch (e) {
        chosen.pending.delete(id);
        clearTimeout(p.timer);
        reject(new WorkerPoolError("POST_FAILED", `request could not be sent to worker ${this.#name}`, { cause: e }));
      }
    });
  }

  /** Ask every worker to leave; terminate only one that ignores it for `graceMs`. */
  async close(graceMs = 30_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(
      this.#slots.map(async (s) => {
        try {
          s.w.postMessage({ close: true } satisfies Message<Req>);
        } catch {
          // Already gone: exited resolves (or has).
        }
        const timer = setTimeout(() => void s.w.terminate(), graceMs);
        await s.exited;
        clearTimeout(timer);
      }),
    );
  }
}
