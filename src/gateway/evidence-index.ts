// Evidence for tasks, indexed by task id as it streams in from FAILCLOSED_EVIDENCE. One
// gateway-wide ordered consumer feeds it (a consumer per task would cost a round trip each);
// tasks wait here until their chain and lineage are complete or their deadline passes.
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { contentId } from "../crypto/signing.ts";
import { check, signedArtifactSchema, signedLineageSchema } from "../core/schema.ts";
import type { SignedArtifact, SignedLineage } from "../core/types.ts";
import { MAX_MESSAGE_BYTES, parseEvidenceSubject } from "../nats/contract.ts";

interface TaskEvidence {
  artifacts: Map<string, SignedArtifact>;
  /** Lineage events by the artifact they introduce; the first one received wins. */
  lineage: Map<string, SignedLineage>;
  /** What could not be taken in, for MALFORMED accounting (bounded: EVIDENCE_LIMITS). */
  intakeErrors: string[];
  /** When its first message arrived: evidence ages from then, however much more arrives. */
  firstAt: number;
  /** Message bytes held for it (its share of EVIDENCE_LIMITS.totalBytes). */
  bytes: number;
}

/**
 * What the index holds, so that evidence nobody submits a task for cannot grow a gateway
 * without bound. Over a task's limits its evidence gains an intake error (a MALFORMED deny for
 * that task, never a pass); over the total, the oldest tasks nobody waits on are dropped (a
 * task submitted later then misses its evidence and is denied at its deadline).
 */
export const EVIDENCE_LIMITS = {
  /**
   * Artifacts and lineage events per task: a chain holds at most 65 artifacts (depth ≤ 64 by
   * schema) and one lineage event each, plus room for a few stray copies.
   */
  perTaskItems: 2 * 65 + 8,
  /** Intake errors kept per task, each cut to errorChars (the deny records them). */
  perTaskErrors: 8,
  errorChars: 200,
  /** Message bytes held across all tasks. */
  totalBytes: 128 * 1024 * 1024,
} as const;

/** What an entry costs beyond its messages (maps, strings, bookkeeping), counted against the budget. */
const ENTRY_OVERHEAD_BYTES = 512;

const clip = (s: string): string => (s.length > EVIDENCE_LIMITS.errorChars ? `${s.slice(0, EVIDENCE_LIMITS.errorChars)}…` : s);

export interface AssembledEvidence {
  /** Root first; empty when the request's artifact has not arrived. */
  chain: SignedArtifact[];
  /** One per chain element when present, origin first. */
  lineage: SignedLineage[];
  intakeErrors: string[];
  complete: boolean;
}

export class EvidenceIndex {
  /** In order of first arrival (a Map keeps insertion order): the oldest go first. */
  readonly #tasks = new Map<string, TaskEvidence>();
  readonly #waiters = new Map<string, Set<() => void>>();
  #bytes = 0;
  /** Messages dropped because they named no valid task. */
  dropped = 0;
  /** Tasks whose evidence was dropped to stay within EVIDENCE_LIMITS.totalBytes. */
  evictedForSpace = 0;

  constructor(
    private readonly clock: () => number,
    private readonly totalBytes: number = EVIDENCE_LIMITS.totalBytes,
  ) {}

