// Recomputing `decide` for every recorded decision is dominated by Ed25519 verification (and
// Cedar): spread it over worker threads. `decide` is pure, so where it runs cannot change the
// answer; the pool only returns the recomputed decision when it differs from the recorded one.
import { availableParallelism } from "node:os";
import type { Worker } from "node:worker_threads";
import { WorkerPool } from "../infra/worker-thread.ts";
import { canonicalize, type JsonValue } from "../canonical/jcs.ts";
import { decide } from "../core/decide.ts";
import type { DecisionInput } from "../core/types.ts";
import { TrustHistory, TrustHistoryError, type TrustDelta } from "./trust-view.ts";

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
 * A batch of jobs as a worker gets it, with the trust changes (trust-view.ts TrustHistory) its
 * replica lacks: positions [from, from + deltas.length) of replay's history, which holds every
 * change up to the jobs' versions. `from` 0 starts the replica again.
 */
export interface DecideChunk {
  readonly jobs: readonly DecideJob[];
  readonly trust: { readonly from: number; readonly deltas: readonly TrustDelta[] };
}

export interface DecideMismatch {
  readonly seq: number;
  /** Canonical JSON of the recomputed Decision. */
  readonly recomputed: string;
}

/** Recompute jobs on `history` (replay's own, or a worker's replica). */
export function recomputeJobs(jobs: readonly DecideJob[], history: TrustHistory): DecideMismatch[] {
  const out: DecideMismatch[] = [];
  for (const j of jobs) {
    const record = JSON.parse(j.record) as { input: JsonValue; decision: JsonValue };
    // decide never throws: malformed recorded input gives a deny, which then differs. A recorded
    // snapshot is judged on itself; a reference to the log's trust, on the history at its version.
    const view = j.trustVersion === undefined ? undefined : history.at(j.trustVersion);
    const recomputed = canonicalize(decide(record.input as unknown as DecisionInput, undefined, view));
    if (recomputed !== canonicalize(record.decision)) out.push({ seq: j.seq, recomputed });
  }
  return out;
}

/**
 * A worker's replica of replay's trust history, brought up to date by a chunk's changes. Changes
 * that do not follow on from what the replica holds (a lost or reordered chunk) throw
 * TrustHistoryError: the chunk fails, replay recomputes it on its own history, and the next
 * chunk to this worker starts the replica again from position 0.
 */
export function syncReplica(replica: TrustHistory, t: DecideChunk["trust"]): void {
  if (t.from === 0) replica.reset();
  else if (t.from !== replica.length) throw new TrustHistoryError(`trust changes from ${t.from} do not follow the ${replica.length} this worker holds`);
  for (const d of t.deltas) replica.apply(d);
}

export interface DecideRunner {
  submit(jobs: readonly DecideJob[]): Promise<DecideMismatch[]>;
  close(): Promise<void>;
}

export function inlineRunner(history: TrustHistory): DecideRunner {
  return { submit: (jobs) => Promise.resolve(recomputeJobs(jobs, history)), close: () => Promise.resolve() };
}

/** How long a chunk may take on a worker before the worker counts as hung. */
const CHUNK_BASE_MS = 30_000;
const CHUNK_PER_JOB_MS = 200;

const isMismatchList = (body: unknown): body is DecideMismatch[] =>
  Array.isArray(body) && body.every((m) => typeof m === "object" && m !== null && Number.isSafeInteger((m as DecideMismatch).seq) && typeof (m as DecideMismatch).recomputed === "string");

/**
 * A pool of `size` worker threads; chunks go to the least busy worker. A chunk the pool cannot
 * answer (its worker died, hung past the chunk's bound, or answered out of shape) is recomputed
 * in this thread instead: `decide` is pure, so that gives the same answer, and replay neither
 * hangs nor loses a decision to a worker's failure. A hung or dead worker is replaced.
 */
export function workerRunner(history: TrustHistory, size = Math.max(1, availableParallelism()), helpInline = false): DecideRunner {
  const pool = new WorkerPool<DecideChunk, DecideMismatch[]>(import.meta.url, "decide-worker", size, { accept: isMismatchList, replaceOnTimeout: true });
  // How much of `history` each worker has been sent. A replacement worker is a new object, so it
  // starts from 0; so does one whose chunk failed, in case the failure lost changes.
  const sent = new WeakMap<Worker, number>();
  return {
    submit(jobs) {
      // Every worker has a backlog: this thread recomputes the chunk itself rather than wait,
      // so the thread that reads the log also takes its share of decisions.
      if (helpInline && pool.backlog >= 2) return Promise.resolve(recomputeJobs(jobs, history));
      let took: Worker | undefined;
      const make = (w: Worker): DecideChunk => {
        took = w;
        const from = sent.get(w) ?? 0;
        sent.set(w, history.length);
        return { jobs, trust: { from, deltas: history.since(from) } };
      };
      // Recomputed here on replay's own history when the worker cannot answer: it holds every
      // change the jobs' versions need, and later ones do not change what an earlier version sees.
      return pool.requestWith(make, CHUNK_BASE_MS + CHUNK_PER_JOB_MS * jobs.length).catch(() => {
        if (took !== undefined) sent.delete(took);
        return recomputeJobs(jobs, history);
      });
    },
    close: () => pool.close(),
  };
}
