// `failclosed audit verify|replay|prove|checkpoints --db DIR [--json]`, and
// `failclosed audit witness --nats URL --gateway-id ID --out FILE` (keeps what a gateway published).
// Exit codes: 0 all good · 1 divergence or tampering found · 2 usage or I/O error.
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { availableParallelism } from "node:os";
import { Command, CommanderError, Option } from "commander";
import { parseStrict } from "../canonical/strict-parse.ts";
import { fromB64u } from "../crypto/base64url.ts";
import { verifySigned, type Signed } from "../crypto/signing.ts";
import { LevelBackend, type AuditBackend } from "./backend.ts";
import { readStoredRecord } from "./entry-bundle.ts";
import { checkFormat } from "./format.ts";
import { checkpointRange } from "./keys.ts";
import { backendLogSource } from "./log-source.ts";
import { buildProofBundle, selfCheckProofBundle } from "./proof-bundle.ts";
import { decodeRecord, type CheckpointPayload } from "./records.ts";
import type { DecisionLimits } from "../core/types.ts";
import { KEPT_PER_KIND } from "./divergences.ts";
import { replay, type ReplayReport, type TrustRoots } from "./replay.ts";
import { proveChain, readWitnessFile, witnessMerge, WITNESS_FILE_KIND, type ChainResult, type WitnessFile, type WitnessFinding, type WitnessResult } from "./witness.ts";
import { openProver } from "../nats/proof-service.ts";
import { jsonErrorText, stableErrorCode } from "../cli/io.ts";
import { forEachCheckpoint } from "../nats/checkpoint-feed.ts";

export interface AuditIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  /** Progress bar only on a terminal. */
  readonly isTTY: boolean;
  setExitCode(code: number): void;
}

const processIo = (): AuditIo => ({
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
  isTTY: process.stderr.isTTY,
  setExitCode: (c) => void (process.exitCode = c),
});

export class AuditCliError extends Error {
  override readonly name = "AuditCliError";
  readonly code = "AUDIT_USAGE";
}

interface CommonOpts {
  db: string;
  json?: boolean;
  trust?: string;
  gatewayKey?: string[];
  checkpoints?: string;
}

interface ReplayOpts extends CommonOpts {
  authority?: string[];
  peerGateway?: string[];
  trustLogAuthorities?: boolean;
  workers?: string;
}

const LIMIT_NAMES = ["maxSkewMs", "maxDepth", "maxFeedAgeMs", "maxRequestAgeMs"] as const satisfies readonly (keyof DecisionLimits)[];

/** The gateway's configured decision limits, as a trust file pins them (any of the four). */
function readLimits(file: string, v: unknown): Partial<DecisionLimits> {
  const bad = (): AuditCliError => new AuditCliError(`${file}: limits must be an object of ${LIMIT_NAMES.join(", ")} (numbers ≥ 0)`);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad();
  const out: Partial<DecisionLimits> = {};
  for (const [k, n] of Object.entries(v)) {
    const name = LIMIT_NAMES.find((x) => x === k);
    if (name === undefined || typeof n !== "number" || !Number.isFinite(n) || n < 0) throw bad();
    out[name] = n;
  }
  return out;
}

/** The trust roots file: `{gatewayKeys, authorities?, peerGateways?, origin?, limits?, commitTimeoutMs?}`. */
const TRUST_FILE_FIELDS = ["gatewayKeys", "authorities", "peerGateways", "origin", "limits", "commitTimeoutMs"];

