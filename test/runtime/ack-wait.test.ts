// The shared task consumer's ack wait (how soon a task held by a crashed gateway goes to
// another): Runtime.connect on a fresh bus makes it with its gateway's taskAckWaitMs, and
// ensureBus says so (onWarning) when the consumer exists with another ack wait than asked for.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { expect, it } from "vitest";
import { startNatsServer } from "../../src/infra/nats-launcher.ts";
import { STREAMS, TASK_CONSUMER } from "../../src/nats/contract.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { namedKey } from "../../src/testkit/world.ts";

it("Runtime.connect on a fresh bus: the task consumer gets the gateway's taskAckWaitMs; asked for another later, ensureBus warns and changes nothing", { timeout: 60_000 }, async () => {
  const server = await startNatsServer();
  const dir = await mkdtemp(join(tmpdir(), "fc-ackwait-"));
  let rt: Runtime | undefined;
  const nc = await connect({ servers: server.url });
  try {
    const gatewayWarnings: string[] = [];
    rt = await Runtime.connect({
      natsUrl: server.url,
      dataDir: join(dir, "audit"),
      gateway: { gatewayId: "rt-gw", gatewayKey: namedKey("gateway-1"), authorities: [namedKey("authority").keyId], taskAckWaitMs: 5_000, governanceWaitMs: 100, onWarning: (w) => gatewayWarnings.push(w) },
    });
    const jsm = await jetstreamManager(rt.nc);
    const ackWaitMs = async (): Promise<number> => ((await jsm.consumers.info(STREAMS.tasks, TASK_CONSUMER)).config.ack_wait ?? 0) / 1e6;
    expect(await ackWaitMs()).toBe(5_000);
    // The runtime's gateway asked for what the consumer has: nothing to say.
    expect(gatewayWarnings.filter((w) => w.includes("ack wait"))).toEqual([]);

    const warnings: string[] = [];
    await ensureBus(nc, { taskAckWaitMs: 7_000, onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual([expect.stringMatching(/exists with an ack wait of 5000 ms, not the 7000 ms asked for/)]);
    expect(await ackWaitMs()).toBe(5_000);
    // Not asked for any: nothing to say.
    await ensureBus(nc, { onWarning: (w) => warnings.push(w) });
    expect(warnings).toHaveLength(1);
  } finally {
    await rt?.close().catch(() => undefined);
    await nc.close().catch(() => undefined);
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
