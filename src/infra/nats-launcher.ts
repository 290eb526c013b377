// Starts a real nats-server (from PATH, else /usr/sbin or /usr/local/sbin) on a random port with
// a temp JetStream store, as nats.js's own test launcher (nst/src/launcher.ts) does: `-p -1`,
// then read the ports file it writes.
// Used by every test suite that needs the bus, and by the simulator when no $NATS_URL answers.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Where nats-server is looked for when PATH has none. Debian and Ubuntu's package installs it in
 * /usr/sbin, which is not on a normal user's PATH there; /usr/local/sbin is its local twin.
 */
export const NATS_SERVER_FALLBACKS: readonly string[] = ["/usr/sbin/nats-server", "/usr/local/sbin/nats-server"];

export class NatsServerNotFoundError extends Error {
  readonly code = "NATS_SERVER_NOT_FOUND";
  override readonly name = "NatsServerNotFoundError";
  /** @param tried the binaries tried; default: nats-server on PATH, then NATS_SERVER_FALLBACKS. */
  constructor(tried: readonly string[] = ["nats-server", ...NATS_SERVER_FALLBACKS]) {
    super(
      `nats-server was not found (tried ${tried.map((t) => (t.includes("/") ? t : `${t} on PATH`)).join(", ")}) and no NATS answered at $NATS_URL. Install it ` +
        "(Debian/Ubuntu: `apt-get install -y nats-server`, which puts it in /usr/sbin; macOS: `brew install nats-server`) " +
        "or set NATS_URL to a running server with JetStream enabled.",
    );
  }
}

/**
 * How much of nats-server's stderr a NatsServerStartError keeps: its last lines say why it stopped
 * (a config parse error, a port in use), and a bound keeps a chatty server from bloating the error.
 */
export const NATS_SERVER_STDERR_TAIL = 4096;

/**
 * nats-server was found but did not start: it exited before it was ready, did not get ready in
 * time, could not be spawned, or its temp dir could not be prepared. By the time this is thrown
 * the child is killed and reaped, and startNatsServer has removed the temp dir it made.
 */