function readTrustFile(file: string): TrustRoots {
  const t = parseStrict(readFileSync(file)) as Record<string, unknown>;
  if (typeof t !== "object" || t === null || Array.isArray(t)) throw new AuditCliError(`${file}: not a JSON object of trust roots`);
  // Policy: a pin mistyped ("orign", "limit") or of the wrong type is a usage error, never a
  // silently looser audit (found by review: exit 0 where the right spelling found the log wrong).
  const unknown = Object.keys(t).filter((k) => !TRUST_FILE_FIELDS.includes(k));
  if (unknown.length > 0) throw new AuditCliError(`${file}: unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(", ")} (known: ${TRUST_FILE_FIELDS.join(", ")})`);
  if (t["origin"] !== undefined && typeof t["origin"] !== "string") throw new AuditCliError(`${file}: origin must be a gateway id (a string)`);
  const keyList = (name: string): string[] | undefined => {
    const v = t[name];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((k): k is string => typeof k === "string")) throw new AuditCliError(`${file}: ${name} must be a list of key ids`);
    return v;
  };
  const gatewayKeys = keyList("gatewayKeys");
  if (gatewayKeys === undefined) throw new AuditCliError(`${file}: gatewayKeys must be a list of key ids`);
  const authorities = keyList("authorities");
  const peerGateways = keyList("peerGateways");
  const limits = t["limits"] === undefined ? undefined : readLimits(file, t["limits"]);
  const commit = t["commitTimeoutMs"];
  if (commit !== undefined && (typeof commit !== "number" || !Number.isSafeInteger(commit) || commit < 0)) throw new AuditCliError(`${file}: commitTimeoutMs must be a whole number of ms ≥ 0`);
  return {
    gatewayKeys,
    ...(authorities !== undefined ? { authorities } : {}),
    ...(peerGateways !== undefined ? { peerGateways } : {}),
    ...(typeof t["origin"] === "string" ? { origin: t["origin"] } : {}),
    ...(limits !== undefined ? { limits } : {}),
    ...(commit !== undefined ? { commitTimeoutMs: commit } : {}),
  };
}

function loadTrustRoots(o: { trust?: string; gatewayKey?: string[] }): TrustRoots {
  // A mistyped key is the auditor's error (exit 2), not the log's: unchecked, it made every
  // checkpoint "untrusted" and the log look tampered with (exit 1).
  if (o.trust !== undefined) {
    const t = readTrustFile(o.trust);
    checkKeyIds(`${o.trust}: gatewayKeys entry`, t.gatewayKeys);
    checkKeyIds(`${o.trust}: peerGateways entry`, t.peerGateways ?? []);
    return t;
  }
  if (o.gatewayKey !== undefined && o.gatewayKey.length > 0) {
    checkKeyIds("--gateway-key", o.gatewayKey);
    return { gatewayKeys: o.gatewayKey };
  }
  throw new AuditCliError("trust roots required: --trust FILE or --gateway-key KEYID");
}

function checkKeyIds(flag: string, keys: readonly string[]): void {
  const bad = keys.find((k) => fromB64u(k, 32) === undefined);
  if (bad !== undefined) throw new AuditCliError(`${flag} ${JSON.stringify(bad)} is not a base64url Ed25519 public key`);
}

/**
 * Trust roots for verify and replay. Policy: the log's trust records are the gateway's own and
 * unsigned, so an authority the log adds for itself would vouch for every artifact it signs.
 * The auditor names the authorities (--authority, or `authorities` in --trust); running without
 * any is refused unless asked for by name (--trust-log-authorities), and then said. The gateway
 * keys the log may add (spawn-lineage signers) are always pinned: the checkpoint keys and the
 * peers named (--peer-gateway, or `peerGateways` in --trust).
 */
function loadReplayTrustRoots(io: AuditIo, o: ReplayOpts): TrustRoots {
  const base = loadTrustRoots(o);
  checkKeyIds("--authority", o.authority ?? []);
  checkKeyIds("--peer-gateway", o.peerGateway ?? []);
  const authorities = base.authorities === undefined && o.authority === undefined ? undefined : [...(base.authorities ?? []), ...(o.authority ?? [])];
  if (authorities !== undefined) checkKeyIds("authority", authorities);
  if (authorities !== undefined && o.trustLogAuthorities === true) throw new AuditCliError("--trust-log-authorities contradicts the authorities given (--authority or the --trust file's authorities)");
  if (authorities === undefined && o.trustLogAuthorities !== true) {
    throw new AuditCliError(
      "authority roots required: --authority KEYID (repeatable) or a --trust file with authorities; --trust-log-authorities takes them from the log, which then vouches for any authority it adds",
    );
  }
  if (authorities === undefined) io.err("warning: authorities taken from the log (--trust-log-authorities): an authority the log adds for itself is not reported\n");
  const peerGateways = [...(base.peerGateways ?? []), ...(o.peerGateway ?? [])];
  checkKeyIds("peer gateway", peerGateways);
  return { ...base, ...(authorities !== undefined ? { authorities } : {}), peerGateways };
}

