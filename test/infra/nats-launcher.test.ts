import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";

describe("nats-server test launcher", () => {
  let server: NatsServerHandle;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server.stop();
  });

  it("serves core publish/subscribe on a random port", async () => {
    expect(server.port).toBeGreaterThan(0);
    const nc = await connect({ servers: server.url });
    const sub = nc.subscribe("probe.echo", { max: 1 });
    nc.publish("probe.echo", "hello");
    const got: string[] = [];
    for await (const m of sub) got.push(m.string());
    expect(got).toEqual(["hello"]);
    await nc.close();
  });

  it("has JetStream with a store that survives kill and restart on the same port", async () => {
    let nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "PROBE", subjects: ["probe.js.>"] });
    await jetstream(nc).publish("probe.js.a", "persisted");
    await nc.close();

    await server.kill();
    expect(server.running).toBe(false);
    await expect(connect({ servers: server.url, reconnect: false, timeout: 500 })).rejects.toThrow();

    await server.restart();
    nc = await connect({ servers: server.url });
    const info = await (await jetstreamManager(nc)).streams.info("PROBE");
    expect(info.state.messages).toBe(1);
    await nc.close();
  });
});
