// Recomputing `decide` for every recorded decision is dominated by Ed25519 verification (and
// Cedar): spread it over worker threads. `decide` is pure, so where it runs cannot change the
// answer; the pool only returns the recomputed decision when it differs from the recorded one.
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { startWorker } from "../infra/worker-thread.ts";
import { canonicalize, type JsonValue } from "../canonical/jcs.ts";
import { decide } from "../core/decide.ts";
import type { DecisionInput, TrustSnapshot } from "../core/types.ts";
import { rehydrateDecisionInput } from "./trust-view.ts";

export interface DecideJob {
  readonly seq: number;
  /**
   * The decision record's canonical text (already checked by replay). Sent as text: a string
   * crosses to a worker far cheaper than a structured clone of the parsed record, and the
   * worker's JSON.parse is native.
   */
  readonly record: string;
  /** The fold's trustVersion at this decision, when its input refers to the log's trust. */
  readonly trustVersion?: number;
}

/**
 * A batch of jobs with the trust snapshots they refer to, each sent once per chunk rather than
 * once per decision (a snapshot holds the policy document and every revocation).
 */
export interface DecideChunk {
  readonly jobs: readonly DecideJob[];
  readonly trust: Readonly<Record<number, TrustSnapshot>>;
}

export interface DecideMismatch {
  readonly seq: number;
  /** Canonical JSON of the recomputed Decision. */
  readonly recomputed: string;
}

/** Run one chunk in this thread: also the worker's body. */
export function recomputeChunk(chunk: DecideChunk): DecideMismatch[] {
  const out: DecideMismatch[] = [];
  for (const j of chunk.jobs) {
    const record = JSON.parse(j.record) as { input: JsonValue; decision: JsonValue };
    const snapshot = j.trustVersion === undefined ? undefined : chunk.trust[j.trustVersion];
    const input = snapshot === undefined ? record.input : rehydrateDecisionInput(record.input, snapshot);
    // decide never throws: malformed recorded input gives a deny, which then differs.
    const recomputed = canonicalize(decide(input as unknown as DecisionInput));
    if (recomputed !== canonicalize(record.decision)) out.push({ seq: j.seq, recomputed });
  }
  return out;
}

export interface DecideRunner {
  submit(chunk: DecideChunk): Promise<DecideMismatch[]>;
  close(): Promise<void>;
}

export function inlineRunner(): DecideRunner {
  return { submit: (chunk) => Promise.resolve(recomputeChunk(chunk)), close: () => Promise.resolve() };
}

/** A pool of `size` worker threads; chunks go to the least busy worker. */
export function workerRunner(size = Math.max(1, availableParallelism() - 0), helpInline = false): DecideRunner {
  type Slot = { w: Worker; pending: Map<number, { resolve(m: DecideMismatch[]): void; reject(e: unknown): void }> };
  const slots: Slot[] = [];
  let nextId = 0;
  for (let i = 0; i < size; i++) {
    const slot: Slot = { w: startWorker(import.meta.url, "decide-worker"), pending: new Map() };
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
    submit(chunk) {
      const slot = slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      // Every worker has a backlog: this thread recomputes the chunk itself rather than wait,
      // so the thread that reads the log also takes its share of decisions.
      if (helpInline && slot.pending.size >= 2) return Promise.resolve(recomputeChunk(chunk));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        slot.pending.set(id, { resolve, reject });
        slot.w.postMessage({ id, chunk });
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