function loadCheckpoints(file: string | undefined): Signed<CheckpointPayload>[] {
  if (file === undefined) return [];
  // A witness file, or a bare JSON array of signed checkpoints (from NATS, or an older witness).
  const w = readWitnessFile(parseStrict(readFileSync(file), { maxBytes: 64 * 1024 * 1024 }));
  if ("problem" in w) throw new AuditCliError(`${file}: expected a witness file or a JSON array of signed checkpoints (${w.problem})`);
  return w.held as Signed<CheckpointPayload>[];
}

function progressBar(io: AuditIo, total: number): ((n: number) => void) | undefined {
  if (!io.isTTY || total < 50_000) return undefined;
  return (n) => {
    const frac = Math.min(1, n / total);
    const width = 30;
    const done = Math.round(frac * width);
    io.err(`\r[${"#".repeat(done)}${".".repeat(width - done)}] ${(frac * 100).toFixed(0).padStart(3)}% ${n}/${total} records`);
  };
}

function printReport(io: AuditIo, rep: ReplayReport, json: boolean, what: string): void {
  if (json) {
    io.out(`${JSON.stringify(rep)}\n`);
    return;
  }
  io.out(`${what}: ${rep.ok ? "OK" : "DIVERGENCE"}\n`);
  io.out(`records checked: ${rep.recordsChecked}\ndecisions re-derived: ${rep.decisionsRederived}\ncheckpoints verified: ${rep.checkpointsVerified}\n`);
  io.out(`size: ${rep.size}\nroot: ${rep.root}\nuncheckpointed tail: ${rep.uncheckpointedTail}\n`);
  io.out(`authorities: ${rep.authoritiesPinned === true ? "pinned by the trust roots" : "taken from the log (not pinned)"}\n`);
  if (rep.clockRegression !== undefined) io.out(`note: clock readings run ${rep.clockRegression.ms} ms behind a time a checkpoint had already signed (at seq ${rep.clockRegression.seq}): the gateway's clock was turned back, or set right after running fast\n`);
  if (rep.snapshot !== undefined) io.out(`fold snapshot at ${rep.snapshot.at}: ${rep.snapshot.result}${rep.snapshot.detail !== undefined ? ` (${rep.snapshot.detail})` : ""}\n`);
  const counts = rep.divergenceCounts;
  if (counts !== undefined && counts.total > 0) {
    const byKind = Object.entries(counts.byKind).map(([k, n]) => `${k}×${n}`).join(" ");
    io.out(`divergences: ${counts.total} (${byKind})${counts.omitted > 0 ? `; ${counts.omitted} not listed: the first ${KEPT_PER_KIND} of each kind are, and every one at an allow or an execution` : ""}\n`);
  }
  for (const d of rep.divergences) io.out(`seq ${d.seq}: ${d.kind}: ${d.detail}\n`);
}

async function withDb<T>(dir: string, fn: (b: AuditBackend) => Promise<T>): Promise<T> {
  const backend = await LevelBackend.open(dir, { createIfMissing: false });
  try {
    // A log in a layout this version does not know is an error (exit 2), not an empty log.
    await checkFormat(backend);
    return await fn(backend);
  } finally {
    await backend.close();
  }
}

// Below this many records, starting worker threads (and Cedar in each) costs more than it saves.
const AUTO_WORKERS_MIN_RECORDS = 5_000;

/** `--workers auto|N`: auto is one thread per core but this one, which helps, on long logs. */
function replayWorkers(flag: string | undefined, records: number): number {
  if (flag === undefined || flag === "auto") return records >= AUTO_WORKERS_MIN_RECORDS && availableParallelism() > 1 ? availableParallelism() - 1 : 0;
  if (!/^(0|[1-9][0-9]?)$/.test(flag)) throw new AuditCliError(`--workers must be auto or a number from 0 to 99, not ${JSON.stringify(flag)}`);
  return Number(flag);
}

