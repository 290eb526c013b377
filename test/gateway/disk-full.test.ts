// A real disk-write failure under a running gateway. The other audit-failure tests break the
// log through fake backends; here the real LevelDB fails on the real disk: a `failclosed
// gateway` child runs under a file-size limit (`ulimit -f`, RLIMIT_FSIZE), so that once it has
// started and allowed some tasks, a write to its audit log's write-ahead file passes the limit
// and fails with EFBIG, while tasks keep arriving over a real nats-server. Then:
// 1. no handler ran for a task whose allow is not in the log;
// 2. once writes fail, every task is denied and none runs; the child stays up until it is stopped,
//    each client is answered (by the gateway, or at its decision deadline as the README says), the
//    gateway says why it denies, and it stops when told;
// 3. every record the gateway acknowledged (each allow that ran, each outcome a client was told
//    of as recorded, each deny that names its record) is in the log reopened without the limit,
//    and the log verifies and replays with no divergence;
// 4. the gateway starts again on the same data dir without the limit (LevelDB recovers the torn
//    write-ahead file itself) and runs new tasks, and the log still verifies and replays.
// The `it`s below are the phases of one run, in order: each takes what the one before left.
import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { keyFileOf } from "../../src/cli/keys.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { captureIo } from "../audit/support.ts";

const TSX = import.meta.resolve("tsx");
const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const ACTIONS = fileURLToPath(new URL("./disk-full-child.ts", import.meta.url));

/**
 * The child's file-size limit in KiB (bash's `ulimit -f` unit). Above every other file the
 * child writes (tsx's compile cache: under 100 KiB a file; LevelDB's MANIFEST and LOG: a few
 * KiB), so it starts; far below the 4 MiB LevelDB lets its write-ahead file reach before it
 * rolls it over into a table, so the log's own synced writes are what hit it, after some tens of
 * tasks (each group commit rewrites the open 16-record entry bundle: about 12 KiB a task here).
 */
const LIMIT_KIB = 512;
/** Tasks submitted at once, so that decisions and outcomes of several tasks share a group commit. */
const WAVE = 4;
/** A bound on the waves before the limit is hit (it is hit after about a dozen). */
const MAX_WAVES = 60;
/** Tasks submitted at once after the first wave that met the failure: all must be denied, none run. */
const AFTER = 8;
/** The runs pipe's fd in the child (its stdio index). */
const RUNS_FD = 3;
/** The gateway's own bound on a stop is its 25 s handler grace plus a few 10 s steps; well under this. */
const STOP_WITHIN_MS = 45_000;
/** How the gateway says a handler ran but its outcome record is not known to be durable (gateway.ts). */
const OUTCOME_NOT_RECORDED = "its outcome record is not known to be in the audit log";

const authorityKey = namedKey("disk-full-authority");
const gatewayKey = namedKey("disk-full-gateway");
const agent = namedKey("disk-full-agent");
const GATEWAY_ID = "gw-disk-full";

let server: NatsServerHandle;
let dir: string;
let authority: Authority;
let client: Runtime;
let grants = 0;
const children: ChildProcess[] = [];

const dataDir = (): string => join(dir, "data");
const auditDir = (): string => join(dataDir(), "audit");
/** A byte copy of the audit dir as the limited gateway left it, torn write-ahead file and all. */
const leftDir = (): string => join(dir, "as-left");

beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "failclosed-disk-full-"));
  // Written before the limit applies, and given with --key: the child writes nothing of its own
  // under the limit but its log (and caches), and the test knows the key that signs its log.
  await writeFile(join(dir, "gateway-key.json"), JSON.stringify(keyFileOf(gatewayKey, Date.now())), { mode: 0o600 });
  authority = await Authority.connect({ natsUrl: server.url, key: authorityKey });
  await authority.publishPolicy(DEFAULT_POLICY);
  await authority.startHeartbeats(500);
  // Signed outcomes only, from this gateway's key: what the client is told is the gateway's word.
  // The deadline is short so that a gateway which leaves its tasks to others once its log fails
  // (as it does for a corrupt one) has them settled by the client within the test, as documented.
  client = await Runtime.connect({ natsUrl: server.url, gatewayKeys: [gatewayKey.keyId], outcomeTimeoutMs: 8_000, maxSkewMs: 1_000 });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await client?.close().catch(() => undefined);
  await authority?.close().catch(() => undefined);
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

