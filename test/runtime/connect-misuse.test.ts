// Found by review (a user's journey through the API): settings that could never work were taken
// silently. Gateway settings without a dataDir ran no gateway; a runtime with no gateway and no
// gatewayKeys took any unsigned "succeeded" on the outcome subject; a mistyped gateway key was
// found only after a gateway had started; spawn of a root task without its task id signed a
// fresh one (denied LINEAGE_BROKEN, after the evidence wait); an artifact every gateway refuses
// (a short nonce, say) was signed and handed out. Each is now a TypeError, before anything
// connects, starts, signs or is published.
import { afterAll, beforeAll, expect, it } from "vitest";
import { delegateArtifact, issueArtifact } from "../../src/core/artifacts.ts";
import { generateKeyPair } from "../../src/crypto/keys.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

// Nothing listens here: a connect that got as far as the network would fail otherwise, and slower.
const NOWHERE = "nats://127.0.0.1:1";

it("gateway settings without dataDir: TypeError, before connecting", async () => {
  await expect(Runtime.connect({ natsUrl: NOWHERE, gatewayKeys: [], gateway: { gatewayId: "gw-1", gatewayKey: generateKeyPair(), authorities: [generateKeyPair().keyId] } })).rejects.toThrow(
    new TypeError("connect: gateway settings need dataDir (the directory of the gateway's audit log); without it no gateway would run"),
  );
});

it("no gateway and no gatewayKeys: TypeError unless acceptUnsignedOutcomes is set, and then it connects", async () => {
  await expect(Runtime.connect({ natsUrl: NOWHERE })).rejects.toThrow(TypeError);
  await expect(Runtime.connect({ natsUrl: NOWHERE })).rejects.toThrow(/needs gatewayKeys .* or acceptUnsignedOutcomes: true/);
  const rt = await Runtime.connect({ natsUrl: server.url, acceptUnsignedOutcomes: true });
  await rt.close();
  const signed = await Runtime.connect({ natsUrl: server.url, gatewayKeys: [namedKey("gateway-1").keyId] });
  await signed.close();
});

it("a gatewayKeys entry that is not a key: TypeError naming it, before connecting", async () => {
  const e = await Runtime.connect({ natsUrl: NOWHERE, gatewayKeys: ["not-a-key"] }).then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(TypeError);
  expect((e as Error).message).toMatch(/^connect: gatewayKeys: /);
  expect((e as Error).cause).toBeDefined();
});

it("spawn of a root task without its task id: TypeError, nothing published", async () => {
  const rt = await Runtime.connect({ natsUrl: server.url, gatewayKeys: [namedKey("gateway-1").keyId] });
  try {
    const authority = namedKey("authority");
    const agent = namedKey("agent-0");
    const now = Date.now();
    const artifact = issueArtifact(authority, {
      holder: agent.keyId,
      scope: DEFAULT_SCOPE,
      validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
      nonce: namedNonce("connect-misuse-root"),
      policy: { id: "p", digest: "A".repeat(43) },
      attribution: { initiator: "t", reason: "misuse" },
    });
    const seen: string[] = [];
    const sub = rt.nc.subscribe("failclosed.>", { callback: (_e, m) => void seen.push(m.subject) });
    await rt.nc.flush();
    expect(() => rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [artifact] })).toThrow(/^spawn: a root task needs the task id its grant names/);
    await rt.nc.flush();
    sub.unsubscribe();
    expect(seen.filter((s) => !s.startsWith("failclosed.gov."))).toEqual([]);
  } finally {
    await rt.close();
  }
});

it("issueArtifact and delegateArtifact refuse an artifact every gateway would refuse as MALFORMED, with the schema's reason", () => {
  const authority = namedKey("authority");
  const agent = namedKey("agent-0");
  const now = Date.now();
  const base = {
    holder: agent.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    policy: { id: "p", digest: "A".repeat(43) },
    attribution: { initiator: "t", reason: "misuse" },
  };
  expect(() => issueArtifact(authority, { ...base, nonce: "n-1" })).toThrow(/^issueArtifact: gateways would refuse this artifact as MALFORMED \(.*nonce/);
  expect(() => issueArtifact(authority, { ...base, holder: "not-a-key", nonce: namedNonce("misuse-holder") })).toThrow(TypeError);
  const root = issueArtifact(authority, { ...base, nonce: namedNonce("misuse-root") });
  expect(() => delegateArtifact(root, agent, { holder: namedKey("agent-1").keyId, scope: DEFAULT_SCOPE, validity: base.validity, nonce: "short", attribution: base.attribution })).toThrow(/^delegate: gateways would refuse this artifact as MALFORMED/);
});
