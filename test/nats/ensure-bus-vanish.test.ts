// Found while chasing a rare CI failure: a gateway (or agent) whose start overlapped an operator
// deleting and remaking the governance stream rejected with StreamNotFoundError: ensureBus had
// found the stream (or made it) and then read its guards from a stream no longer there. It failed
// closed, but a start that could have come up on the remade stream did not. ensureBus now goes
// through its steps again when a stream it relies on vanishes between two of them.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { STREAMS } from "../../src/nats/contract.ts";

let server: NatsServerHandle;
let nc: NatsConnection;
let spy: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  spy = await connect({ servers: server.url });
  await ensureBus(nc, { guards: "required" });
});

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  await spy?.close().catch(() => undefined);
  await server?.stop();
});

it("the governance stream deleted while ensureBus runs: it comes up on a stream made again, with its guards, every time", async () => {
  const jsm = await jetstreamManager(spy);
  const rounds = Number(process.env.FC_ENSURE_VANISH_ROUNDS ?? 40);
  const failures: string[] = [];
  for (let i = 0; i < rounds; i++) {
    // The spy deletes the stream as soon as it sees the i-th round's first read of it, so the
    // delete lands between ensureBus's steps on that stream (or, some rounds, just after them).
    const sub = spy.subscribe(`$JS.API.STREAM.INFO.${STREAMS.gov}`, { max: 1 });
    const deleted = (async () => {
      for await (const _m of sub) await jsm.streams.delete(STREAMS.gov).catch(() => undefined);
    })();
    await spy.flush();
    const r = await ensureBus(nc, { guards: "required" }).then(
      () => "ok",
      (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)),
    );
    await deleted;
    if (r !== "ok") failures.push(`round ${i}: ${r}`);
    // Whatever the interleaving, the next call leaves the stream there with its guards.
    await ensureBus(nc, { guards: "required" });
    const { config } = await jsm.streams.info(STREAMS.gov);
    expect(config.deny_purge).toBe(true);
    expect(config.allow_rollup_hdrs).toBe(false);
  }
  expect(failures).toEqual([]);
}, 120_000);
