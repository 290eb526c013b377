// Starts a real nats-server (from PATH, else /usr/sbin or /usr/local/sbin) on a random port with
// a temp JetStream store, as nats.js's own test launcher (nst/src/launcher.ts) does: `-p -1`,
// then read the ports file it writes.
// Used by every test suite that needs the bus, and by the simulator when no $NATS_URL answers.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
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

async function launch(bin: string, port: number, storeDir: string, portsDir: string, configFile: string | undefined): Promise<Launched> {
  const args = [...(configFile !== undefined ? ["-c", configFile] : []), "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir, "--ports_file_dir", portsDir];
  const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  let exitCode: number | null | undefined;
  void exited.then((c) => (exitCode = c));
  const portsFile = `nats-server_${proc.pid ?? 0}.ports`;
  for (let i = 0; i < 200; i++) {
    if (exitCode !== undefined) throw new Error(`nats-server exited (${String(exitCode)}): ${stderr}`);
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
  proc.kill("SIGKILL");
  throw new Error(`nats-server did not start: ${stderr}`);
}

/**
 * Start nats-server (opts.bin, else as findNatsServer looks for it), with `opts.config` as its
 * configuration file's text when given (users and permissions, say; address, port and store
 * stay the launcher's). Throws NatsServerNotFoundError when there is none to run.
 */
export async function startNatsServer(opts: { bin?: string; config?: string } = {}): Promise<NatsServerHandle> {
  const bin = findNatsServer(opts.bin);
  if (bin === undefined) throw new NatsServerNotFoundError(opts.bin !== undefined ? [opts.bin] : undefined);
  const root = await mkdtemp(join(tmpdir(), "failclosed-nats-"));
  const storeDir = join(root, "store");
  const portsDir = join(root, "ports");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(portsDir, { recursive: true });
  const configFile = opts.config !== undefined ? join(root, "nats.conf") : undefined;
  if (configFile !== undefined) await writeFile(configFile, opts.config ?? "");
  let current: Launched | undefined = await launch(bin, -1, storeDir, portsDir, configFile);
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
      throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
    },
    async stop() {
      await killProc();
      await rm(root, { recursive: true, force: true });
    },
  };
}