interface GatewayChild {
  proc: ChildProcess;
  /** Its stderr and stdout so far. */
  logs: () => string;
  /** Task ids whose handler started, in order, as the handler reported them on the runs pipe. */
  runs: string[];
  /** Resolves with the exit code (or the signal's name) once it exited and its pipes are drained. */
  exited: Promise<number | string>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `failclosed gateway` on the test's data dir, under `ulimit -f limitKib` when given. */
async function startGateway(limitKib: number | undefined): Promise<GatewayChild> {
  const node = [process.execPath, "--import", TSX, MAIN, "gateway", "--nats", server.url, "--data", dataDir(), "--id", GATEWAY_ID, "--key", join(dir, "gateway-key.json"), "--authority", authorityKey.keyId, "--actions", ACTIONS];
  // bash sets the limit on itself and execs node, which inherits it, as from an operator's
  // shell; "$@" passes the command through whole.
  const script = limitKib === undefined ? 'exec "$@"' : `ulimit -f ${limitKib} && exec "$@"`;
  const proc = spawn("bash", ["-c", script, "bash", ...node], {
    stdio: ["ignore", "pipe", "pipe", "pipe"],
    env: { ...process.env, FAILCLOSED_DISK_FULL_RUNS_FD: String(RUNS_FD) },
  });
  children.push(proc);
  let logs = "";
  proc.stderr!.on("data", (d: Buffer) => (logs += d.toString()));
  proc.stdout!.on("data", (d: Buffer) => (logs += d.toString()));
  const runs: string[] = [];
  let partial = "";
  (proc.stdio[RUNS_FD] as Readable).on("data", (d: Buffer) => {
    const lines = (partial + d.toString()).split("\n");
    partial = lines.pop()!;
    for (const l of lines) if (l.startsWith("run ")) runs.push(l.slice(4));
  });
  const exited = new Promise<number | string>((r) => proc.once("close", (code, signal) => r(code ?? signal ?? "unknown")));
  for (let i = 0; i < 600 && !logs.includes("started on") && proc.exitCode === null; i++) await sleep(50);
  return { proc, logs: () => logs, runs, exited };
}

/** SIGTERM, then SIGKILL if it has not exited within `graceMs`: says which ended it. */
async function stopGateway(gw: GatewayChild, graceMs: number): Promise<{ how: "exited" | "killed"; code: number | string }> {
  gw.proc.kill("SIGTERM");
  const timedOut = Symbol("timed out");
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([gw.exited, new Promise<symbol>((r) => (timer = setTimeout(() => r(timedOut), graceMs)))]);
  clearTimeout(timer);
  if (typeof first !== "symbol") return { how: "exited", code: first };
  gw.proc.kill("SIGKILL");
  return { how: "killed", code: await gw.exited };
}

interface Submitted {
  taskId: string;
  outcome: TaskOutcome;
}

/** A fresh root grant and its submission; resolves with what the client was told. */
async function submit(): Promise<Submitted> {
  const taskId = newTaskId();
  const n = grants++;
  const now = Date.now();
  const { artifact } = await authority.grant({
    taskId,
    holder: agent.keyId,
    scope: { actions: ["read"], resources: ["reports/"], constraints: {} },
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`disk-full-${n}`),
    attribution: { initiator: "disk-full-test", reason: "a write past the file-size limit" },
  });
  const outcome = await client.spawn({ agent, action: "read", resource: "reports/q1", args: { n }, chain: [artifact], taskId }).outcome;
  return { taskId, outcome };
}

const wave = (): Promise<Submitted[]> => Promise.all(Array.from({ length: WAVE }, () => submit()));

