// Recomputing `decide` for every recorded decision is dominated by Ed25519 verification (and
// Cedar): spread it over worker threads. `decide` is pure, so where it runs cannot change the
// answer; the pool only returns the recomputed decision when it differs from the recorded one.
import { availableParallelism } from "node:os";
import { WorkerPool } from "../infra/worker-thread.ts";
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
export function workerRunner(size = Math.max(1, availableParallelism()), helpInline = false): DecideRunner {
  const pool = new WorkerPool<DecideChunk, DecideMismatch[]>(import.meta.url, "decide-worker", size, { accept: isMismatchList, replaceOnTimeout: true });
  return {
    submit(chunk) {
      // Every worker has a backlog: this thread recomputes the chunk itself rather than wait,
      // so the thread that reads the log also takes its share of decisions.
      if (helpInline && pool.backlog >= 2) return Promise.resolve(recomputeChunk(chunk));
      return pool.request(chunk, CHUNK_BASE_MS + CHUNK_PER_JOB_MS * chunk.jobs.length).catch(() => recomputeChunk(chunk));
    },
    close: () => pool.close(),
  };
}
