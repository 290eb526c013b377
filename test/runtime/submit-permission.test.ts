// A submit the server refuses for want of publish permission never reaches the stream: a
// definitive deny, not "unknown". Runs its own nats-server, with users.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { signRequest } from "../../src/core/artifacts.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
let server: NatsServerHandle;
let admin: NatsConnection;
let restricted: NatsConnection;

beforeAll(async () => {
  // "agent" may do everything but submit tasks.
  server = await startNatsServer({
    config: `authorization {\n  users = [\n    { user: admin, password: admin }\n    { user: agent, password: agent, permissions: { publish: { deny: ["${SUBJECTS.taskSubmit}"] } } }\n  ]\n}\n`,
  });
  admin = await connect({ servers: server.url, user: "admin", pass: "admin" });
  await ensureBus(admin);
  restricted = await connect({ servers: server.url, user: "agent", pass: "agent" });
});

afterAll(async () => {
  await restricted?.close().catch(() => undefined);
  await admin?.close().catch(() => undefined);
  await server?.stop();
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
