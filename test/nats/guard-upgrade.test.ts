// Upgrading a bus made by a release before the stream guards (deny_purge, deny_delete, no
// rollups): agents and authorities connect without stream-update rights (they only try to set
// the guards); a gateway requires them and refuses to start, saying what to do, until an account
// that may update streams has set them once; after that, nothing needs update rights.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { KV_BUCKETS, STREAMS } from "../../src/nats/contract.ts";
import { ensureBus as oldEnsureBus } from "./old-setup.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { namedKey } from "../../src/testkit/world.ts";

let server: NatsServerHandle;
let admin: NatsConnection;

beforeAll(async () => {
  // "svc" may do everything but change a stream's configuration (streams are an operator's).
  server = await startNatsServer({
    config: `no_auth_user: svc\nauthorization {\n  users = [\n    { user: admin, password: admin }\n    { user: svc, password: svc, permissions: { publish: { deny: ["$JS.API.STREAM.UPDATE.>"] } } }\n  ]\n}\n`,
  });
  admin = await connect({ servers: server.url, user: "admin", pass: "admin" });
  await oldEnsureBus(admin); // the deployment as the previous release made it
});

afterAll(async () => {
  await admin?.close().catch(() => undefined);
  await server?.stop();
});

const svcUrl = () => server.url; // no_auth_user: svc

it("an agent's Runtime.connect (no gateway) on a previous-release bus, without stream-update rights", async () => {
  let err: unknown;
  const rt = await Runtime.connect({ natsUrl: svcUrl(), gatewayKeys: [namedKey("gateway-1").keyId] }).catch((e: unknown) => ((err = e), undefined));
  await rt?.close();
  expect(err).toBeUndefined();
}, 30_000);

it("Authority.connect on a previous-release bus, without stream-update rights (cannot publish revocations)", async () => {
  let err: unknown;
  const a = await Authority.connect({ natsUrl: svcUrl(), key: namedKey("authority") }).catch((e: unknown) => ((err = e), undefined));
  await a?.close();
  expect(err).toBeUndefined();
}, 30_000);

it("a gateway on that bus, without stream-update rights, refuses to start and says why", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "failclosed-guard-gw-"));
  try {
    const started = Gateway.start({ natsUrl: svcUrl(), gatewayId: "gw-1", gatewayKey: namedKey("gateway-1"), audit: join(dataDir, "gw-1"), authorities: [namedKey("authority").keyId] });
    await expect(started).rejects.toThrow(/could not set deny_purge.*a gateway needs them/);
    await expect(started).rejects.toMatchObject({ name: "BusSetupError", code: "BUS_GUARDS_UNSET" });
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}, 30_000);

it("after an admin hardened the streams, ensureBus needs no update rights (guards read back as set)", async () => {
  await ensureBus(admin);
  const jsm = await jetstreamManager(admin);
  const kv = (await jsm.streams.info(`KV_${KV_BUCKETS.nonces}`)).config;
  const gov = (await jsm.streams.info(STREAMS.gov)).config;
  expect({ deny_purge: kv.deny_purge, deny_delete: kv.deny_delete, allow_rollup_hdrs: kv.allow_rollup_hdrs }).toEqual({ deny_purge: true, deny_delete: true, allow_rollup_hdrs: false });
  expect({ deny_purge: gov.deny_purge, allow_rollup_hdrs: gov.allow_rollup_hdrs }).toEqual({ deny_purge: true, allow_rollup_hdrs: false });
  const svc = await connect({ servers: svcUrl() });
  try {
    await expect(ensureBus(svc)).resolves.toBeDefined();
  } finally {
    await svc.close();
  }
}, 30_000);