interface LogRecord {
  seq: number;
  type: string;
  taskId?: string;
  decision?: { verdict: string };
  status?: string;
  resultDigest?: string;
  error?: string;
}

/** Every record of the log at `db`, in order, read as an auditor opens it (never creating one). */
async function readLog(db: string): Promise<LogRecord[]> {
  const backend = await LevelBackend.open(db, { createIfMissing: false });
  try {
    return (await exportJsonl(backend))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as LogRecord);
  } finally {
    await backend.close();
  }
}

interface AuditRun {
  code: number;
  divergences: unknown[] | undefined;
  recordsChecked: number | undefined;
  decisionsRederived: number | undefined;
  text: string;
}

/** `failclosed audit <command> --json` on `db`, with the gateway's key and the authority pinned. */
async function audit(command: "verify" | "replay", db: string): Promise<AuditRun> {
  const io = captureIo();
  const code = await runAudit([command, "--db", db, "--gateway-key", gatewayKey.keyId, "--authority", authorityKey.keyId, "--json"], io);
  let report: { divergences?: unknown[]; recordsChecked?: number; decisionsRederived?: number } = {};
  try {
    report = JSON.parse(io.stdout()) as typeof report;
  } catch {
    // left empty: the exit code and the text say what went wrong
  }
  return { code, divergences: report.divergences, recordsChecked: report.recordsChecked, decisionsRederived: report.decisionsRederived, text: `${io.stdout()}\n${io.stderr()}` };
}

/** verify, then replay, of the log at `db` (read as `log`): both clean, every record checked, every decision re-derived. */
async function expectAuditClean(db: string, log: readonly LogRecord[]): Promise<void> {
  const verify = await audit("verify", db);
  expect(verify.code, verify.text).toBe(0);
  expect(verify.divergences, verify.text).toEqual([]);
  expect(verify.recordsChecked, verify.text).toBe(log.length);
  const replayed = await audit("replay", db);
  expect(replayed.code, replayed.text).toBe(0);
  expect(replayed.divergences, replayed.text).toEqual([]);
  expect(replayed.recordsChecked, replayed.text).toBe(log.length);
  expect(replayed.decisionsRederived, replayed.text).toBe(log.filter((r) => r.type === "decision").length);
}

const decisionsOf = (log: readonly LogRecord[], taskId: string): LogRecord[] => log.filter((r) => r.type === "decision" && r.taskId === taskId);
const outcomesOf = (log: readonly LogRecord[], taskId: string): LogRecord[] => log.filter((r) => r.type === "outcome" && r.taskId === taskId);
const allowed = (log: readonly LogRecord[], taskId: string): boolean => decisionsOf(log, taskId).some((r) => r.decision?.verdict === "allow");

// What the phases leave for the next ones.
let limited: GatewayChild | undefined;
/** Everything the client was told in phase 1, in submission order, and the wave that first met the failure. */
const told: Submitted[] = [];
let failedAtWave = -1;
/** The log as the limited gateway left it, read from the byte copy. */
let leftLog: LogRecord[] = [];

