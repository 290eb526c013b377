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
  /** Raw artifacts as received, for MALFORMED accounting only. */
  intakeErrors: string[];
  touchedAt: number;
}

export interface AssembledEvidence {
  /** Root first; empty when the request's artifact has not arrived. */
  chain: SignedArtifact[];
  /** One per chain element when present, origin first. */
  lineage: SignedLineage[];
  intakeErrors: string[];
  complete: boolean;
}

export class EvidenceIndex {
  readonly #tasks = new Map<string, TaskEvidence>();
  readonly #waiters = new Map<string, Set<() => void>>();
  /** Messages dropped because they named no valid task. */
  dropped = 0;

  constructor(private readonly clock: () => number) {}

  #entry(taskId: string): TaskEvidence {
    let e = this.#tasks.get(taskId);
    if (!e) {
      e = { artifacts: new Map(), lineage: new Map(), intakeErrors: [], touchedAt: this.clock() };
      this.#tasks.set(taskId, e);
    }
    e.touchedAt = this.clock();
    return e;
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
      e.intakeErrors.push(`${where.kind}: ${parsed.error.code}`);
    } else if (where.kind === "artifact") {
      const r = check(signedArtifactSchema, parsed.value);
      if (r.ok) e.artifacts.set(contentId(r.value.payload), r.value);
      else e.intakeErrors.push(`artifact: ${r.error}`);
    } else {
      const r = check(signedLineageSchema, parsed.value);
      if (r.ok) {
        if (!e.lineage.has(r.value.payload.childArtifactId)) e.lineage.set(r.value.payload.childArtifactId, r.value);
      } else e.intakeErrors.push(`lineage: ${r.error}`);
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
    this.#tasks.delete(taskId);
  }

  /** Drop evidence untouched for longer than `maxAgeMs` (the stream's own retention). */
  evict(maxAgeMs: number): void {
    const cutoff = this.clock() - maxAgeMs;
    for (const [id, e] of this.#tasks) if (e.touchedAt < cutoff && !this.#waiters.has(id)) this.#tasks.delete(id);
  }

  get size(): number {
    return this.#tasks.size;
  }
}
