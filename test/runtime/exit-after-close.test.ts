// A process whose authorities and gateways are closed must exit on its own, and print nothing it
// did not mean to. nats.js's KV history read (an ordered push consumer) left its heartbeat
// monitor running when the connection closed under a read in flight: every 5 s it tried to make
// the consumer again on the closed connection, printed the ClosedConnectionError to stdout, and
// kept the process alive for good (found by an operator's review: `npm start -- --json` printed
// its report, then stack traces, and never exited, 1 run in 3).
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";

const CHILD = fileURLToPath(new URL("./fixtures/close-then-exit.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");
let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-exit-"));
});
afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

it("closed authorities and a stopped gateway let the process exit, with nothing on stdout", async () => {
  const started = performance.now();
  const r = await new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => {
    // Past the kill: the process did not exit once everything was closed.
    const p = execFile(process.execPath, ["--import", TSX, CHILD, server.url, join(dir, "gw")], { timeout: 45_000, killSignal: "SIGKILL" }, (err, stdout, stderr) => resolve({ code: p.exitCode, signal: err?.signal ?? null, stdout, stderr }));
  });
  expect(r.stderr).toContain("closed");
  expect({ signal: r.signal, code: r.code }).toEqual({ signal: null, code: 0 });
  expect(r.stdout).toBe("");
  expect(performance.now() - started).toBeLessThan(40_000);
}, 60_000);
