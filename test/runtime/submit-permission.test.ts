// A submit the server refuses for want of publish permission never reaches the stream: a
// definitive deny, not "unknown". Runs its own nats-server with users (the launcher has none).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { findNatsServer } from "../../src/infra/nats-launcher.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
let dir: string;
let proc: ChildProcess | undefined;
let url: string;
let admin: NatsConnection;
let restricted: NatsConnection;

/** A port free a moment ago (the launcher's `-p -1` has no config file; this server needs one). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a !== null ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

beforeAll(async () => {
  const bin = findNatsServer();
  if (bin === undefined) throw new Error("nats-server not found");
  dir = await mkdtemp(join(tmpdir(), "failclosed-perm-"));
  const conf = join(dir, "nats.conf");
  // "agent" may do everything but submit tasks.
  await writeFile(
    conf,
    `authorization {\n  users = [\n    { user: admin, password: admin }\n    { user: agent, password: agent, permissions: { publish: { deny: ["${SUBJECTS.taskSubmit}"] } } }\n  ]\n}\n`,
  );
  const port = await freePort();
  url = `nats://127.0.0.1:${port}`;
  proc = spawn(bin, ["-c", conf, "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "store")], { stdio: "ignore" });
  admin = await connect({ servers: url, user: "admin", pass: "admin", waitOnFirstConnect: true, maxReconnectAttempts: 200, reconnectTimeWait: 50 });
  await ensureBus(admin);
  restricted = await connect({ servers: url, user: "agent", pass: "agent" });
});

afterAll(async () => {
  await restricted?.close().catch(() => undefined);
  await admin?.close().catch(() => undefined);
  if (proc && proc.exitCode === null) {
    const gone = new Promise<void>((r) => proc!.once("exit", () => r()));
    proc.kill("SIGKILL");
    await gone;
  }
  await rm(dir, { recursive: true, force: true });
});

it("a submit refused by a publish permission is denied, nothing stored", { timeout: 60_000 }, async () => {
  const authority = await Authority.connect({ nc: admin, key: namedKey("authority") });
  await authority.publishPolicy(DEFAULT_POLICY);
  const taskId = "perm-1";
  const { artifact } = await authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 }, nonce: namedNonce("perm-1"), attribution: { initiator: "t", reason: "r" } });
  const jsm = await jetstreamManager(admin);
  const before = (await jsm.streams.info(STREAMS.tasks)).state.last_seq;
  const now = Date.now();
  const args = { amount: 1 };
  const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/t", args, artifact, createdAt: now, notAfter: now + 5_000 });
  const out = await submitTask(restricted, { request, args, chain: [artifact], timeoutMs: 5_000, skewMs: 500 });
  expect(out).toMatchObject({ taskId, gatewayId: "client", verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"], status: "denied" });
  expect(out.detail).toMatch(/may not publish to failclosed\.task\.submit/);
  expect((await jsm.streams.info(STREAMS.tasks)).state.last_seq).toBe(before);
  await authority.close();
});
