// What every command shares: where output goes, how failures map to exit codes, and reading and
// writing the JSON files (keys, artifact chains, revocations) that the commands pass around.
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, fsyncSync, linkSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseStrict } from "../canonical/strict-parse.ts";
import type { JsonValue } from "../canonical/jcs.ts";

/** Exit codes (documented in `failclosed --help`). Scripts match on these; they do not change. */
export const EXIT = {
  OK: 0,
  /** Something was checked and did not hold: a scenario failed, a key file does not verify. */
  FAILED: 1,
  /** The command could not do its job: bad usage, unreadable or invalid input, I/O error. */
  USAGE: 2,
} as const;

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Progress is drawn only on a terminal (stderr), never into piped output. */
  readonly progressTTY: boolean;
  /** A command that checked something and found it failing sets EXIT.FAILED here. */
  setExitCode(code: number): void;
}

export const processIo = (): CliIo => ({
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  progressTTY: process.stderr.isTTY,
  setExitCode: (c) => void (process.exitCode = c),
});

export type CliErrorCode = "USAGE" | "IO" | "INVALID_INPUT" | "WIDENING" | "NOT_AVAILABLE" | "VERIFICATION";

/** A failure the user can act on; `exitCode` is 1 for failed checks, 2 for everything else. */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly exitCode: number;
  /** One line per problem when there are several (every invalid scenario file, say); in `--json` output. */
  readonly details: readonly string[] | undefined;
  constructor(
    readonly code: CliErrorCode,
    message: string,
    options?: { cause?: unknown; details?: readonly string[] },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.exitCode = code === "VERIFICATION" ? EXIT.FAILED : EXIT.USAGE;
    this.details = options?.details;
  }
}

/**
 * What a command run with `--json` prints on stdout when it fails, besides the usual line on
 * stderr: one JSON object, so a script reading stdout gets an answer it can parse either way.
 * `code` is a CliErrorCode, a store error code (`BACKEND_MISSING`, …) or `ERROR` for anything else.
 */
export function jsonErrorText(code: string, message: string, details?: readonly string[]): string {
  return `${JSON.stringify({ error: { code, message, ...(details !== undefined ? { details } : {}) } })}\n`;
}

/** A thrown error's own stable code (`BACKEND_MISSING`, `NATS_SERVER_START`, …), else `ERROR`. */
export function stableErrorCode(e: unknown): string {
  const code: unknown = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === "string" && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : "ERROR";
}

/** Whether `argv` asks for `--json` (before a `--` that ends the options). */
export function wantsJson(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === "--") return false;
    if (a === "--json") return true;
  }
  return false;
}

export function readJsonFile(path: string, what: string): JsonValue {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new CliError("IO", `cannot read ${what} ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    // Strict I-JSON: the same parser the gateway uses, so a file the CLI accepts is one the
    // runtime accepts (no duplicate keys, no lone surrogates, no unsafe integers).
    return parseStrict(bytes, { maxBytes: 16 * 1024 * 1024 });
  } catch (e) {
    throw new CliError("INVALID_INPUT", `${path}: not valid JSON for a ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

export function readTextFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new CliError("IO", `cannot read ${what} ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * Write a file; `secret` files get mode 0600 (also when the umask would allow more) and are never
 * overwritten unless `force`, so a typo cannot destroy a key.
 */
export function writeOutFile(path: string, text: string, opts: { secret?: boolean; force?: boolean } = {}): void {
  if (opts.secret && !opts.force && existsSync(path)) throw new CliError("IO", `${path} exists; refusing to overwrite a key (use --force)`);
  // The process's own streams by name (/dev/stdout, /dev/fd/1, /proc/self/fd/1) are written to
  // through the descriptor: `--out /dev/stdout >> log` appends, as the shell set it up.
  const fdPath = /^(?:\/dev\/(stdout|stderr)|\/dev\/fd\/(\d+)|\/proc\/self\/fd\/(\d+))$/.exec(path);
  if (fdPath !== null) {
    const fd = fdPath[1] === "stdout" ? 1 : fdPath[1] === "stderr" ? 2 : Number(fdPath[2] ?? fdPath[3]);
    try {
      const bytes = Buffer.from(text, "utf8");
      for (let at = 0, again = 0; at < bytes.length; ) {
        try {
          at += writeSync(fd, bytes, at);
        } catch (e) {
          // A non-blocking pipe that is full for a moment.
          if ((e as NodeJS.ErrnoException).code !== "EAGAIN" || ++again > 1_000) throw e;
        }
      }
    } catch (e) {
      throw new CliError("IO", `cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    return;
  }
  // A symlink is written through (the file it names is replaced); a target that is not a regular
  // file (a pipe, a device) is written to directly: there is nothing to replace atomically.
  let target = path;
  try {
    if (existsSync(path)) {
      target = realpathSync(path);
      if (!statSync(target).isFile()) {
        writeFileSync(target, text);
        return;
      }
    }
  } catch (e) {
    throw new CliError("IO", `cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  // Written whole to a temp file beside it (0600 from its creation for a secret), synced, then
  // moved into place and the directory synced: a crash or a full disk leaves the old file or the
  // new one, never a truncated key, and a secret is never readable by others meanwhile. Without
  // --force a key is linked into place, which fails if one appeared meanwhile: never overwritten.
  const tmp = join(dirname(target), `.${basename(target)}.tmp-${randomBytes(6).toString("hex")}`);
  try {
    const fd = openSync(tmp, "wx", opts.secret ? 0o600 : 0o666);
    try {
      writeFileSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.secret) chmodSync(tmp, 0o600);
    if (opts.secret && !opts.force) {
      try {
        linkSync(tmp, target);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EEXIST") throw new CliError("IO", `${path} exists; refusing to overwrite a key (use --force)`);
        // A filesystem without hard links: create the key in place, exclusively (there is no old
        // key to lose; a crash part-way leaves a short file that fails to read, never a wrong key).
        if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV" && code !== "ENOSYS") throw e;
        writeExclusive(target, text);
      }
      rmSync(tmp, { force: true });
    } else renameSync(tmp, target);
    syncDir(dirname(target));
  } catch (e) {
    rmSync(tmp, { force: true });
    if (e instanceof CliError) throw e;
    throw new CliError("IO", `cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function writeExclusive(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new CliError("IO", `${path} exists; refusing to overwrite a key (use --force)`);
    throw e;
  }
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Not every filesystem lets a directory be synced; the rename stands either way.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
