// What a submitter learns on failclosed.outcome.<taskId>, with other traffic on that subject:
// forged or unreadable messages, a different submission naming the same task id, and copies of
// the very same submission. Real nats-server, real gateway.
import { afterEach, describe, expect, it } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { signRequest } from "../../src/core/artifacts.ts";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, SUBJECTS, submissionIdOf, taskClaimKey } from "../../src/nats/contract.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { MAX_OUTCOME_BYTES, outcomeMessage, outcomeSignedBy, signOutcome, type TaskOutcome } from "../../src/gateway/outcome.ts";
import { tryParseStrict } from "../../src/canonical/strict-parse.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { DOMAIN_TAGS, signPayload, type SignedKind } from "../../src/crypto/signing.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { SignedArtifact, SignedRequest } from "../../src/core/types.ts";

const agent = namedKey("agent-0");
const validity = () => ({ notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function submission(hh: Harness, taskId: string, which = "a"): Promise<{ request: SignedRequest; args: { amount: number }; artifact: SignedArtifact }> {
  const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`${which}-${taskId}`), attribution: { initiator: "t", reason: "outcomes" } });
  const args = { amount: 1 };
  const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: Date.now() });
  return { request, args, artifact };
}

/** A gateway whose "transfer" handler takes `ms` and counts its runs. */
async function slowGateway(ms: number): Promise<{ hh: Harness; runs: () => number }> {
  h = await startHarness({ gateways: 1 });
  let runs = 0;
  h.gateways[0]!.registerAction("transfer", async () => {
    runs++;
    await sleep(ms);
    return { ok: true };
  });
  return { hh: h, runs: () => runs };
}

