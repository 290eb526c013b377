// A process that uses a gateway exits on its own once everything is stopped, whatever went
// wrong: a gateway whose start failed part way releases its NATS connection (which would
// reconnect forever), its loops and its log; a handler that never settles does not hold the
// process open for its timeout after stop(). Each case runs in a child (exit-child.ts).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";

const CHILD = fileURLToPath(new URL("./exit-child.ts", import.meta.url));
let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-exits-"));
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

async function runChild(mode: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), CHILD, mode, server.url, join(dir, mode)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  // Generous: each child exits within seconds; one that never exits is killed here.
  const killer = setTimeout(() => child.kill("SIGKILL"), 40_000);
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  clearTimeout(killer);
  return { code, out };
}

it("a gateway that fails to start (audit dir in use) leaves nothing behind", async () => {
  const { code, out } = await runChild("failed-start");
  expect(out).toMatch(/second start failed/);
  expect(out).toMatch(/stopped/);
  expect(code).toBe(0);
}, 60_000);

it("a handler that never settles does not keep the process alive after stop()", async () => {
  const { code, out } = await runChild("hung-handler");
  expect(out).toMatch(/stopped/);
  expect(code).toBe(0);
}, 60_000);
