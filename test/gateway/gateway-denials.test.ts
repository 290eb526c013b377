// Every denial code of DESIGN §3, produced end to end through a real nats-server, a real
// gateway and its LevelDB audit log, each beside a positive control.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { artifactId, delegateArtifact, issueArtifact, originLineage, signRequest } from "../../src/core/artifacts.ts";
import type { ArtifactScope, DenialCode, SignedArtifact } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
const other = namedKey("agent-1");
const rogue = namedKey("rogue-authority");

// Run once with signatures pre-verified on a worker thread (the default on a multi-core
// machine) and once with decide verifying them all inline: the codes must be the same.
for (const verifyWorkers of [1, 0]) describe(`every denial code end to end over NATS (verify workers: ${verifyWorkers})`, () => {
  let h: Harness;
  const executed = new Set<string>();
  beforeAll(async () => {
    h = await startHarness({ gateway: { limits: { maxFeedAgeMs: 2_000 }, verifyWorkers }, heartbeatMs: 300 });
    h.gateways[0]!.registerAction("transfer", ({ taskId }) => {
      executed.add(taskId);
      return { ok: true };
    });
  });
  afterAll(async () => {
    await h.close();
  });

  interface Opts {
    scope?: ArtifactScope;
    validity?: { notBefore: number; expiresAt: number };
    bindings?: SignedArtifact["payload"]["bindings"];
    args?: JsonValue;
    signer?: KeyPair;
    issuer?: KeyPair;
    tamper?: (s: { request: ReturnType<typeof signRequest>; chain: SignedArtifact[] }) => void;
  }

  async function run(o: Opts = {}): Promise<{ taskId: string; codes: DenialCode[]; verdict: string }> {
    const taskId = newTaskId();
    const now = Date.now();
    const issuer = o.issuer ?? h.authority.key;
    const artifact = issueArtifact(issuer, {
      holder: agent.keyId,
      scope: o.scope ?? DEFAULT_SCOPE,
      ...(o.bindings ? { bindings: o.bindings } : {}),
      validity: o.validity ?? { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
      nonce: namedNonce(taskId),
      policy: { id: "failclosed-default", digest: (await import("../../src/policy/policy-document.ts")).policyDigest((await import("../../src/policy/default-policy.ts")).DEFAULT_POLICY) },
      attribution: { initiator: "test", reason: "denial codes" },
    });
    await jetstream(h.runtime.nc).publish(SUBJECTS.lineage(taskId), JSON.stringify(originLineage(issuer, { childTaskId: taskId, childArtifact: artifact, emittedAt: now })));
    const args = o.args ?? { amount: 10 };
    const request = signRequest(o.signer ?? agent, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: now });
    const s = { request, chain: [artifact] };
    o.tamper?.(s);
    const out = await submitTask(h.runtime.nc, { request: s.request, args, chain: s.chain });
    return { taskId, codes: out.codes, verdict: out.verdict };
  }

  async function expectCode(o: Opts, code: DenialCode) {
    const r = await run(o);
    expect(r.verdict).toBe("deny");
    expect(r.codes).toContain(code);
    expect(executed.has(r.taskId)).toBe(false);
  }

  it("positive control: the same construction is allowed and executed", async () => {
    const r = await run();
    expect(r).toMatchObject({ verdict: "allow", codes: [] });
    expect(executed.has(r.taskId)).toBe(true);
  });

  it("MALFORMED: duplicate keys in the submission, schema-invalid request, bad evidence bytes", async () => {
    const before = h.outcomes.length;
    await jetstream(h.runtime.nc).publish(SUBJECTS.taskSubmit, '{"request":{"payload":{},"sig":"AA"},"request":1,"args":{}}');
    for (let i = 0; i < 100 && h.outcomes.length === before; i++) await new Promise((r) => setTimeout(r, 20));
    const dropped = h.outcomes.slice(before).find((o) => o.taskId.startsWith("malformed-"));
    expect(dropped).toMatchObject({ verdict: "deny", codes: ["MALFORMED"] });
    await expectCode({ tamper: (s) => ((s.request.payload as unknown as Record<string, unknown>)["extra"] = 1) }, "MALFORMED");
    // A hostile artifact message on the task's own evidence subject denies that task.
    const taskId = newTaskId();
    await jetstream(h.runtime.nc).publish(SUBJECTS.artifact(taskId), '{"payload":{"a":1,"a":2},"sig":"x"}');
    const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 1000, expiresAt: Date.now() + 60_000 }, nonce: namedNonce(`m-${taskId}`), attribution: { initiator: "t", reason: "t" } });
    const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
    const out = await submitTask(h.runtime.nc, { request, args: { amount: 1 }, chain: [artifact] });
    expect(out.codes).toContain("MALFORMED");
  });

  it("BAD_SIGNATURE", () => expectCode({ tamper: (s) => (s.request.sig = (s.request.sig.startsWith("A") ? "B" : "A") + s.request.sig.slice(1)) }, "BAD_SIGNATURE"));
  it("UNTRUSTED_ISSUER", () => expectCode({ issuer: rogue }, "UNTRUSTED_ISSUER"));
  it("EXPIRED", () => expectCode({ validity: { notBefore: Date.now() - 7_200_000, expiresAt: Date.now() - 3_600_000 } }, "EXPIRED"));
  it("NOT_YET_VALID", () => expectCode({ validity: { notBefore: Date.now() + 3_600_000, expiresAt: Date.now() + 7_200_000 } }, "NOT_YET_VALID"));
  it("POLICY_MISMATCH (Cedar limit and artifact scope)", async () => {
    await expectCode({ scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} }, args: { amount: 20_000 } }, "POLICY_MISMATCH");
    await expectCode({ scope: { actions: ["transfer"], resources: ["paymentsx/"], constraints: {} } }, "POLICY_MISMATCH");
  });
  it("IDENTITY_MISMATCH", () => expectCode({ signer: other }, "IDENTITY_MISMATCH"));
  it("ENVIRONMENT_MISMATCH", async () => {
    await expectCode({ bindings: { environment: { name: "production" } } }, "ENVIRONMENT_MISMATCH");
    await expectCode({ bindings: { gateways: ["gw-9"] } }, "ENVIRONMENT_MISMATCH");
    const ok = await run({ bindings: { environment: { name: "staging" }, gateways: ["gw-1"] } });
    expect(ok.verdict).toBe("allow");
  });
  it("REVOKED: artifact revoked before submission", async () => {
    const taskId = newTaskId();
    const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 1000, expiresAt: Date.now() + 60_000 }, nonce: namedNonce(`r-${taskId}`), attribution: { initiator: "t", reason: "t" } });
    await h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "compromised");
    await h.authority.heartbeat(); // the gateway has applied everything before this heartbeat
    await new Promise((r) => setTimeout(r, 200));
    const out = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
    expect(out.codes).toContain("REVOKED");
  });
  it("LINEAGE_BROKEN: a child task with no spawn lineage from an executing parent", async () => {
    const taskId = newTaskId();
    const parentTask = newTaskId();
    const { artifact: root } = await h.authority.grant({ taskId: parentTask, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: Date.now() - 1000, expiresAt: Date.now() + 60_000 }, nonce: namedNonce(`lb-${taskId}`), attribution: { initiator: "t", reason: "t" } });
    const child = delegateArtifact(root, agent, { holder: other.keyId, scope: DEFAULT_SCOPE, validity: root.payload.validity, nonce: namedNonce(`lbc-${taskId}`), attribution: { initiator: "t", reason: "t" } });
    const request = signRequest(other, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact: child, parentTaskId: parentTask, createdAt: Date.now() });
    // Splice the parent's origin lineage in, but there is no spawn event: the parent never ran.
    const out = await submitTask(h.runtime.nc, { request, args: { amount: 1 }, chain: [root, child] });
    expect(out.codes).toContain("LINEAGE_BROKEN");
    expect(executed.has(taskId)).toBe(false);
  });
  it("GOVERNANCE_UNAVAILABLE: revocation feed stale when heartbeats stop", async () => {
    h.authority.stopHeartbeats();
    await new Promise((r) => setTimeout(r, 2_300));
    await expectCode({}, "GOVERNANCE_UNAVAILABLE");
    // The gateway says so once, not only in each deny, and again when the feed is fresh.
    expect(h.warnings.filter((w) => w.includes("revocation feed is stale"))).toHaveLength(1);
    await h.authority.startHeartbeats(300);
    await new Promise((r) => setTimeout(r, 300));
    expect((await run()).verdict).toBe("allow");
    expect(h.warnings.some((w) => w.includes("revocation feed fresh again"))).toBe(true);
  });

  it("the gateway's audit log replays clean: every decision re-derived, no divergence", async () => {
    const r = await replayGateway(h.gateways[0]!);
    expect(r.divergences).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.decisionsRederived).toBeGreaterThan(5);
  });
});
