// Hostile values in the KV buckets a gateway reads (the policy bucket's `active` key, the claims
// bucket's nonce and task-id keys), and hostile requests on the subjects it answers or publishes
// (consistency proofs, checkpoints). The policy in force is kept against junk; a claim that is
// not one is never taken as free; nothing runs on any of it; the log replays clean.
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import type { Gateway } from "../../src/gateway/gateway.ts";
import { KV_BUCKETS, POLICY_KEY, SUBJECTS, taskClaimKey } from "../../src/nats/contract.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { POLICY_ACTIVATION_KIND } from "../../src/core/types.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyEntryText, signActivation } from "../../src/policy/activation.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { MAX_POLICY_VERSION } from "../../src/core/schema.ts";
import { replayGateway } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { authorityKey, enc, expectLogClean, expectValidTaskRuns, hostileWorld, outcomeOf, publishRaw, sleep, validSubmission } from "./hostile-ingest-support.ts";

const world = hostileWorld({ policyRecheckMs: 500 });
const rogue = namedKey("rogue-authority");

describe("hostile KV values and requests", () => {
  it("junk in the policy bucket never replaces the policy in force", async () => {
    const w = world();
    const digest = policyDigest(DEFAULT_POLICY);
    const activation = { kind: POLICY_ACTIVATION_KIND, issuer: authorityKey.keyId, policyId: DEFAULT_POLICY.id, policyDigest: digest, version: MAX_POLICY_VERSION, issuedAt: Date.now() };
    const entry = (a: unknown): string => JSON.stringify({ activation: a, digest, document: DEFAULT_POLICY });
    const junk: [string, string][] = [
      ["not JSON", "{"],
      ["duplicate keys", `{"digest":"${digest}","digest":"x"}`],
      ["lone surrogate", '{"document":"\\ud800"}'],
      ["deep nesting", `${"[".repeat(100)}${"]".repeat(100)}`],
      ["over 64 KiB", JSON.stringify({ pad: "x".repeat(64 * 1024) })],
      ["unsigned", JSON.stringify({ digest, document: DEFAULT_POLICY })],
      // The authority's own key over the activation, under the heartbeat and revocation tags.
      ["activation signed as a heartbeat", entry(signPayload("heartbeat", activation, authorityKey))],
      ["activation signed as a revocation", entry(signPayload("revocation", activation, authorityKey))],
      ["an untrusted key's at the highest version", entry(signPayload("policy", { ...activation, issuer: rogue.keyId }, rogue))],
      ["an extra member", JSON.stringify({ ...JSON.parse(policyEntryText(DEFAULT_POLICY, signActivation(authorityKey, DEFAULT_POLICY, 5, Date.now()))), extra: 1 })],
      ["a rollback to version 1 (the authority's own signature)", policyEntryText(DEFAULT_POLICY, signActivation(authorityKey, DEFAULT_POLICY, 1, Date.now()))],
    ];
    const before = w.gw.ledger.state.policyHigh;
    for (const [, bytes] of junk) {
      expect(await publishRaw(w, `$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`, bytes)).not.toBeInstanceOf(Error);
      await expectValidTaskRuns(w);
    }
    // Read again by the periodic re-read too (the junk is the bucket's latest entry now).
    await sleep(1_200);
    await expectValidTaskRuns(w);
    expect(w.gw.ledger.state.policyHigh).toEqual(before);
    await expectLogClean(w);
  });

  it("a gateway starting while junk is the policy bucket's latest entry: denies (no policy it can take) until the authority publishes again, then serves", async () => {
    const w = world();
    await publishRaw(w, `$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`, "{");
    const gw2: Gateway = await w.hh.startGateway({ id: "gw-2", key: namedKey("gateway-2"), policyRecheckMs: 500 });
    try {
      const ran2: string[] = [];
      gw2.registerAction("transfer", ({ taskId }) => {
        ran2.push(taskId);
        return { ok: true };
      });
      // Junk is the bucket's latest entry: gw-2 found no policy it could take (it denies until one comes).
      expect(gw2.ledger.state.policy).toBeUndefined();
      // gw-1 stays up: the work queue is shared, so tasks go to either; whichever decides, none runs unallowed.
      await w.hh.authority.publishPolicy(DEFAULT_POLICY);
      await sleep(1_000);
      for (let i = 0; i < 4; i++) {
        const s = await validSubmission(w);
        await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
        await publishRaw(w, SUBJECTS.taskSubmit, s.body);
        const o = await outcomeOf(w, s.taskId);
        expect(o, s.taskId).toMatchObject({ verdict: "allow", status: "succeeded" });
        if (o?.gatewayId === "gw-1") w.expected.set(s.taskId, { verdict: "allow" });
      }
      const rep = await replayGateway(gw2);
      expect(rep.divergences).toEqual([]);
      expect(rep.ok).toBe(true);
      await expectLogClean(w);
    } finally {
      await gw2.stop();
    }
  });

  it("a KV delete of the active policy (unsigned) withdraws it: every task denied GOVERNANCE_UNAVAILABLE until the authority publishes again", async () => {
    const w = world();
    await publishRaw(w, `$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`, "", { "KV-Operation": "DEL" });
    await sleep(300);
    const s = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, s.body);
    const o = await outcomeOf(w, s.taskId);
    expect(o?.verdict).toBe("deny");
    expect(o?.codes).toContain("GOVERNANCE_UNAVAILABLE");
    w.expected.set(s.taskId, { verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"] });
    await w.hh.authority.publishPolicy(DEFAULT_POLICY);
    await sleep(300);
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("junk written ahead into a task's claims is never taken as free: the task is denied, never run", async () => {
    const w = world();
    const kv = await new Kvm(w.hh.runtime.nc).open(KV_BUCKETS.nonces);
    const put = async (key: string, value: string | Uint8Array) => publishRaw(w, `$KV.${KV_BUCKETS.nonces}.${key}`, value);
    const cases: [string, (taskId: string, nonce: string) => Promise<unknown>][] = [
      ["not JSON at the task id", (t) => put(taskClaimKey(t), "{")],
      ["duplicate keys at the task id", (t) => put(taskClaimKey(t), '{"outcome":"denied-copies","outcome":"held","submissionIds":[]}')],
      ["over 4 KiB at the task id", (t) => put(taskClaimKey(t), JSON.stringify({ outcome: "denied-copies", submissionIds: [], pad: "x".repeat(4_096) }))],
      ["too many names at the task id", (t) => put(taskClaimKey(t), JSON.stringify({ outcome: "denied-copies", submissionIds: Array.from({ length: 17 }, (_, i) => `s${i}`) }))],
      ["names of the wrong type at the task id", (t) => put(taskClaimKey(t), JSON.stringify({ outcome: "denied-copies", submissionIds: "x" }))],
      ["a delete marker at the task id", (t) => publishRaw(w, `$KV.${KV_BUCKETS.nonces}.${taskClaimKey(t)}`, "", { "KV-Operation": "DEL" })],
      ["not JSON at the nonce", (_t, n) => put(n, "{")],
      ["an empty value at the nonce", (_t, n) => put(n, new Uint8Array())],
    ];
    for (const [what, write] of cases) {
      const s = await validSubmission(w);
      expect(await write(s.taskId, s.artifact.payload.nonce), what).not.toBeInstanceOf(Error);
      await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
      await publishRaw(w, SUBJECTS.taskSubmit, s.body);
      const o = await outcomeOf(w, s.taskId);
      expect(o?.verdict, `${what}: ${JSON.stringify(o?.codes)}`).toBe("deny");
      expect(o?.codes.some((c) => c === "REPLAYED" || c === "GOVERNANCE_UNAVAILABLE"), `${what}: ${JSON.stringify(o?.codes)}`).toBe(true);
      expect(w.ran).not.toContain(s.taskId);
      w.expected.set(s.taskId, { verdict: "deny" });
    }
    // A well-formed denied-copies claim naming no submission of the task is taken over: it runs.
    const s = await validSubmission(w);
    await put(taskClaimKey(s.taskId), JSON.stringify({ taskId: s.taskId, outcome: "denied-copies", submissionIds: ["someone-else"] }));
    await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, s.body);
    expect(await outcomeOf(w, s.taskId)).toMatchObject({ verdict: "allow", status: "succeeded" });
    w.expected.set(s.taskId, { verdict: "allow" });
    expect((await kv.get(taskClaimKey(s.taskId)))?.json<Record<string, unknown>>()).toMatchObject({ taskId: s.taskId });
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("junk proof requests are refused with stable codes, a flood of them is answered BUSY or refused, and junk checkpoints change nothing", async () => {
    const w = world();
    const nc = w.hh.runtime.nc;
    const ask = async (body: string | Uint8Array): Promise<Record<string, unknown>> => JSON.parse(new TextDecoder().decode((await nc.request(SUBJECTS.proof("gw-1"), typeof body === "string" ? enc(body) : body, { timeout: 2_000 })).data)) as Record<string, unknown>;
    const refusals: [string, string][] = [
      ["{", "MALFORMED"],
      ['{"kind":"consistency","size1":1,"size1":2,"size2":3}', "MALFORMED"],
      ['{"kind":"consistency","size1":1e400,"size2":2}', "MALFORMED"],
      ['{"kind":"consistency","size1":1.5,"size2":2}', "MALFORMED"],
      ['{"kind":"consistency","size1":"1","size2":2}', "MALFORMED"],
      ['{"kind":"consistency","size1":1,"size2":2,"x":1}', "MALFORMED"],
      [JSON.stringify({ kind: "consistency", size1: 1, size2: 2, pad: "x".repeat(1_024) }), "MALFORMED"],
      [`${"[".repeat(10)}${"]".repeat(10)}`, "MALFORMED"],
      ['{"kind":"consistency","size1":0,"size2":1}', "BAD_SIZE"],
      ['{"kind":"consistency","size1":2,"size2":1}', "BAD_SIZE"],
      ['{"kind":"consistency","size1":1,"size2":9007199254740991}', "BAD_SIZE"],
    ];
    for (const [body, code] of refusals) expect(await ask(body), body.slice(0, 60)).toMatchObject({ ok: false, code });
    // A flood of well-formed requests: answered (signed) or BUSY, never a hang or a crash.
    const size = w.gw.ledger.store.size;
    const answers = await Promise.all(Array.from({ length: 400 }, () => ask(JSON.stringify({ kind: "consistency", size1: 1, size2: Math.max(1, size - 1) }))));
    for (const a of answers) expect(a["ok"] === true || a["code"] === "BUSY", JSON.stringify(a).slice(0, 120)).toBe(true);
    // Junk on this gateway's checkpoint subject: the gateway does not read it; witnesses must (not here).
    for (const junk of ["{", '{"payload":{},"sig":"x"}', JSON.stringify({ payload: { origin: "gw-1", size: 1e15 }, sig: "A".repeat(86) })]) {
      await publishRaw(w, SUBJECTS.checkpoint("gw-1"), junk);
    }
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  }, 60_000);
});
