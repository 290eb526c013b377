// readSubject reads what a stream holds on one subject, and leaves no consumer behind: an
// authority reads its policy bucket this way at every heartbeat, and each read's ordered consumer
// stayed on the server for its 5 minutes of inactivity (some 300 at a 1 s heartbeat; found by review).
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { readSubject } from "../../src/nats/read-subject.ts";

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

it("reads every message on the subject, in order, and deletes its consumer", async () => {
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "RS_TEST", subjects: ["rs.>"] });
    const js = jetstream(nc);
    for (const v of ["a", "b", "c"]) await js.publish("rs.one", v);
    await js.publish("rs.other", "x");
    const seen: string[] = [];
    for (let round = 0; round < 3; round++) {
      seen.length = 0;
      expect(await readSubject(js, jsm, "RS_TEST", "rs.one", 2_000, (m) => seen.push(m.string()))).toBe(3);
      expect(seen).toEqual(["a", "b", "c"]);
    }
    expect(await jsm.consumers.list("RS_TEST").next()).toEqual([]);
  } finally {
    await nc.close();
  }
}, 30_000);
