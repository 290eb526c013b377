// `failclosed authority` exits after SIGTERM, also when the bus went away meanwhile (a
// connection that is down never drains: it is closed after a bounded wait).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/cli/main.ts";
import type { CliIo } from "../../src/cli/io.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { MAIN, TSX } from "./gateway-process.ts";

const quiet: CliIo = { out: () => undefined, err: () => undefined, progressTTY: false, setExitCode: () => undefined };

let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-auth-"));
  expect(await runCli(["keys", "generate", "--out", join(dir, "authority.json")], quiet)).toBe(0);
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

function startAuthority(): { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  let err = "";
  const child = spawn(process.execPath, ["--import", TSX, MAIN, "authority", "--nats", server.url, "--key", join(dir, "authority.json"), "--heartbeat-ms", "200"], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr.on("data", (d: Buffer) => void (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, stderr: () => err, exited };
}

async function waitFor(pred: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

describe("authority command and SIGTERM", () => {
  it("exits promptly on SIGTERM with the bus up", async () => {
    const a = startAuthority();
    await waitFor(() => a.stderr().includes("until SIGINT/SIGTERM"), 20_000);
    expect(a.stderr()).toContain("until SIGINT/SIGTERM");
    a.child.kill("SIGTERM");
    const code = await Promise.race([a.exited, new Promise<string>((r) => setTimeout(() => r("still running"), 10_000))]);
    if (code === "still running") a.child.kill("SIGKILL");
    expect(code).toBe(0);
  });

  it("exits on SIGTERM after the bus went away (the operator's stop must work when NATS is down)", async () => {
    const a = startAuthority();
    await waitFor(() => a.stderr().includes("until SIGINT/SIGTERM"), 20_000);
    expect(a.stderr()).toContain("until SIGINT/SIGTERM");
    await server.kill();
    await new Promise((r) => setTimeout(r, 1_500));
    a.child.kill("SIGTERM");
    const code = await Promise.race([a.exited, new Promise<string>((r) => setTimeout(() => r("still running"), 60_000))]);
    if (code === "still running") a.child.kill("SIGKILL");
    await server.restart();
    expect(code, `stderr:\n${a.stderr()}`).not.toBe("still running");
  });
});