describe("outcomes are signed by the deciding gateway", () => {
  const gw = namedKey("gateway-1");
  const base: TaskOutcome = { taskId: "t-1", gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", decisionSeq: 4, submissionId: "s".repeat(43), result: { ok: true } };
  const trusted = new Set([gw.keyId]);

  it("a signed outcome verifies under its gateway's key, and nothing else does", () => {
    const signed = signOutcome(base, gw);
    expect(signed.signer).toBe(gw.keyId);
    expect(outcomeSignedBy(signed, trusted)).toBe(true);
    expect(outcomeSignedBy(JSON.parse(JSON.stringify(signed)) as TaskOutcome, trusted)).toBe(true); // as it crosses the wire
    expect(outcomeSignedBy(signOutcome(signed, gw), trusted)).toBe(true); // re-signing replaces the signature
    expect(outcomeSignedBy(base, trusted)).toBe(false); // unsigned
    expect(outcomeSignedBy(signed, new Set([namedKey("gateway-2").keyId]))).toBe(false); // a gateway not trusted
    expect(outcomeSignedBy({ ...signed, result: { ok: false } }, trusted)).toBe(false);
    expect(outcomeSignedBy({ ...signed, status: "failed" }, trusted)).toBe(false);
    expect(outcomeSignedBy({ ...signed, submissionId: "z".repeat(43) }, trusted)).toBe(false);
    const { result: _r, ...withoutResult } = signed;
    expect(outcomeSignedBy(withoutResult, trusted)).toBe(false); // a field dropped
    // Signed by another key that claims to be the gateway.
    const rogue = signOutcome(base, namedKey("rogue"));
    expect(outcomeSignedBy({ ...rogue, signer: gw.keyId }, trusted)).toBe(false);
    expect(outcomeSignedBy({ ...signed, sig: "AAAA" }, trusted)).toBe(false);
    expect(outcomeSignedBy({ ...signed, signer: 7 } as unknown as TaskOutcome, trusted)).toBe(false);
  });

  it("every field is covered: changing, adding or dropping any one of them breaks the signature", () => {
    const full: TaskOutcome = {
      ...base,
      verdict: "deny",
      codes: ["REPLAYED"],
      status: "denied",
      detail: "d",
      duplicate: true,
      originalDone: true,
      resultDigest: "q".repeat(43),
      error: "e",
      checks: [{ check: "nonce", ok: false, code: "REPLAYED", detail: "x" }],
    };
    const signed = signOutcome(full, gw);
    expect(outcomeSignedBy(signed, trusted)).toBe(true);
    for (const k of Object.keys(signed).filter((k) => k !== "sig")) {
      const changed = { ...signed, [k]: k === "signer" ? namedKey("gateway-2").keyId : typeof signed[k as keyof TaskOutcome] === "number" ? 5 : "changed" };
      expect(outcomeSignedBy(changed, trusted), `changed ${k}`).toBe(false);
      const dropped = { ...signed } as Record<string, unknown>;
      delete dropped[k];
      expect(outcomeSignedBy(dropped as unknown as TaskOutcome, trusted), `dropped ${k}`).toBe(false);
    }
    expect(outcomeSignedBy({ ...signed, extra: 1 } as TaskOutcome, trusted)).toBe(false);
  });

  it("a gateway signature made for any other kind never verifies as an outcome (domain separation)", () => {
    const payload = { ...base, signer: gw.keyId };
    for (const kind of Object.keys(DOMAIN_TAGS) as SignedKind[]) {
      if (kind === "outcome") continue;
      const other = signPayload(kind, payload, gw);
      expect(outcomeSignedBy({ ...other.payload, sig: other.sig }, trusted), kind).toBe(false);
    }
  });

  it("what a gateway publishes is what a client reads back and verifies, even for a result a client could not parse", () => {
    const read = (message: string | undefined): TaskOutcome => {
      const p = tryParseStrict(message!, { maxBytes: MAX_OUTCOME_BYTES });
      expect(p.ok).toBe(true);
      const o = (p as { value: unknown }).value as TaskOutcome;
      expect(outcomeSignedBy(o, trusted)).toBe(true);
      return o;
    };
    expect(read(outcomeMessage(base, gw)).result).toEqual({ ok: true });
    let deep: JsonValue = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const unreadable: JsonValue[] = [JSON.parse('{"__proto__": 1}') as JsonValue, deep];
    for (const result of unreadable) {
      const o = read(outcomeMessage({ ...base, result }, gw));
      expect(o.result).toBeUndefined();
      expect(o).toMatchObject({ status: "succeeded", verdict: "allow", detail: expect.stringContaining("could not be delivered") });
    }
    // Not JSON at all (a handler's object with a method): left out the same way.
    const o = read(outcomeMessage({ ...base, result: { f: () => 1 } as unknown as JsonValue }, gw));
    expect(o.result).toBeUndefined();
  });

  it("a client that knows the gateway keys takes the genuine outcome, not a forgery sent ahead of it with the right submission id", async () => {
    const { hh, runs } = await slowGateway(800);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const submissionId = submissionIdOf({ request: s.request, args: s.args })!;
    const trustedKeys = new Set([hh.gateways[0]!.keyId]);
    const pending = submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000, gatewayKeys: trustedKeys });
    // A second waiter that does not check signatures: the forgery is what it gets.
    const naive = awaitOutcome(hh.runtime.nc, taskId, 15_000, { submissionId });
    await naive.ready;
    await sleep(250);
    const forged: TaskOutcome = { taskId, gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", submissionId, result: { forged: true } };
    const nc = hh.runtime.nc;
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify(forged)); // unsigned
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify(signOutcome(forged, namedKey("rogue")))); // signed by an unknown key
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ ...signOutcome(forged, namedKey("rogue")), signer: hh.gateways[0]!.keyId })); // claims the gateway's key
    const genuineLooking = signOutcome({ ...forged, result: { ok: true } }, namedKey("gateway-1"));
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ ...genuineLooking, result: { forged: true } })); // a real signature, altered after
    // Forged duplicates: one that would end the wait at once, one that would be held and
    // returned at the timeout.
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ ...forged, verdict: "deny", codes: ["REPLAYED"], status: "denied", duplicate: true, originalDone: true }));
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ ...forged, duplicate: true }));
    await nc.flush();
    expect((await naive.outcome).result).toEqual({ forged: true });
    const outcome = await pending;
    expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded", result: { ok: true }, signer: hh.gateways[0]!.keyId });
    expect(outcomeSignedBy(outcome, trustedKeys)).toBe(true);
    expect(runs()).toBe(1);
  });

  it("a client whose gateway keys match no gateway gets no outcome: a deny at its timeout, never a pass", async () => {
    const { hh, runs } = await slowGateway(10);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const outcome = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 2_000, gatewayKeys: new Set([namedKey("someone-else").keyId]) });
    expect(outcome).toMatchObject({ verdict: "deny", gatewayId: "client", codes: ["GOVERNANCE_UNAVAILABLE"] });
    expect(runs()).toBe(1); // it did run: the client just cannot tell, so it reports a deny
  });
});

