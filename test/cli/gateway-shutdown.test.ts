// SIGTERM while an allowed task is executing: the handler (one that does not watch ctx.signal,
// like most real I/O) runs to completion within the stop grace, and the audit log records its
// outcome before the gateway says "stopped" and exits.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { exportJsonl } from "../../src/audit/log-source.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { startGatewayProcess } from "./gateway-process.ts";


let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "failclosed-gw-"));
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

it("an executing task's outcome is in the audit log after a graceful stop", async () => {
  const started = join(dir, "started");
  const done = join(dir, "done");
  const mod = join(dir, "slow-actions.mjs");
  await writeFile(
    mod,
    `import { writeFileSync } from "node:fs";
export const actions = {
  read: async () => {
    writeFileSync(${JSON.stringify(started)}, "");
    await new Promise((r) => setTimeout(r, 8000));
    writeFileSync(${JSON.stringify(done)}, "");
    return { paid: true };
  },
};
`,
  );
  const authKey = namedKey("r4-authority");
  const authority = await Authority.connect({ natsUrl: server.url, key: authKey });
  await authority.publishPolicy(DEFAULT_POLICY);
  await authority.startHeartbeats(500);
  const data = join(dir, "gw");
  const { proc, logs, exited } = await startGatewayProcess(["--nats", server.url, "--data", data, "--id", "gw-r4", "--authority", authKey.keyId, "--actions", mod]);
  expect(logs()).toContain("started on");

  // The service makes its own key: outcomes are taken unsigned here (what is tested is the service).
  const rt = await Runtime.connect({ natsUrl: server.url, outcomeTimeoutMs: 20_000, acceptUnsignedOutcomes: true });
  const agent = namedKey("r4-agent");
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await authority.grant({
    taskId,
    holder: agent.keyId,
    scope: { actions: ["read"], resources: ["reports/"], constraints: {} },
    validity: { notBefore: now - 1000, expiresAt: now + 60_000 },
    nonce: namedNonce(`r4-${taskId}`),
    attribution: { initiator: "shutdown-test", reason: "shutdown" },
  });
  const outcome = rt.spawn({ agent, action: "read", resource: "reports/q1", args: {}, chain: [artifact], taskId }).outcome;
  for (let i = 0; i < 200 && !existsSync(started); i++) await new Promise((r) => setTimeout(r, 50));
  expect(existsSync(started), logs()).toBe(true);

  proc.kill("SIGTERM");
  expect(await exited).toBe(0);
  void outcome.catch(() => undefined);
  await rt.close();
  await authority.close();

  // The side effect happened (the process stayed alive until the handler finished)…
  expect(existsSync(done), `handler did not finish; logs:\n${logs()}`).toBe(true);
  // …so the log must say so.
  const backend = await LevelBackend.open(join(data, "audit"));
  const jsonl = await exportJsonl(backend);
  await backend.close();
  const records = jsonl.split("\n").filter((l) => l.includes(taskId));
  const types = records.map((l) => (JSON.parse(l) as { type?: string; record?: { type?: string } }).type ?? (JSON.parse(l) as { record?: { type?: string } }).record?.type);
  expect(types, `records for ${taskId}:\n${records.join("\n")}\nlogs:\n${logs()}`).toContain("outcome");
}, 60_000);
