// A witness proves a gateway's log across a rotation of its checkpoint key: the gateway signs
// proofs with its current key, also for two checkpoints its old key signed, and the witness
// takes a proof from any key that signed one of the checkpoints it holds for that gateway. (At
// first it took only a signer of the two checkpoints compared, and a witness that had not
// proved the old ones before the rotation was stuck below them for good.)
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AuditStore } from "../../src/audit/store.ts";
import { proveChain } from "../../src/audit/witness.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { requestConsistencyProof, serveConsistencyProofs } from "../../src/nats/proof-service.ts";
import { outcomeEntry, seededKey, steppingClock, tempDir } from "./support.ts";

const K1 = seededKey(31);
const K2 = seededKey(32);
const ID = "gw-rot";

let server: NatsServerHandle;
let nc: NatsConnection;
const t = tempDir("fc-rev-rot-");

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  t.cleanup();
});

it("a fresh witness proves a gateway's log across a checkpoint-key rotation", async () => {
  const dir = join(t.dir, "db");
  const clock = steppingClock();
  // Era 1: key K1, two checkpoints.
  let s = await AuditStore.open(dir, { origin: ID, gatewayKey: K1, clock, checkpointEvery: 0 });
  for (let i = 0; i < 3; i++) await s.append(outcomeEntry(i));
  await s.checkpoint();
  for (let i = 3; i < 6; i++) await s.append(outcomeEntry(i));
  await s.checkpoint();
  await s.close();
  // Operator rotates the gateway key (same data dir, same id). Era 2: key K2.
  s = await AuditStore.open(dir, { origin: ID, gatewayKey: K2, clock, checkpointEvery: 0 });
  for (let i = 6; i < 9; i++) await s.append(outcomeEntry(i));
  await s.checkpoint();
  const sub = serveConsistencyProofs(nc, ID, s, { perSec: 1000, now: () => performance.now(), gatewayKey: K2 });
  try {
    const cps = await s.checkpoints();
    expect(cps.map((c) => c.payload.size)).toEqual([3, 7, 11]);
    // A witness trusting both keys, holding all three for the first time.
    const r = await proveChain(cps, 0, new Set(cps.map((c) => c.payload.size)), (m, n, signers) => requestConsistencyProof(nc, ID, m, n, 2_000, signers), [K1.keyId, K2.keyId]);
    expect(r.findings).toEqual([]);
    expect(r.stopped).toBeUndefined();
    expect(r.consistentThrough).toBe(11);
  } finally {
    sub.unsubscribe();
    await s.close();
  }
});
