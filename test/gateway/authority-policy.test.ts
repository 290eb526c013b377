// Authority.publishPolicy refuses a document every gateway would refuse, rather than reporting
// success and binding every later grant to a digest no gateway holds.
import { afterAll, beforeAll, expect, it } from "vitest";
import { tryParseStrict } from "../../src/canonical/strict-parse.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { MAX_MESSAGE_BYTES } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import type { PolicyDocument } from "../../src/policy/policy-document.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { namedKey } from "../../src/testkit/world.ts";

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server.stop();
});

it("a policy larger than gateways accept is refused at publish", async () => {
  const authority = await Authority.connect({ natsUrl: server.url, key: namedKey("r4-policy-authority") });
  try {
    const big: PolicyDocument = { ...DEFAULT_POLICY, version: "2", cedar: `${DEFAULT_POLICY.cedar}\n// ${"x".repeat(MAX_MESSAGE_BYTES)}\n` };
    const value = JSON.stringify({ digest: "d", document: big });
    // What a gateway does with the KV entry (src/gateway/gateway.ts #applyPolicy):
    expect(tryParseStrict(new TextEncoder().encode(value), { maxBytes: MAX_MESSAGE_BYTES }).ok).toBe(false);
    await expect(authority.publishPolicy(big), "publishPolicy accepted a policy that every gateway refuses").rejects.toThrow();
  } finally {
    await authority.close();
  }
});
