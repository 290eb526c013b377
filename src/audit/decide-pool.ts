// Recomputing `decide` for every recorded decision is dominated by Ed25519 verification (and
// Cedar): spread it over worker threads. `decide` is pure, so where it runs cannot change the
// answer; the pool only returns the recomputed decision when it differs from the recorded one.
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { canonicalize, type JsonValue } from "../canonical/jcs.ts";
import { decide } from "../core/decide.ts";
import type { DecisionInput } from "../core/types.ts";

export interface DecideJob {
  readonly seq: number;
  readonly input: JsonValue;
  /** Canonical JSON of the recorded Decision. */
  readonly recorded: string;
}

export interface DecideMismatch {
  readonly seq: number;
  /** Canonical JSON of the recomputed Decision. */
  readonly recomputed: string;
}

/** Run one chunk in this thread: also the worker's body. */
export function recomputeChunk(jobs: readonly DecideJob[]): DecideMismatch[] {
  const out: DecideMismatch[] = [];
  for (const j of jobs) {
    // decide never throws: malformed recorded input gives a deny, which then differs.
    const recomputed = canonicalize(decide(j.input as unknown as DecisionInput));
    if (recomputed !== j.recorded) out.push({ seq: j.seq, recomputed });
  }
  return out;
}

export interface DecideRunner {
  submit(jobs: DecideJob[]): Promise<DecideMismatch[]>;
  close(): Promise<void>;
}

export function inlineRunner(): DecideRunner {
  return { submit: (jobs) => Promise.resolve(recomputeChunk(jobs)), close: () => Promise.resolve() };
}

function spawnWorker(): Worker {
  const self = new URL(import.meta.url);
  const target = new URL(self.pathname.endsWith(".ts") ? "./decide-worker.ts" : "./decide-worker.js", self).href;
  if (!target.endsWith(".ts")) return new Worker(new URL(target));
  // Running from TypeScript sources (tsx, vitest): load tsx's ESM hooks inside the worker.
  const req = createRequire(import.meta.url);
  const api = pathToFileURL(req.resolve("tsx/esm/api").replace(/index\.cjs$/, "index.mjs")).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
  return new Worker(code, { eval: true });
}

/** A pool of `size` worker threads; chunks go to the least busy worker. */
export function workerRunner(size = Math.max(1, availableParallelism() - 0)): DecideRunner {
  type Slot = { w: Worker; pending: Map<number, { resolve(m: DecideMismatch[]): void; reject(e: unknown): void }> };
  const slots: Slot[] = [];
  let nextId = 0;
  for (let i = 0; i < size; i++) {
    const slot: Slot = { w: spawnWorker(), pending: new Map() };
    slot.w.on("message", (m: { id: number; mismatches: DecideMismatch[] }) => {
      const p = slot.pending.get(m.id);
      slot.pending.delete(m.id);
      p?.resolve(m.mismatches);
    });
    slot.w.on("error", (e) => {
      for (const p of slot.pending.values()) p.reject(e);
      slot.pending.clear();
    });
    slots.push(slot);
  }
  return {
    submit(jobs) {
      const slot = slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        slot.pending.set(id, { resolve, reject });
        slot.w.postMessage({ id, jobs });
      });
    },
    async close() {
      await Promise.all(
        slots.map(async (s) => {
          const exited = new Promise<void>((resolve) => s.w.once("exit", () => resolve()));
          s.w.postMessage({ close: true });
          // Last resort only: a worker that ignores the request for 30 s is terminated.
          const timer = setTimeout(() => void s.w.terminate(), 30_000);
          await exited;
          clearTimeout(timer);
        }),
      );
    },
  };
}
