// A real LevelDB audit backend that can be broken on purpose: `breakNow()` closes the
// underlying database, so the next synced batch fails with LevelDB's own error. Used by
// tests and scenarios for "audit store failure" — the failure is real, not simulated.
import { LevelBackend, type AuditBackend, type KvOp, type KvRange } from "../audit/backend.ts";

/** A real backend passed through whole: tests override what they make fail or slow. */
export class WrappedBackend implements AuditBackend {
  readonly kind = "level" as const;
  constructor(protected readonly inner: LevelBackend) {}

  batch(ops: readonly KvOp[], opts: { readonly sync: boolean }): Promise<void> {
    return this.inner.batch(ops, opts);
  }
  get(key: string): Promise<Uint8Array | undefined> {
    return this.inner.get(key);
  }
  getSync(key: string): Uint8Array | undefined {
    return this.inner.getSync(key);
  }
  getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    return this.inner.getMany(keys);
  }
  iterate(range: KvRange): AsyncIterable<[string, Uint8Array]> {
    return this.inner.iterate(range);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export class BreakableBackend extends WrappedBackend {
  #broken = false;

  static async open(dir: string): Promise<BreakableBackend> {
    return new BreakableBackend(await LevelBackend.open(dir));
  }

  async breakNow(): Promise<void> {
    if (this.#broken) return;
    this.#broken = true;
    await this.inner.close();
  }

  get broken(): boolean {
    return this.#broken;
  }

  override async close(): Promise<void> {
    if (!this.#broken) await this.inner.close();
  }
}
