// Authority.publishPolicy refuses Cedar that does not parse: every gateway would activate it
// and from then on allow nothing. The good policy stays active.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { generateKeyPair } from "../../src/crypto/keys.ts";
import { Gateway } from "../../src/gateway/gateway.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";

let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-pol-"));
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

it("a policy whose Cedar does not parse is refused before it replaces the active one", async () => {
  const key = generateKeyPair();
  const authority = await Authority.connect({ natsUrl: server.url, key });
  const gw = await Gateway.start({ natsUrl: server.url, gatewayId: "gw-r5", gatewayKey: generateKeyPair(), audit: join(dir, "audit"), authorities: [key.keyId], stopGraceMs: 500 });
  try {
    const good = await authority.publishPolicy(DEFAULT_POLICY);
    for (let i = 0; i < 100 && gw.ledger.state.policy?.digest !== good; i++) await new Promise((r) => setTimeout(r, 50));
    expect(gw.ledger.state.policy?.digest).toBe(good);
    const typo = { ...DEFAULT_POLICY, version: "2", cedar: DEFAULT_POLICY.cedar.replace(";", "") + "\npermit(principal, action in [" };
    let refused: unknown;
    try {
      await authority.publishPolicy(typo);
    } catch (e) {
      refused = e;
    }
    await new Promise((r) => setTimeout(r, 1_000));
    // The good policy must still be the active one on the gateway.
    expect(refused).toBeInstanceOf(TypeError);
    expect(gw.ledger.state.policy?.digest, `publishPolicy ${refused === undefined ? "accepted the unparsable policy" : `threw ${refused instanceof Error ? refused.message : "?"}`}`).toBe(good);
  } finally {
    await gw.stop();
    await authority.close();
  }
});
