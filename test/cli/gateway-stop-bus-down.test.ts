// Gateway.stop() returns when the bus is gone (SIGTERM during a NATS outage).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { generateKeyPair } from "../../src/crypto/keys.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";

let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-gwstop-"));
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

it("stop() returns within the grace + a few seconds when NATS went down", async () => {
  const gw = await Gateway.start({ natsUrl: server.url, gatewayId: "gw-r5", gatewayKey: generateKeyPair(), audit: join(dir, "audit"), authorities: [generateKeyPair().keyId], stopGraceMs: 1_000 });
  await server.kill();
  await new Promise((r) => setTimeout(r, 1_500));
  const t0 = Date.now();
  const r = await Promise.race([gw.stop().then(() => "stopped"), new Promise((res) => setTimeout(() => res("still stopping"), 20_000))]);
  expect(r, `after ${Date.now() - t0} ms`).toBe("stopped");
}, 40_000);