describe("a parent's ctx.spawn takes its child's outcome only from a gateway its log trusts", () => {
  it("an unsigned forgery, and one signed by a key the client trusts but the gateway's log does not, are ignored", async () => {
    h = await startHarness({ gateways: 1 });
    const hh = h;
    const sub = namedKey("agent-1");
    let child: { taskId: string; submissionId: string } | undefined;
    const gw = hh.gateways[0]!;
    gw.registerAction("transfer", async () => {
      await sleep(1_200);
      return { genuine: true };
    });
    gw.registerAction("plan", async (ctx) => {
      const c = hh.runtime.child({
        parent: ctx.chain[ctx.chain.length - 1]!,
        parentTaskId: ctx.taskId,
        holderKey: agent,
        childAgent: sub,
        delegation: { scope: { actions: ["transfer"], resources: ["payments/"], constraints: {} }, validity: ctx.chain[0]!.payload.validity, nonce: namedNonce(`child-of-${ctx.taskId}`), attribution: { initiator: "p", reason: "c" } },
        action: "transfer",
        resource: "payments/transfer",
        args: { amount: 1 },
      });
      child = { taskId: c.request.payload.taskId, submissionId: submissionIdOf({ request: c.request, args: c.args })! };
      const out = await ctx.spawn(c);
      return { childStatus: out.status, childResult: out.result ?? null, signer: out.signer ?? null };
    });
    const taskId = newTaskId();
    const now = Date.now();
    const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: { actions: ["plan", "transfer"], resources: ["payments/"], constraints: {} }, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`root-${taskId}`), attribution: { initiator: "a", reason: "r" } });
    const parent = hh.runtime.spawn({ agent, action: "plan", resource: "payments/batch", args: {}, chain: [artifact], taskId }).outcome;
    while (child === undefined) await sleep(20);
    await sleep(300);
    const forged: TaskOutcome = { taskId: child.taskId, gatewayId: "gw-1", verdict: "allow", codes: [], status: "succeeded", submissionId: child.submissionId, result: { forged: "unsigned" } };
    hh.runtime.nc.publish(SUBJECTS.outcome(child.taskId), JSON.stringify(forged));
    // gateway-6: a key the harness's client accepts, but not one gw-1's log trusts (its peers are 1-4).
    hh.runtime.nc.publish(SUBJECTS.outcome(child.taskId), JSON.stringify(signOutcome({ ...forged, result: { forged: "gateway-6" } }, namedKey("gateway-6"))));
    await hh.runtime.nc.flush();
    const o = await parent;
    expect(o).toMatchObject({ verdict: "allow", status: "succeeded", result: { childStatus: "succeeded", childResult: { genuine: true }, signer: gw.keyId } });
  });
});

describe("Runtime.connect refuses gateway keys that could never accept an outcome", () => {
  it("a malformed key id, or an empty list with no gateway of its own", async () => {
    h = await startHarness({ gateways: 0 });
    await expect(Runtime.connect({ natsUrl: h.url, gatewayKeys: ["not-a-key"] })).rejects.toThrow();
    await expect(Runtime.connect({ natsUrl: h.url, gatewayKeys: [] })).rejects.toThrow(/empty/);
  });
});