  #entry(taskId: string): TaskEvidence {
    let e = this.#tasks.get(taskId);
    if (!e) {
      e = { artifacts: new Map(), lineage: new Map(), intakeErrors: [], firstAt: this.clock(), bytes: 0 };
      this.#tasks.set(taskId, e);
      // Its bookkeeping is counted even when nothing more fits (the few bytes of one entry).
      if (!this.#hold(taskId, e, ENTRY_OVERHEAD_BYTES)) {
        e.bytes += ENTRY_OVERHEAD_BYTES;
        this.#bytes += ENTRY_OVERHEAD_BYTES;
      }
    }
    return e;
  }

  #error(taskId: string, e: TaskEvidence, what: string): void {
    const max = EVIDENCE_LIMITS.perTaskErrors;
    const kept = e.intakeErrors.length < max - 1 ? clip(what) : e.intakeErrors.length === max - 1 ? "more evidence errors for this task: not kept" : undefined;
    if (kept === undefined) return;
    e.intakeErrors.push(kept);
    // An error is kept even over the budget (it denies the task; a few hundred bytes at most).
    if (!this.#hold(taskId, e, 2 * kept.length)) {
      e.bytes += 2 * kept.length;
      this.#bytes += 2 * kept.length;
    }
  }

  /**
   * Count `bytes` more for the task, dropping the oldest tasks nobody waits on to make room.
   * False when even that leaves the index over its budget and nobody waits on this task either:
   * the caller then keeps nothing more for it (the count is undone).
   */
  #hold(taskId: string, e: TaskEvidence, bytes: number): boolean {
    e.bytes += bytes;
    this.#bytes += bytes;
    if (this.#bytes <= this.totalBytes) return true;
    for (const [id, old] of this.#tasks) {
      if (this.#bytes <= this.totalBytes) break;
      if (id === taskId || this.#waiters.has(id)) continue;
      this.#drop(id, old);
      this.evictedForSpace++;
    }
    if (this.#bytes <= this.totalBytes || this.#waiters.has(taskId)) return true;
    e.bytes -= bytes;
    this.#bytes -= bytes;
    return false;
  }

  #drop(taskId: string, e: TaskEvidence): void {
    this.#tasks.delete(taskId);
    this.#bytes -= e.bytes;
  }

  /** Index one message from the evidence stream. Never throws: bad bytes become intake errors. */
  add(subject: string, data: Uint8Array): void {
    const where = parseEvidenceSubject(subject);
    if (!where) {
      this.dropped++;
      return;
    }
    const e = this.#entry(where.taskId);
    const parsed = tryParseStrict(data, { maxBytes: MAX_MESSAGE_BYTES });
    if (!parsed.ok) {
      this.#error(where.taskId, e, `${where.kind}: ${parsed.error.code}`);
    } else if (e.artifacts.size + e.lineage.size >= EVIDENCE_LIMITS.perTaskItems) {
      this.#error(where.taskId, e, `${where.kind}: over ${EVIDENCE_LIMITS.perTaskItems} artifacts and lineage events for one task`);
    } else if (where.kind === "artifact") {
      const r = check(signedArtifactSchema, parsed.value);
      if (r.ok) {
        const id = contentId(r.value.payload);
        if (!e.artifacts.has(id)) {
          if (this.#hold(where.taskId, e, data.byteLength)) e.artifacts.set(id, r.value);
          else this.#error(where.taskId, e, "artifact: over the gateway's evidence budget");
        }
      } else this.#error(where.taskId, e, `artifact: ${r.error}`);
    } else {
      const r = check(signedLineageSchema, parsed.value);
      if (r.ok) {
        if (!e.lineage.has(r.value.payload.childArtifactId)) {
          if (this.#hold(where.taskId, e, data.byteLength)) e.lineage.set(r.value.payload.childArtifactId, r.value);
          else this.#error(where.taskId, e, "lineage: over the gateway's evidence budget");
        }
      } else this.#error(where.taskId, e, `lineage: ${r.error}`);
    }
    const ws = this.#waiters.get(where.taskId);
    if (ws) for (const w of ws) w();
  }

  /** Walk from the request's artifact to the root, and pick the lineage event of each. */
  assemble(taskId: string, leafArtifactId: string): AssembledEvidence {
    const e = this.#tasks.get(taskId);
    if (!e) return { chain: [], lineage: [], intakeErrors: [], complete: false };
    const chain: SignedArtifact[] = [];
    const seen = new Set<string>();
    let id: string | undefined = leafArtifactId;
    let reachedRoot = false;
    while (id !== undefined && !seen.has(id) && chain.length <= 64) {
      seen.add(id);
      const a = e.artifacts.get(id);
      if (!a) break;
      chain.unshift(a);
      if (a.payload.parent === undefined) {
        reachedRoot = true;
        break;
      }
      id = a.payload.parent;
    }
    const lineage: SignedLineage[] = [];
    for (const a of chain) {
      const l = e.lineage.get(contentId(a.payload));
      if (l) lineage.push(l);
    }
    return {
      chain,
      lineage,
      intakeErrors: [...e.intakeErrors],
      complete: reachedRoot && lineage.length === chain.length && chain.length > 0,
    };
  }

  /**
   * Resolve once the evidence is complete, or with whatever is there when `signal` aborts
   * (the evidence deadline or a shutdown): decide() then denies the incomplete case.
   */
  waitFor(taskId: string, leafArtifactId: string, signal: AbortSignal): Promise<AssembledEvidence> {
    return new Promise((resolve) => {
      const tryNow = (): boolean => {
        const a = this.assemble(taskId, leafArtifactId);
        if (a.complete || a.intakeErrors.length > 0 || signal.aborted) {
          done(a);
          return true;
        }
        return false;
      };
      let set = this.#waiters.get(taskId);
      const done = (a: AssembledEvidence) => {
        set?.delete(poke);
        if (set?.size === 0) this.#waiters.delete(taskId);
        signal.removeEventListener("abort", onAbort);
        resolve(a);
      };
      const poke = () => void tryNow();
      const onAbort = () => done(this.assemble(taskId, leafArtifactId));
      if (tryNow()) return;
      if (!set) {
        set = new Set();
        this.#waiters.set(taskId, set);
      }
      set.add(poke);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Lineage events known for a task (a parent's lineage is handed on to its children). */
  lineageOf(taskId: string, chain: SignedArtifact[]): SignedLineage[] {
    const e = this.#tasks.get(taskId);
    if (!e) return [];
    return chain.map((a) => e.lineage.get(contentId(a.payload))).filter((l): l is SignedLineage => l !== undefined);
  }

  forget(taskId: string): void {
    const e = this.#tasks.get(taskId);
    if (e !== undefined) this.#drop(taskId, e);
  }

  /**
   * Drop evidence that arrived more than `maxAgeMs` ago (the stream's own retention), counted
   * from its first message, so a trickle of more cannot keep a task's evidence alive.
   */
  evict(maxAgeMs: number): void {
    const cutoff = this.clock() - maxAgeMs;
    for (const [id, e] of this.#tasks) if (e.firstAt < cutoff && !this.#waiters.has(id)) this.#drop(id, e);
  }

  get size(): number {
    return this.#tasks.size;
  }

  /** Message bytes held: within the total budget, bar tasks being waited on and a few hundred bytes of bookkeeping. */
  get bytes(): number {
    return this.#bytes;
  }
}
