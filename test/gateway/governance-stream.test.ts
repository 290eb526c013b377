// The governance stream keeps every revocation and each authority's latest heartbeat: an
// authority deletes its own previous heartbeat by sequence once the next lands, so the stream
// does not grow by one per interval forever (86,400 a day at 1 s) for every starting gateway to
// read through.
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

it("keeps each authority's latest heartbeat and every revocation", async () => {
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    await ensureBus(nc);
    const authority = await Authority.connect({ nc, key: namedKey("authority") });
    const other = await Authority.connect({ nc, key: namedKey("authority-b") });
    await other.heartbeat();
    await authority.publishPolicy(DEFAULT_POLICY);
    for (let i = 0; i < 20; i++) await authority.heartbeat();
    await authority.revoke({ type: "key", keyId: namedKey("agent-1").keyId }, "one");
    await authority.revoke({ type: "key", keyId: namedKey("agent-2").keyId }, "two");
    await authority.heartbeat();
    const info = await jsm.streams.info(STREAMS.gov, { subjects_filter: ">" });
    // One heartbeat each for the two authorities, both revocations.
    expect(info.state.subjects).toEqual({ [SUBJECTS.heartbeat]: 2, [SUBJECTS.revocation]: 2 });
    expect(authority.lastHeartbeatAt).toBeDefined();
    await authority.close();
  } finally {
    await nc.close();
  }
});