describe("outcomes on the bus", () => {
  it("forged, unreadable and foreign messages on a task's outcome subject do not end the submitter's wait", async () => {
    const { hh, runs } = await slowGateway(600);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const pending = submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    await sleep(250);
    const nc = hh.runtime.nc;
    nc.publish(SUBJECTS.outcome(taskId), "not json at all");
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ taskId, gatewayId: "gw-1", verdict: "deny", codes: ["REVOKED"], status: "denied" }));
    nc.publish(SUBJECTS.outcome(taskId), JSON.stringify({ taskId, gatewayId: "gw-1", verdict: "deny", codes: ["REVOKED"], status: "denied", submissionId: "x".repeat(43) }));
    await nc.flush();
    const outcome = await pending;
    expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-1", submissionId: submissionIdOf({ request: s.request, args: s.args }) });
    expect(runs()).toBe(1);
  });

  it("a copy of a submission racing it: the copy is denied as a duplicate and the submitter gets the original's outcome", async () => {
    // A handler longer than any fixed grace: the submitter must wait for the original however long it runs.
    const { hh, runs } = await slowGateway(3_000);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const pending = submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    const gw = hh.gateways[0]!;
    for (let i = 0; i < 250 && gw.ledger.state.tasks.get(taskId)?.status !== "allowed"; i++) await sleep(20);
    // Byte for byte the same submit message, published again while the original executes.
    await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request: s.request, args: s.args }));
    const outcome = await pending;
    expect(outcome).toMatchObject({ verdict: "allow", status: "succeeded" });
    expect(outcome.duplicate).toBeUndefined();
    for (let i = 0; i < 100 && hh.outcomes.length < 2; i++) await sleep(20);
    const copy = hh.outcomes.find((o) => o.verdict === "deny");
    expect(copy).toMatchObject({ taskId, codes: ["REPLAYED"], duplicate: true, submissionId: outcome.submissionId });
    // The copy was published before the original finished: without the mark it would have won.
    expect(hh.outcomes.indexOf(copy!)).toBe(0);
    expect(runs()).toBe(1);
  });

  it("a copy sent after the original finished is answered at once: 'unknown' (the original's outcome came and went), marked a duplicate of a finished original", async () => {
    const { hh, runs } = await slowGateway(0);
    const taskId = newTaskId();
    const s = await submission(hh, taskId);
    const first = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    expect(first).toMatchObject({ verdict: "allow", status: "succeeded" });
    const again = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    // Not "denied": the copy's deny says nothing of the original, which ran.
    expect(again).toMatchObject({ verdict: "deny", status: "unknown", codes: ["REPLAYED"], duplicate: true, originalDone: true, gatewayId: "client" });
    expect(runs()).toBe(1);
  });

  it("a submission that wins its nonce but finds the task id held by another submission is answered at once, not as its own duplicate", async () => {
    const { hh, runs } = await slowGateway(0);
    const taskId = newTaskId();
    // Another submission already holds the task id cluster-wide (on some other gateway).
    const kv = await new Kvm(hh.runtime.nc).open(KV_BUCKETS.nonces);
    await kv.create(taskClaimKey(taskId), JSON.stringify({ taskId, nonce: "someone-else", submissionId: "another-submission", gatewayId: "gw-x" }));
    const s = await submission(hh, taskId);
    const started = performance.now();
    const out = await submitTask(hh.runtime.nc, { request: s.request, args: s.args, chain: [s.artifact], timeoutMs: 15_000 });
    expect(out).toMatchObject({ verdict: "deny", codes: ["REPLAYED"], gatewayId: "gw-1" });
    expect(out.duplicate).toBeUndefined();
    expect(out.checks?.find((c) => c.check === "task")).toMatchObject({ code: "REPLAYED", detail: "task id already claimed in the cluster" });
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(runs()).toBe(0);
  });

  it("another submission for a task id that already ran is denied REPLAYED at once, not as a duplicate", async () => {
    const { hh, runs } = await slowGateway(0);
    const taskId = newTaskId();
    const a = await submission(hh, taskId, "a");
    expect(await submitTask(hh.runtime.nc, { request: a.request, args: a.args, chain: [a.artifact], timeoutMs: 15_000 })).toMatchObject({ verdict: "allow" });
    const b = await submission(hh, taskId, "b");
    const started = performance.now();
    const other = await submitTask(hh.runtime.nc, { request: b.request, args: b.args, chain: [b.artifact], timeoutMs: 15_000 });
    expect(other).toMatchObject({ verdict: "deny", codes: ["REPLAYED"], submissionId: submissionIdOf({ request: b.request, args: b.args }) });
    expect(other.duplicate).toBeUndefined();
    // Answered on its own outcome, not held for a grace period (that would take 2 s or more).
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(runs()).toBe(1);
  });
});