export class NatsServerStartError extends Error {
  readonly code = "NATS_SERVER_START";
  override readonly name = "NatsServerStartError";
  /** nats-server's exit code when it exited on its own; undefined when it never ran, was killed by a signal, or was killed by the launcher for not getting ready. */
  readonly exitCode: number | undefined;
  /** The signal that ended it when it was not the launcher's own SIGKILL. */
  readonly signal: NodeJS.Signals | undefined;
  /** The last NATS_SERVER_STDERR_TAIL characters of its stderr; "" when it never ran. */
  readonly stderr: string;
  constructor(
    message: string,
    details: { exitCode?: number | undefined; signal?: NodeJS.Signals | undefined; stderr?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.exitCode = details.exitCode;
    this.signal = details.signal;
    this.stderr = details.stderr ?? "";
  }
}

function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export interface NatsServerHandle {
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** SIGKILL the server (an outage). The store dir is kept so `restart` resumes it. */
  kill(): Promise<void>;
  /** Start again on the same port and store dir. */
  restart(): Promise<void>;
  /** Kill and remove the temp dirs. */
  stop(): Promise<void>;
  readonly running: boolean;
}

function runs(bin: string): boolean {
  const r = spawnSync(bin, ["--version"], { stdio: "ignore" });
  return r.status === 0;
}

/**
 * The nats-server binary to run: `bin` if given and it runs; otherwise `nats-server` from PATH,
 * else the first of NATS_SERVER_FALLBACKS that runs. Undefined when none does.
 */
export function findNatsServer(bin?: string): string | undefined {
  return (bin !== undefined ? [bin] : ["nats-server", ...NATS_SERVER_FALLBACKS]).find(runs);
}

/** Whether findNatsServer(bin) finds one. */
export function natsServerAvailable(bin?: string): boolean {
  return findNatsServer(bin) !== undefined;
}

interface Launched {
  proc: ChildProcess;
  port: number;
}

/** How long to wait for a killed or exited child to be reaped and its stderr drained. */
const REAP_MS = 2000;

async function launch(bin: string, port: number, storeDir: string, portsDir: string, configFile: string | undefined): Promise<Launched> {
  const args = [...(configFile !== undefined ? ["-c", configFile] : []), "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir, "--ports_file_dir", portsDir];
  let proc: ChildProcess;
  try {
    proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    throw new NatsServerStartError(`nats-server (${bin}) could not be spawned: ${describeError(e)}`, {}, { cause: e });
  }
  let stderr = "";
  // Decode as a stream so a multi-byte character split across chunks is not mangled.
  proc.stderr?.setEncoding("utf8");
  proc.stderr?.on("data", (d: string) => {
    stderr = (stderr + d).slice(-NATS_SERVER_STDERR_TAIL);
  });
  // Without a listener, a failed spawn (EACCES, EAGAIN) is an uncaught exception, not an error we can throw.
  let spawnError: Error | undefined;
  proc.on("error", (e) => (spawnError ??= e));
  // 'close', not 'exit': it comes once stderr is drained, so the error carries the server's last words.
  // Bounded, so a grandchild holding stderr open cannot hang a failed start.
  const closed = new Promise<void>((resolve) => proc.once("close", () => resolve()));
  const reaped = (): Promise<unknown> => Promise.race([closed, sleep(REAP_MS, undefined, { ref: false })]);
  const ended = (): boolean => proc.exitCode !== null || proc.signalCode !== null;

  const portsFile = `nats-server_${proc.pid ?? 0}.ports`;
  for (let i = 0; i < 200; i++) {
    if (spawnError !== undefined) {
      proc.kill("SIGKILL");
      await reaped();
      throw new NatsServerStartError(`nats-server (${bin}) could not be spawned: ${spawnError.message}`, { stderr }, { cause: spawnError });
    }
    if (ended()) {
      await reaped();
      const how = proc.exitCode !== null ? `code ${proc.exitCode}` : `signal ${String(proc.signalCode)}`;
      throw new NatsServerStartError(`nats-server exited (${how}) before it was ready: ${stderr}`, {
        exitCode: proc.exitCode ?? undefined,
        signal: proc.signalCode ?? undefined,
        stderr,
      });
    }
    try {
      const files = await readdir(portsDir);
      if (files.includes(portsFile)) {
        const raw = JSON.parse(await readFile(join(portsDir, portsFile), "utf8")) as { nats?: string[] };
        const first = raw.nats?.[0];
        if (first) {
          const p = Number(new URL(first).port);
          // JetStream takes a moment after the client port opens.
          if (stderr.includes("Server is ready") || i > 20) return { proc, port: p };
        }
      }
    } catch {
      // not written yet
    }
    await sleep(25);
  }
  // Reaped before throwing, so a retry on the same port does not race the old server for it.
  proc.kill("SIGKILL");
  await reaped();
  throw new NatsServerStartError(`nats-server did not start within ${(200 * 25) / 1000} s: ${stderr}`, { stderr });
}

/**
 * Start nats-server (opts.bin, else as findNatsServer looks for it), with `opts.config` as its
 * configuration file's text when given (users and permissions, say; address, port and store
 * stay the launcher's). Throws NatsServerNotFoundError when there is none to run, and
 * NatsServerStartError when it does not start; either way nothing is left running or on disk.
 */
export async function startNatsServer(opts: { bin?: string; config?: string } = {}): Promise<NatsServerHandle> {
  const bin = findNatsServer(opts.bin);
  if (bin === undefined) throw new NatsServerNotFoundError(opts.bin !== undefined ? [opts.bin] : undefined);
  const root = await mkdtemp(join(tmpdir(), "failclosed-nats-"));
  const storeDir = join(root, "store");
  const portsDir = join(root, "ports");
  const configFile = opts.config !== undefined ? join(root, "nats.conf") : undefined;
  let current: Launched | undefined;
  try {
    await mkdir(portsDir, { recursive: true });
    if (configFile !== undefined) await writeFile(configFile, opts.config ?? "");
    current = await launch(bin, -1, storeDir, portsDir, configFile);
  } catch (e) {
    // A failed start leaves nothing behind: launch has killed and reaped its child, and the temp
    // dir goes too, config text included (it may hold users' passwords). The start failure is what
    // the caller needs, so a dir that will not go does not replace it.
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
    throw e instanceof NatsServerStartError ? e : new NatsServerStartError(`nats-server's temp dir ${root} could not be prepared: ${describeError(e)}`, {}, { cause: e });
  }
  const port = current.port;

  const killProc = async (): Promise<void> => {
    const c = current;
    current = undefined;
    if (!c || c.proc.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => c.proc.once("exit", () => resolve()));
    c.proc.kill("SIGKILL");
    await gone;
  };

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get running() {
      return current !== undefined;
    },
    kill: killProc,
    async restart() {
      await killProc();
      await rm(portsDir, { recursive: true, force: true });
      await mkdir(portsDir, { recursive: true });
      // The port may sit in TIME_WAIT briefly; retry a few times.
      let lastErr: unknown;
      for (let i = 0; i < 20; i++) {
        try {
          current = await launch(bin, port, storeDir, portsDir, configFile);
          return;
        } catch (e) {
          lastErr = e;
          await sleep(100);
        }
      }
      // launch throws only NatsServerStartError; the wrap keeps that promise if it ever does not.
      // The temp dir stays: the handle still owns it, and stop() removes it.
      throw lastErr instanceof NatsServerStartError ? lastErr : new NatsServerStartError(`nats-server did not restart on port ${port}: ${describeError(lastErr)}`, {}, { cause: lastErr });
    },
    async stop() {
      await killProc();
      await rm(root, { recursive: true, force: true });
    },
  };
}
