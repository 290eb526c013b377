// A Runtime.connect that fails after its NATS connection is open closes that connection and
// rethrows the original error: the process it ran in can still exit on its own.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const TSX = import.meta.resolve("tsx");
const SCRIPT = fileURLToPath(new URL("./connect-failure.script.ts", import.meta.url));

it("a failed Runtime.connect (Gateway.start or ensureBus throws) leaves no connection open", { timeout: 90_000 }, async () => {
  // The timeout only stops a leaking script from hanging the suite; the exit code is the check.
  const r = await new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => {
    const p = execFile(process.execPath, ["--import", TSX, SCRIPT], { timeout: 60_000, killSignal: "SIGKILL" }, (_err, stdout, stderr) => resolve({ code: p.exitCode, signal: p.signalCode, stdout, stderr }));
  });
  const lines = r.stdout.trim().split("\n");
  const errors = JSON.parse(lines[lines.length - 1] ?? "[]") as { name: string; message: string }[];
  // The caller gets the original errors, not ones from the cleanup.
  expect(errors).toHaveLength(2);
  expect(errors[0]).toMatchObject({ name: "JetStreamApiError", message: "subjects overlap with an existing stream" });
  expect(errors[1]).toMatchObject({ name: "TypeError", message: "gatewayId must be a subject-safe token" });
  expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: "" });
});
