// stopWatchWith: a KV watch is stopped when the connection closes under it (nats.js leaves its
// consumer's heartbeat monitor running otherwise: exit-after-close.test.ts), and at once when its
// signal has already aborted (a listener added after the abort never fires).
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { stopWatchWith } from "../../src/nats/watch-guard.ts";

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

async function watchEnds(w: AsyncIterable<unknown>, ms: number): Promise<boolean> {
  const ended = (async () => {
    for await (const _ of w) {
      // drained
    }
    return true;
  })();
  return Promise.race([ended, new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

it("a watch ends when its connection closes, and at once for a signal already aborted", async () => {
  const nc = await connect({ servers: server.url });
  const kv = await new Kvm(nc).create("watch_guard_test");
  const closing = await kv.watch({ key: "k" });
  stopWatchWith(closing, nc, new AbortController().signal);
  const aborted = new AbortController();
  aborted.abort();
  const early = await kv.watch({ key: "k" });
  stopWatchWith(early, nc, aborted.signal);
  expect(await watchEnds(early, 2_000)).toBe(true);
  const ends = watchEnds(closing, 5_000);
  await nc.close();
  expect(await ends).toBe(true);
}, 30_000);