async function runReplay(io: AuditIo, o: ReplayOpts, rederive: boolean): Promise<number> {
  const trust = loadReplayTrustRoots(io, o);
  const checkpoints = loadCheckpoints(o.checkpoints);
  if (o.checkpoints !== undefined && checkpoints.length === 0) io.err(`note: ${o.checkpoints} holds no checkpoints: nothing outside the log to hold it to\n`);
  replayWorkers(o.workers, 0); // a bad flag is a usage error before the log is opened
  return withDb(o.db, async (backend) => {
    const src = backendLogSource(backend);
    const head = await src.head?.();
    const onProgress = progressBar(io, head?.size ?? 0);
    const rep = await replay(src, trust, {
      checkpoints,
      rederive,
      workers: replayWorkers(o.workers, head?.size ?? 0),
      ...(onProgress !== undefined ? { onProgress, progressEvery: 5_000 } : {}),
    });
    if (onProgress !== undefined) io.err("\n");
    printReport(io, rep, o.json === true, rederive ? "replay" : "verify");
    return rep.ok ? 0 : 1;
  });
}

interface WitnessOpts {
  nats: string;
  gatewayId: string;
  out?: string;
  json?: boolean;
  trust?: string;
  gatewayKey?: string[];
  timeoutMs: string;
  /** false with --no-consistency. */
  consistency: boolean;
  follow?: boolean;
  intervalMs: string;
  cycles?: string;
}