describe("a gateway whose audit log hits a real file-size limit (EFBIG)", () => {
  it("under the limit: tasks run until the log's writes fail, then every task is denied and none runs, and the child stays up", { timeout: 90_000 }, async () => {
    limited = await startGateway(LIMIT_KIB);
    const gw = limited;
    expect(gw.logs(), "the gateway did not start under the limit").toContain("started on");
    for (let w = 0; w < MAX_WAVES && failedAtWave < 0; w++) {
      const got = await wave();
      told.push(...got);
      if (got.some((s) => s.outcome.status !== "succeeded")) failedAtWave = w;
    }
    const afterFailure = failedAtWave < 0 ? [] : await Promise.all(Array.from({ length: AFTER }, () => submit()));
    told.push(...afterFailure);
    const summary = (): string => `${told.map((s, i) => `${Math.floor(i / WAVE)} ${s.taskId} ${s.outcome.status} ${s.outcome.codes.join(",")} ${s.outcome.error ?? s.outcome.detail ?? ""}`).join("\n")}\nlogs:\n${gw.logs()}`;
    expect(failedAtWave, `the log never hit the ${LIMIT_KIB} KiB limit:\n${summary()}`).toBeGreaterThanOrEqual(0);
    expect(failedAtWave, `no task was allowed before the limit was hit:\n${summary()}`).toBeGreaterThan(0);
    // 2. Still up (not crashed, not restarting) right to the last task.
    expect(gw.proc.exitCode, summary()).toBeNull();
    for (const s of told) {
      // Every answer is the gateway's own (signed: the client takes no other), or a deny the client
      // settled at the decision deadline (README: no claim for it, so no gateway can allow it any
      // more); never "unknown" (a gateway claimed it and said nothing).
      expect([GATEWAY_ID, "client"], summary()).toContain(s.outcome.gatewayId);
      if (s.outcome.gatewayId === "client") expect(s.outcome.status, summary()).toBe("denied");
      expect(["succeeded", "failed", "denied"], summary()).toContain(s.outcome.status);
    }
    expect(afterFailure.length).toBe(AFTER);
    for (const s of afterFailure) {
      expect(s.outcome.status, summary()).toBe("denied");
      if (s.outcome.gatewayId === GATEWAY_ID) expect(s.outcome.codes, summary()).toContain("GOVERNANCE_UNAVAILABLE");
    }
    // Never a run for a task told it was denied; at most one run of any task; every run was told as allowed.
    const ran = new Set(gw.runs);
    expect(ran.size, `a handler ran twice: ${gw.runs.join(" ")}`).toBe(gw.runs.length);
    for (const s of told) {
      if (s.outcome.status === "denied") expect(ran.has(s.taskId), `denied task ${s.taskId} ran\n${summary()}`).toBe(false);
      else expect(ran.has(s.taskId), `task ${s.taskId} was told ${s.outcome.status}, but no handler run was reported\n${summary()}`).toBe(true);
    }
    for (const s of afterFailure) expect(ran.has(s.taskId)).toBe(false);

    const stopped = await stopGateway(gw, STOP_WITHIN_MS);
    expect(stopped.how, `SIGTERM did not stop it within ${STOP_WITHIN_MS} ms:\n${gw.logs()}`).toBe("exited");
    // It exited by itself, not by a signal's default action (SIGXFSZ would be one), and with 2 (an
    // I/O error), not 0: its log failed while it ran.
    expect(stopped.code, gw.logs()).toBe(2);
    // The failure was the real limit: LevelDB's write-ahead file stopped at exactly its size.
    const sizes = await Promise.all((await readdir(auditDir())).map(async (f) => ({ f, size: (await stat(join(auditDir(), f))).size })));
    expect(
      sizes.some((s) => s.f.endsWith(".log") && s.size === LIMIT_KIB * 1024),
      `no write-ahead file at the limit: ${JSON.stringify(sizes)}`,
    ).toBe(true);
    await cp(auditDir(), leftDir(), { recursive: true });
  });

  it("says on its log lines why it denies every task (the disk error), not only GOVERNANCE_UNAVAILABLE in each deny", () => {
    expect(limited, "the first phase did not run").toBeDefined();
    // A gateway that silently turns into one that denies everything leaves its operator nothing
    // to act on: it already says so once for a stale feed or missing revocations (gateway.ts #health).
    expect(limited!.logs(), "the gateway's log lines never name the audit log's write failure").toMatch(/audit log not writable \(.*(File too large|EFBIG).*\): denying the tasks in flight and leaving the task queue/);
  });

  it("every acknowledged record is in the log reopened without the limit, and it verifies and replays", { timeout: 60_000 }, async () => {
    expect(limited, "the first phase did not run").toBeDefined();
    leftLog = await readLog(leftDir());
    const runs = limited!.runs;
    const show = (taskId: string): string => `records of ${taskId}: ${JSON.stringify([...decisionsOf(leftLog, taskId), ...outcomesOf(leftLog, taskId)])}\nlogs:\n${limited!.logs()}`;
    // 1. Every handler that started has its allow in the log.
    for (const taskId of runs) expect(allowed(leftLog, taskId), `handler ran for ${taskId} without an allow in the log\n${show(taskId)}`).toBe(true);
    for (const s of told) {
      const o = s.outcome;
      // The decision an answer names is that task's, at that position.
      if (o.decisionSeq !== undefined) {
        const at = leftLog[o.decisionSeq];
        expect(at?.type === "decision" && at.taskId === s.taskId, `${s.taskId} was told of decision ${o.decisionSeq}, which is not its\n${show(s.taskId)}`).toBe(true);
        expect(at?.decision?.verdict).toBe(o.verdict);
      }
      switch (o.status) {
        case "succeeded": {
          // Told it ran and succeeded: its allow and its outcome, with the result digest it was told.
          expect(allowed(leftLog, s.taskId), show(s.taskId)).toBe(true);
          const outs = outcomesOf(leftLog, s.taskId);
          expect(outs.map((r) => [r.status, r.resultDigest]), show(s.taskId)).toEqual([["succeeded", o.resultDigest]]);
          break;
        }
        case "failed": {
          // Here a handler that ran and returned, whose outcome record the failure took: the answer
          // says the record is not known to be in the log, and its allow is there.
          expect(o.error, show(s.taskId)).toContain(OUTCOME_NOT_RECORDED);
          expect(allowed(leftLog, s.taskId), show(s.taskId)).toBe(true);
          break;
        }
        case "denied":
          // A deny with its record names its seq (checked above); one without stands unrecorded.
          expect(allowed(leftLog, s.taskId) && runs.includes(s.taskId), show(s.taskId)).toBe(false);
          break;
        case "unknown":
          throw new Error(`${s.taskId}: no answer from the gateway\n${show(s.taskId)}`);
        default:
          o.status satisfies never;
      }
    }
    // Nothing the failure touched is half there: the records are whole and consecutive.
    leftLog.forEach((r, i) => expect(r.seq).toBe(i));
    await expectAuditClean(leftDir(), leftLog);
  });

  it("starts again on the same data dir without the limit, records the interrupted runs, runs new tasks, and the log replays", { timeout: 90_000 }, async () => {
    expect(limited, "the first phase did not run").toBeDefined();
    const again = await startGateway(undefined);
    expect(again.logs(), "the gateway did not start again on its data dir").toContain("started on");
    const fresh = await wave();
    const stopped = await stopGateway(again, STOP_WITHIN_MS);
    const why = `${fresh.map((s) => `${s.taskId} ${s.outcome.status} ${s.outcome.codes.join(",")} ${s.outcome.error ?? s.outcome.detail ?? ""}`).join("\n")}\nlogs:\n${again.logs()}`;
    expect(stopped, why).toEqual({ how: "exited", code: 0 });
    for (const s of fresh) expect(s.outcome.status, why).toBe("succeeded");
    expect([...again.runs].sort(), why).toEqual(fresh.map((s) => s.taskId).sort());

    const log = await readLog(auditDir());
    // What the limited gateway left is the start of the log, record for record.
    expect(log.slice(0, leftLog.length)).toEqual(leftLog);
    for (const s of fresh) {
      expect(allowed(log, s.taskId), why).toBe(true);
      expect(outcomesOf(log, s.taskId).map((r) => r.status)).toEqual(["succeeded"]);
    }
    // A run whose outcome the failure took now has one: interrupted, recorded by this start.
    for (const taskId of limited!.runs) {
      if (outcomesOf(leftLog, taskId).length > 0) continue;
      expect(outcomesOf(log, taskId).map((r) => [r.status, r.error?.startsWith("interrupted")]), why).toEqual([["failed", true]]);
    }
    await expectAuditClean(auditDir(), log);
  });
});
