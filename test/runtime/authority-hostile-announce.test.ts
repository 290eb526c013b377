// Hostile input on the core-NATS subjects an authority listens to for other processes' policy
// activations (failclosed.authority.policy.<keyId>): junk, forgeries, another key's signatures,
// replays, absurd versions, floods. The authority must announce only a version its key or a peer
// activated, keep heartbeating, and leave gateways serving.
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { MAX_POLICY_VERSION } from "../../src/core/schema.ts";
import { HEARTBEAT_KIND, POLICY_ACTIVATION_KIND } from "../../src/core/types.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { KV_BUCKETS, POLICY_KEY, SUBJECTS } from "../../src/nats/contract.ts";
import { readPolicyEntry, signActivation } from "../../src/policy/activation.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { authorityKey, enc, expectAuthorityHonest, expectValidTaskRuns, publishCore, rogue, sleep, worldPerTest } from "./authority-hostile-support.ts";

const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };
const D1 = policyDigest(DEFAULT_POLICY);
const world = worldPerTest();
const own = SUBJECTS.policyActivation(authorityKey.keyId);

describe("hostile policy activation announcements", () => {
  it("junk, forgeries, other keys' activations, replays and absurd versions raise nothing the authority announces", async () => {
    const w = await world();
    const v1 = w.h.authority.policyVersion;
    // A genuine activation of the authority's, captured from the wire: the one in force.
    const e1 = readPolicyEntry((await (await new Kvm(w.h.runtime.nc).open(KV_BUCKETS.policy)).get(POLICY_KEY))!.value);
    if (!e1.ok) throw new Error(e1.why);
    const genuine = e1.entry.activation;
    await w.h.authority.publishPolicy(P2);
    const v2 = w.h.authority.policyVersion;
    expect(v2).toBeGreaterThan(v1);
    const payload = { kind: POLICY_ACTIVATION_KIND, issuer: authorityKey.keyId, policyId: DEFAULT_POLICY.id, policyDigest: D1, version: MAX_POLICY_VERSION, issuedAt: Date.now() };
    const withVersion = (v: unknown): string => JSON.stringify({ payload: { ...payload, version: v }, sig: genuine.sig });
    const capturedHeartbeat = signPayload("heartbeat", { kind: HEARTBEAT_KIND, issuer: authorityKey.keyId, seq: 9, issuedAt: Date.now(), policyVersion: MAX_POLICY_VERSION }, authorityKey);
    const junk: [string, string, string][] = [
      [own, "not JSON", "{"],
      [own, "empty", ""],
      [own, "duplicate keys", `{"payload":${JSON.stringify(payload)},"payload":${JSON.stringify(payload)},"sig":"${genuine.sig}"}`],
      [own, "lone surrogate", '{"payload":{"policyId":"\\ud800"},"sig":"x"}'],
      [own, "deep nesting", `${"[".repeat(200)}${"]".repeat(200)}`],
      [own, "over 64 KiB", JSON.stringify({ payload, sig: genuine.sig, pad: "x".repeat(70 * 1024) })],
      [own, "__proto__", `{"__proto__":{"version":${MAX_POLICY_VERSION}},"payload":${JSON.stringify(payload)},"sig":"${genuine.sig}"}`],
      [own, "unsigned, at the highest version", JSON.stringify({ payload })],
      [own, "the genuine signature over a raised version", withVersion(MAX_POLICY_VERSION)],
      [own, "a version past the highest", withVersion(MAX_POLICY_VERSION + 1)],
      [own, "a negative version", withVersion(-1)],
      [own, "a fractional version", withVersion(v2 + 0.5)],
      [own, "a version as a string", withVersion(String(MAX_POLICY_VERSION))],
      [own, "a version of 1e400", JSON.stringify({ payload, sig: genuine.sig }).replace(`"version":${MAX_POLICY_VERSION}`, '"version":1e400')],
      [own, "an untrusted key's signature naming the authority", JSON.stringify(signPayload("policy", payload, rogue))],
      [own, "the untrusted key's own activation on the authority's subject", JSON.stringify(signActivation(rogue, DEFAULT_POLICY, MAX_POLICY_VERSION, Date.now()))],
      [SUBJECTS.policyActivation(rogue.keyId), "the untrusted key's own activation on its own subject", JSON.stringify(signActivation(rogue, DEFAULT_POLICY, MAX_POLICY_VERSION, Date.now()))],
      [own, "the authority's captured heartbeat (its signature, another kind)", JSON.stringify(capturedHeartbeat)],
      [own, "the authority's key over the activation, signed as a heartbeat", JSON.stringify(signPayload("heartbeat", payload, authorityKey))],
      [own, "an extra member", JSON.stringify({ ...signActivation(authorityKey, DEFAULT_POLICY, 5, Date.now()), extra: 1 }).replace(/"sig":"[^"]*"/, `"sig":"${genuine.sig}"`)],
      [own, "a replay of its own older activation", JSON.stringify(genuine)],
      [SUBJECTS.policyActivation(rogue.keyId), "its own older activation on another key's subject", JSON.stringify(genuine)],
      ["failclosed.authority.policy.x", "on a token no key has", JSON.stringify(genuine)],
    ];
    for (const [subject, , bytes] of junk) await publishCore(w, subject, bytes);
    await sleep(300);
    await expectAuthorityHonest(w, { policyVersion: v2, revocations: 0 });
    await expectValidTaskRuns(w, "after the junk");
  });

  it("a flood of junk and of forgeries that must be verified: the authority keeps heartbeating and announces nothing new", async () => {
    const w = await world();
    const v = w.h.authority.policyVersion;
    const forged = (i: number): string => JSON.stringify({ payload: { kind: POLICY_ACTIVATION_KIND, issuer: authorityKey.keyId, policyId: DEFAULT_POLICY.id, policyDigest: D1, version: v + 1 + i, issuedAt: Date.now() }, sig: "A".repeat(86) });
    const nc = w.h.runtime.nc;
    for (let i = 0; i < 20_000; i++) {
      nc.publish(own, i % 2 === 0 ? enc(forged(i)) : enc(`{"junk":${i}}`));
      if (i % 1_000 === 999) await nc.flush();
    }
    await nc.flush();
    await sleep(500);
    await expectAuthorityHonest(w, { policyVersion: v, revocations: 0 });
    await expectValidTaskRuns(w, "after the flood");
  });

  it("a publish that lost every compare-and-set: its signed entries, seen in flight, are not an activation the authority announces", async () => {
    const w = await world();
    const v1 = w.h.authority.policyVersion;
    const nc = w.h.runtime.nc;
    // The attacker reads what is published on the bucket's subject (core NATS: also a message the
    // stream refuses) and writes junk to the entry as fast as the server acks, so each of the
    // authority's compare-and-set writes finds the entry moved on.
    const captured: string[] = [];
    const tap = nc.subscribe(`$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`, {
      callback: (_e, m) => {
        const r = readPolicyEntry(m.data);
        if (r.ok && r.entry.activation.payload.issuer === authorityKey.keyId && r.entry.activation.payload.version > v1) captured.push(JSON.stringify(r.entry.activation));
      },
    });
    const kv = await new Kvm(nc).open(KV_BUCKETS.policy);
    let flooding = true;
    const flood = (async () => {
      for (let i = 0; flooding; i++) await kv.put(POLICY_KEY, `junk ${i}`).catch(() => undefined);
    })();
    const published = await w.h.authority.publishPolicy(P2).then(
      () => "published",
      (e: unknown) => String(e),
    );
    flooding = false;
    await flood;
    tap.unsubscribe();
    // (When a write won after all, nothing was lost: the scenario did not happen.)
    expect(published).toMatch(/wrong last sequence|key exists/i);
    expect(w.h.authority.policyVersion).toBe(v1);
    expect(captured.length).toBeGreaterThan(0);
    // The bucket's entry is the attacker's junk: running gateways keep the policy they hold, and the
    // operator was told nothing was published. The attacker replays the activations it saw in flight.
    await expectValidTaskRuns(w, "before the replay");
    for (const a of captured) await publishCore(w, own, a);
    await sleep(400);
    // (Failed before the fix: the authority announced the version it never wrote, and the gateway, unable to
    // read it in the bucket, withdrew its policy and denied every task GOVERNANCE_UNAVAILABLE.)
    await expectValidTaskRuns(w, "after the replayed unwritten activations");
    await expectAuthorityHonest(w, { policyVersion: v1, revocations: 0 });
  });
});