/** Replace `file` with `text` so that a crash or power loss leaves the old file or the new one, whole. */
function replaceFileDurably(file: string, text: string): void {
  const tmp = `${file}.tmp-${randomBytes(6).toString("hex")}`;
  try {
    const fd = openSync(tmp, "wx"); // exclusive: never through an existing path or link
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  // The rename itself is durable once the directory is.
  const dir = openSync(dirname(file), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/**
 * `audit witness`: read what the gateway published, check it against what the witness file
 * already holds, prove with the gateway's consistency proofs that every checkpoint held extends
 * the ones before it, and rewrite the file with every trusted checkpoint and how far they are
 * proved (durably and atomically). 1 when anything published was refused, a fork was seen or a
 * proof signed by the checkpoints' key failed; else 2 when some checkpoint could not be proved
 * (the gateway did not answer, or no reply was signed by its key: the file keeps it, and the
 * next run asks again); 2 (file untouched) when the file itself
 * holds an entry that fails its checks under these keys: a mistyped or rotated key, or another
 * gateway's file, must never quietly erase what the witness held.
 */
async function runWitness(io: AuditIo, o: WitnessOpts): Promise<number> {
  const trust = loadTrustRoots(o);
  if (trust.origin !== undefined && trust.origin !== o.gatewayId) throw new AuditCliError(`--trust names origin ${trust.origin}, not --gateway-id ${o.gatewayId}`);
  const badKey = trust.gatewayKeys.find((k) => fromB64u(k, 32) === undefined);
  if (badKey !== undefined) throw new AuditCliError(`gateway key ${JSON.stringify(badKey)} is not a base64url Ed25519 public key`);
  const timeoutMs = Number(o.timeoutMs);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1_000 || timeoutMs > 600_000) throw new AuditCliError(`--timeout-ms must be an integer from 1000 to 600000, not ${JSON.stringify(o.timeoutMs)}`);
  // Accepted and ignored, it let an operator believe the witness would run that many passes.
  if (o.follow !== true && o.cycles !== undefined) throw new AuditCliError("--cycles goes with --follow (one pass runs without it)");
  if (o.follow !== true) return (await witnessCycle(io, o, trust.gatewayKeys, timeoutMs, 0)).code;

  // --follow: a cycle every --interval-ms until a signal (or --cycles), the file rewritten after
  // each. A finding is for keeps (exit 1 at the end); a cycle that could not complete (the bus
  // or the gateway away) is reported and the next one tries again.
  if (o.out === undefined) throw new AuditCliError("--follow needs --out: the witness file carries what it holds from one cycle to the next");
  const intervalMs = Number(o.intervalMs);
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 100 || intervalMs > 86_400_000) throw new AuditCliError(`--interval-ms must be an integer from 100 to 86400000, not ${JSON.stringify(o.intervalMs)}`);
  const cycles = o.cycles === undefined ? Infinity : Number(o.cycles);
  if (cycles !== Infinity && (!Number.isSafeInteger(cycles) || cycles < 1)) throw new AuditCliError(`--cycles must be a whole number ≥ 1, not ${JSON.stringify(o.cycles)}`);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let afterSeq = 0;
  let found = false;
  let last = 0;
  try {
    for (let n = 1; n <= cycles && !stop.signal.aborted; n++) {
      try {
        const r = await witnessCycle(io, o, trust.gatewayKeys, timeoutMs, afterSeq);
        afterSeq = r.lastSeq;
        found ||= r.code === 1;
        last = r.code;
      } catch (e) {
        // The file's own entries failing their checks is not something a retry fixes.
        if (e instanceof AuditCliError) throw e;
        last = 2;
        io.err(`failclosed audit witness: cycle ${n}: ${e instanceof Error ? e.message : String(e)}\n`);
      }
      if (n < cycles) await abortableSleep(intervalMs, stop.signal);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return found ? 1 : last;
}

/** The stream's counts with the chain's findings (INCONSISTENT, all listed) added in. */
function countFindings(c: WitnessResult["findingCounts"], chainFindings: readonly WitnessFinding[]): WitnessResult["findingCounts"] {
  const byKind = { ...c.byKind };
  for (const f of chainFindings) byKind[f.kind] = (byKind[f.kind] ?? 0) + 1;
  return { total: c.total + chainFindings.length, omitted: c.omitted, byKind };
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * One witness pass: read what the gateway published after `afterSeq` (0: everything), check it
 * against the file, prove consistency, rewrite the file, report. Returns the exit code of the
 * pass and the last stream sequence read (where the next pass of --follow reads on from).
 */
async function witnessCycle(io: AuditIo, o: WitnessOpts, gatewayKeys: readonly string[], timeoutMs: number, afterSeq: number): Promise<{ code: number; lastSeq: number }> {
  // What the witness held before: input like any other, and never silently replaced.
  let held: readonly unknown[] = [];
  let consistentThrough = 0;
  if (o.out !== undefined && existsSync(o.out)) {
    const w = readWitnessFile(parseStrict(readFileSync(o.out), { maxBytes: 64 * 1024 * 1024 }));
    if ("problem" in w) throw new AuditCliError(`${o.out}: ${w.problem}`);
    if (w.origin !== undefined && w.origin !== o.gatewayId) throw new AuditCliError(`${o.out}: the witness file of ${JSON.stringify(w.origin)}, not of ${JSON.stringify(o.gatewayId)}; not rewritten`);
    held = w.held;
    consistentThrough = w.consistentThrough;
  }
  // Checked as read, one message at a time (a flood on the subject costs time, not memory).
  const merge = witnessMerge(held, { origin: o.gatewayId, gatewayKeys });
  const { read, lastSeq } = await forEachCheckpoint(o.nats, o.gatewayId, { timeoutMs, afterSeq }, (m) => merge.add(m));
  const r = merge.result();
  // Policy: two held entries naming one size with different roots, both signed by a trusted key,
  // are a fork (exit 1), not a sign of the wrong key (found by review: a file merged from two
  // witnesses was refused as a usage error, its FORK never reported); the file keeps both sides.
  const heldForks = r.findings.filter((f) => f.where.startsWith("held") && f.kind === "FORK");
  const heldBad = r.findings.filter((f) => f.where.startsWith("held") && f.kind !== "FORK");
  if (heldBad.length > 0) {
    throw new AuditCliError(
      `${o.out ?? "witness file"}: ${heldBad.length} held ${heldBad.length === 1 ? "entry fails its" : "entries fail their"} checks under these keys (${heldBad[0]!.where}: ${heldBad[0]!.kind}: ${heldBad[0]!.detail}); wrong key, rotated key or another gateway's file? Not rewritten`,
    );
  }
  let chain: ChainResult | undefined;
  if (o.consistency) {
    const deadline = performance.now() + timeoutMs;
    let prover: Awaited<ReturnType<typeof openProver>> | undefined;
    try {
      prover = await openProver(o.nats, o.gatewayId, deadline);
      chain = await proveChain(r.checkpoints, consistentThrough, r.addedSizes, prover.prove, gatewayKeys);
    } catch (e) {
      // No connection for proofs: nothing proved this run, the checkpoints are kept all the same.
      const stopped = `cannot ask for proofs: ${e instanceof Error ? e.message : String(e)}`;
      const kept = await proveChain(r.checkpoints, consistentThrough, r.addedSizes, () => Promise.resolve({ ok: false, detail: stopped }), gatewayKeys);
      chain = { ...kept, stopped };
    } finally {
      await prover?.close();
    }
  }
  // Without proofs the watermark rises past nothing unproved, and drops below any checkpoint
  // added under it: it covers only what was proved (proveChain with a source that never answers
  // says where; the first checkpoint ever held extends nothing, so it needs no proof).
  const unchecked = chain === undefined ? await proveChain(r.checkpoints, consistentThrough, r.addedSizes, () => Promise.resolve({ ok: false, detail: "not asked (--no-consistency)" }), gatewayKeys) : undefined;
  const findings = [...r.findings, ...(chain?.findings ?? [])];
  const file: WitnessFile = { kind: WITNESS_FILE_KIND, origin: o.gatewayId, consistentThrough: (chain ?? unchecked)?.consistentThrough ?? consistentThrough, checkpoints: r.checkpoints };
  const text = `${JSON.stringify(file, null, 1)}\n`;
  if (o.out === undefined) io.out(text);
  else if (heldForks.length === 0) replaceFileDurably(o.out, text);
  // Without --out the file is the output; the report then goes to stderr.
  const say = o.out !== undefined ? io.out : io.err;
  const largest = r.checkpoints.at(-1)?.payload.size ?? 0;
  const unproven = chain?.unproven ?? r.checkpoints.filter((c) => c.payload.size > consistentThrough).length;
  const code = findings.length > 0 ? 1 : chain !== undefined && chain.unproven > 0 ? 2 : 0;
  if (o.json === true) {
    say(
      `${JSON.stringify({
        gatewayId: o.gatewayId,
        ...(o.follow === true ? { at: new Date().toISOString() } : {}),
        read,
        held: r.checkpoints.length,
        added: r.added,
        largestSize: largest,
        consistency: chain === undefined ? "not checked" : chain.unproven === 0 ? "proved" : "incomplete",
        consistentThrough: file.consistentThrough,
        proofsVerified: chain?.proved ?? 0,
        unproven,
        ...(chain?.stopped !== undefined ? { stopped: chain.stopped } : {}),
        ok: code === 0,
        findings,
        // The stream's findings past the first KEPT_PER_KIND of a kind are counted, not listed.
        findingCounts: countFindings(r.findingCounts, chain?.findings ?? []),
      })}\n`,
    );
  } else {
    say(`witness ${o.gatewayId}: ${findings.length > 0 ? "FINDINGS" : code === 0 ? "OK" : "INCOMPLETE"}\n`);
    say(`messages read: ${read}\ncheckpoints held: ${r.checkpoints.length} (${r.added} new)\nlargest size: ${largest}\n`);
    if (chain === undefined) say(`consistency: not checked (--no-consistency); proved through size ${file.consistentThrough} by earlier runs\n`);
    else say(`consistency: proved through size ${chain.consistentThrough} (${chain.proved} ${chain.proved === 1 ? "proof" : "proofs"} verified)${chain.unproven > 0 ? `; ${chain.unproven} not proved${chain.stopped !== undefined ? ` (${chain.stopped})` : ""}` : ""}\n`);
    for (const f of findings) say(`${f.where}: ${f.kind}: ${f.detail}\n`);
    if (r.findingCounts.omitted > 0) say(`(${r.findingCounts.omitted} more findings not listed: the first ${KEPT_PER_KIND} of each kind are)\n`);
  }
  // A file not rewritten (it holds a fork) kept nothing of this pass: the next pass reads it again
  // (found by review: a new fork split across two passes was missed).
  return { code, lastSeq: o.out !== undefined && heldForks.length > 0 ? afterSeq : lastSeq };
}

/** The `audit` subcommand; wire with `program.addCommand(auditCommand())`. */
export function auditCommand(io: AuditIo = processIo()): Command {
  const guard =
    <A extends unknown[]>(fn: (...a: A) => Promise<number>) =>
    async (...a: A): Promise<void> => {
      try {
        io.setExitCode(await fn(...a));
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        io.err(`failclosed audit: ${message}\n`);
        // Commander passes the command last; with --json, the failure is a JSON object on stdout too.
        const cmd = a[a.length - 1];
        if (cmd instanceof Command && cmd.opts<{ json?: boolean }>().json === true) io.out(jsonErrorText(stableErrorCode(e), message));
        io.setExitCode(2);
      }
    };
  const common = (c: Command): Command =>
    c
      .requiredOption("--db <dir>", "LevelDB directory of the audit log")
      .option("--json", "machine-readable output")
      .option("--trust <file>", "trust roots JSON {gatewayKeys, authorities?, peerGateways?, origin?, limits?, commitTimeoutMs?}")
      .addOption(new Option("--gateway-key <keyId...>", "trusted checkpoint signer (repeatable)"))
      .addOption(new Option("--authority <keyId...>", "a policy authority the log may trust (repeatable; required unless --trust names them or --trust-log-authorities)"))
      .addOption(new Option("--peer-gateway <keyId...>", "another gateway whose key the log may add for spawn lineage (repeatable)"))
      .option("--trust-log-authorities", "take the authorities from the log itself (they are then not checked; a warning says so)")
      .option("--checkpoints <file>", "checkpoints kept outside the log: a witness file (audit witness --out) or a JSON array of signed checkpoints");

  const audit = new Command("audit").description("verify, replay and prove the audit log");
  audit.addCommand(
    common(new Command("verify").description("check positions, hash chain, Merkle tree and checkpoint signatures")).action(
      guard((o: ReplayOpts) => runReplay(io, o, false)),
    ),
  );
  audit.addCommand(
    common(new Command("replay").description("verify, then re-derive state and recompute every decision"))
      .option("--workers <n>", "worker threads for decision recomputation (auto: cores − 1 on logs of 5,000+ records)", "auto")
      .action(guard((o: ReplayOpts) => runReplay(io, o, true))),
  );
  audit.addCommand(
    new Command("prove")
      .description("print an inclusion proof for a record against the first checkpoint covering it")
      .requiredOption("--db <dir>", "LevelDB directory of the audit log")
      .requiredOption("--seq <n>", "record sequence number")
      .option("--json", "machine-readable output (the bundle is JSON either way)")
      .action(
        guard(async (o: { db: string; seq: string }) => {
          const seq = Number(o.seq);
          if (!Number.isSafeInteger(seq) || seq < 0) throw new AuditCliError(`--seq must be a non-negative integer, got ${o.seq}`);
          const bundle = await withDb(o.db, (b) => buildProofBundle(b, seq));
          if (typeof bundle === "string") throw new AuditCliError(bundle === "NOT_FOUND" ? `no record ${seq}` : `no checkpoint covers record ${seq} yet`);
          // Never hand out a proof that cannot verify: a damaged stored tree is tampering to report.
          const self = selfCheckProofBundle(bundle);
          if (!self.ok) {
            io.err(`failclosed audit: the stored tree does not prove record ${seq} against the checkpoint at size ${bundle.checkpoint.payload.size} (${self.reason}): the log is damaged; run audit verify\n`);
            return 1;
          }
          io.out(`${JSON.stringify(bundle, null, 2)}\n`);
          return 0;
        }),
      ),
  );
  audit.addCommand(
    new Command("checkpoints")
      .description("list the signed checkpoints in the log")
      .requiredOption("--db <dir>", "LevelDB directory of the audit log")
      .option("--json", "machine-readable output")
      .addOption(new Option("--gateway-key <keyId...>", "check signatures against these keys"))
      .action(
        guard(async (o: { db: string; json?: boolean; gatewayKey?: string[] }) => {
          const badKey = (o.gatewayKey ?? []).find((k) => fromB64u(k, 32) === undefined);
          if (badKey !== undefined) throw new AuditCliError(`gateway key ${JSON.stringify(badKey)} is not a base64url Ed25519 public key`);
          const keys = (o.gatewayKey ?? []).map((k) => fromB64u(k, 32)).filter((k): k is Uint8Array => k !== undefined);
          let bad = 0;
          const list = await withDb(o.db, async (b) => {
            // signatureOk: null when no --gateway-key was given (not checked), so every entry has it.
            const out: (Signed<CheckpointPayload> & { seq: number; signatureOk: boolean | null })[] = [];
            for await (const [, v] of b.iterate({ ...checkpointRange })) {
              const seq = Number(new TextDecoder().decode(v));
              const bytes = await readStoredRecord(b, seq);
              const d = bytes === undefined ? undefined : decodeRecord(bytes);
              if (d?.ok !== true || d.record.type !== "checkpoint") {
                bad++;
                io.err(`failclosed audit: checkpoint index names seq ${seq}, which is ${bytes === undefined ? "missing" : d?.ok !== true ? "not a readable record" : `a ${d.record.type} record`}\n`);
                continue;
              }
              const cp = d.record.checkpoint;
              const signatureOk = keys.length === 0 ? null : keys.some((k) => verifySigned("checkpoint", cp, k));
              if (signatureOk === false) bad++;
              out.push({ ...cp, seq, signatureOk });
            }
            return out;
          });
          if (o.json === true) io.out(`${JSON.stringify(list)}\n`);
          else for (const c of list) io.out(`seq ${c.seq} size ${c.payload.size} root ${c.payload.root} time ${c.payload.time} origin ${c.payload.origin}${c.signatureOk === null ? "" : c.signatureOk ? " sig OK" : " sig BAD"}\n`);
          return bad > 0 ? 1 : 0;
        }),
      ),
  );
  audit.addCommand(
    new Command("witness")
      .description("keep the checkpoints a gateway published on NATS (for replay --checkpoints), checking signatures, forks and, with the gateway's signed consistency proofs, that each extends the ones before")
      .requiredOption("--nats <url>", "NATS server")
      .requiredOption("--gateway-id <id>", "the gateway whose checkpoints to keep (its log's origin)")
      .option("--out <file>", "witness file: read if present, rewritten with every checkpoint held (without it: the file's JSON goes to stdout)")
      .option("--json", "machine-readable report")
      .option("--trust <file>", "trust roots JSON {gatewayKeys, origin?}")
      .addOption(new Option("--gateway-key <keyId...>", "trusted checkpoint signer (repeatable)"))
      .option("--timeout-ms <ms>", "give up unless the read, and then the proofs, each complete within this long (1000–600000)", "30000")
      .option("--no-consistency", "do not ask the gateway for its signed consistency proofs (keep and check signatures and forks only)")
      .option("--follow", "keep witnessing: a pass every --interval-ms until SIGINT/SIGTERM, the file rewritten after each (needs --out); exit 1 if any pass found something")
      .option("--interval-ms <ms>", "with --follow, time between passes (100–86400000)", "60000")
      .option("--cycles <n>", "with --follow, stop after this many passes")
      .action(guard((o: WitnessOpts) => runWitness(io, o))),
  );
  return audit;
}

/** Run `audit …` (argv without node/script and without "audit"); resolves to the exit code. */
export async function runAudit(argv: readonly string[], io: AuditIo = processIo()): Promise<number> {
  let code = 0;
  const wrapped: AuditIo = { ...io, setExitCode: (c) => void (code = c) };
  const program = new Command("failclosed").exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });
  const audit = auditCommand(wrapped);
  for (const c of [audit, ...audit.commands]) c.exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });
  program.addCommand(audit);
  try {
    await program.parseAsync(["audit", ...argv], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // --help exits 0
    io.err(`failclosed audit: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  return code;
}
