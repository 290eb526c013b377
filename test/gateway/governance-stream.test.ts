// The governance stream keeps every revocation and only the latest heartbeat: the authority
// publishes each heartbeat as a rollup of its subject, so the stream does not grow by one per
// interval forever (86,400 a day at 1 s) for every starting gateway to read through. A stream
// created before rollups were allowed is updated by the next ensureBus.
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { namedKey } from "../../src/testkit/world.ts";

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server.stop();
});

it("keeps one heartbeat and every revocation, also on a stream made before rollups", async () => {
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    // The stream as an older release made it: no rollups.
    await jsm.streams.add({ name: STREAMS.gov, subjects: [SUBJECTS.revocation, SUBJECTS.heartbeat] });
    await ensureBus(nc);
    expect((await jsm.streams.info(STREAMS.gov)).config.allow_rollup_hdrs).toBe(true);
    const authority = await Authority.connect({ nc, key: namedKey("authority") });
    await authority.publishPolicy(DEFAULT_POLICY);
    for (let i = 0; i < 20; i++) await authority.heartbeat();
    await authority.revoke({ type: "key", keyId: namedKey("agent-1").keyId }, "one");
    await authority.revoke({ type: "key", keyId: namedKey("agent-2").keyId }, "two");
    await authority.heartbeat();
    const info = await jsm.streams.info(STREAMS.gov, { subjects_filter: ">" });
    expect(info.state.subjects).toEqual({ [SUBJECTS.heartbeat]: 1, [SUBJECTS.revocation]: 2 });
    expect(authority.lastHeartbeatAt).toBeDefined();
    await authority.close();
  } finally {
    await nc.close();
  }
});
