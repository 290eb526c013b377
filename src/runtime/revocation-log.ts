// An authority's revocation log: a JSON file of every revocation of its key it has published or
// seen on the feed, so that a restart can publish again what the feed lost while it was down.
import { open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import type { KeyPair } from "../crypto/keys.ts";
import type { SignedRevocation } from "../core/types.ts";
import { tryParseStrict } from "../canonical/strict-parse.ts";
import { check, signedRevocationSchema } from "../core/schema.ts";
import { verifySigned } from "../crypto/signing.ts";

/**
 * The log at `path`, kept: each revocation is written (and synced) by `keep` before it is counted
 * or sent. Writes go one after another, each merged with the file as it stands, so two processes
 * of one key on one log lose nothing.
 */
export class RevocationLog {
  /** Log writes one after another (each merges with the file as the one before left it). */
  #keeping: Promise<void> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly key: KeyPair,
    private entries: SignedRevocation[],
  ) {}

  /** Open (or start) the log. Throws (TypeError) on a file that is not one, or holds another key's revocation. */
  static async open(path: string, key: KeyPair): Promise<RevocationLog> {
    return new RevocationLog(path, key, await readRevocationLog(path, key));
  }

  /** What the log held when opened, and has taken since. */
  get revocations(): readonly SignedRevocation[] {
    return this.entries;
  }

  /** Add `r` (merged with what the file holds now). */
  keep(r: SignedRevocation): Promise<void> {
    const next = this.#keeping.then(() => this.#keepNow(r));
    this.#keeping = next.catch(() => undefined);
    return next;
  }

  async #keepNow(r: SignedRevocation): Promise<void> {
    if (this.entries.some((x) => x.sig === r.sig)) return;
    const onDisk = await readRevocationLog(this.path, this.key);
    const merged = [...onDisk];
    for (const x of [...this.entries, r]) if (!merged.some((y) => y.sig === x.sig)) merged.push(x);
    await writeRevocationLog(this.path, merged);
    this.entries = merged;
  }
}

/** The revocations a log holds; [] when there is none yet. Throws on a log that is not one. */
async function readRevocationLog(path: string, key: KeyPair): Promise<SignedRevocation[]> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const parsed = tryParseStrict(bytes, { maxBytes: 256 * 1024 * 1024 });
  if (!parsed.ok || !Array.isArray(parsed.value)) throw new TypeError(`revocation log ${path}: not a JSON array of signed revocations`);
  return parsed.value.map((x, i) => {
    const r = check(signedRevocationSchema, x);
    if (!r.ok) throw new TypeError(`revocation log ${path}[${i}]: not a signed revocation (${r.error})`);
    if (r.value.payload.issuer !== key.keyId || !verifySigned("revocation", r.value, key.publicKey)) throw new TypeError(`revocation log ${path}[${i}]: not signed by this authority's key`);
    return r.value;
  });
}

let logWrites = 0;

/** Replace the log whole: written to a file beside it, synced, renamed over it, the directory synced. */
async function writeRevocationLog(path: string, entries: readonly SignedRevocation[]): Promise<void> {
  const tmp = `${path}.${process.pid}.${++logWrites}.tmp`;
  const f = await open(tmp, "w");
  try {
    await f.writeFile(JSON.stringify(entries, null, 1));
    await f.sync();
  } finally {
    await f.close();
  }
  await rename(tmp, path);
  const d = await open(dirname(path), "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
