// Shared by gateway and client tests: a harness per test on a real nats-server, a
// gateway whose handler can be slowed (to keep a one-slot gateway busy), grants, and a transfer.
import { Kvm } from "@nats-io/kv";
import { afterEach, expect } from "vitest";
import { KV_BUCKETS, taskClaimKey } from "../../src/nats/contract.ts";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { signRequest } from "../../src/core/artifacts.ts";
import type { SignedArtifact, SignedLineage, SignedRequest } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import type { Gateway } from "../../src/gateway/gateway.ts";
import type { Authority } from "../../src/runtime/authority.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";

export const agent = namedKey("agent-0");
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Registers closing after each test; returns the start of a fresh harness (no gateway yet). */
export function harnessPerTest(): () => Promise<Harness> {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });
  return async () => (h = await startHarness({ gateways: 0 }));
}

export interface TestGateway {
  gw: Gateway;
  /** Task ids whose handler ran to its end. */
  ran: string[];
  keys: Set<string>;
  /** A root grant for `taskId`, valid from a minute ago for `validForMs` (default an hour). */
  grant: (taskId: string, validForMs?: number) => Promise<SignedArtifact>;
  /** Spawn a task whose handler holds its slot for `ms`; resolves once it has the slot, with its outcome to come. */
  hold: (ms: number) => Promise<{ done: Promise<TaskOutcome> }>;
}

/** A gateway whose "transfer" handler sleeps `args.slowMs` when given, then records the task as run. */
export async function testGateway(hh: Harness, o: { maxInFlight?: number } = {}): Promise<TestGateway> {
  const gw = await hh.startGateway(o.maxInFlight !== undefined ? { maxInFlight: o.maxInFlight } : {});
  const ran: string[] = [];
  gw.registerAction("transfer", async ({ taskId, args }) => {
    const slow = (args as { slowMs?: number }).slowMs;
    if (slow !== undefined) await sleep(slow);
    ran.push(taskId);
    return { ok: true };
  });
  const grant = async (taskId: string, validForMs = 3_600_000): Promise<SignedArtifact> =>
    (
      await hh.authority.grant({
        taskId,
        holder: agent.keyId,
        scope: DEFAULT_SCOPE,
        validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + validForMs },
        nonce: namedNonce(`client-${taskId}`),
        attribution: { initiator: "t", reason: "client tests" },
      })
    ).artifact;
  const hold = async (ms: number): Promise<{ done: Promise<TaskOutcome> }> => {
    const a = newTaskId();
    const done = hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1, slowMs: ms }, chain: [await grant(a)], taskId: a }).outcome;
    await sleep(300);
    return { done };
  };
  return { gw, ran, keys: new Set([gw.keyId]), grant, hold };
}

let roots = 0;

/** A root grant by the harness's authority for `taskId`, held by `agent`, valid from a minute ago for an hour. */
export async function grantRoot(hh: Harness, taskId: string): Promise<SignedArtifact> {
  const now = Date.now();
  const { artifact } = await hh.authority.grant({
    taskId,
    holder: agent.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`root-${taskId}-${roots++}`),
    attribution: { initiator: "t", reason: "gateway tests" },
  });
  return artifact;
}

/**
 * A root grant for `taskId` held by `holder`, for `actions` on payments/: its artifact and the
 * origin lineage the authority published for it (tests that build a child's lineage need it).
 */
export function grantActions(hh: Harness, taskId: string, holder: string, actions: string[]): Promise<{ artifact: SignedArtifact; lineage: SignedLineage }> {
  const now = Date.now();
  return hh.authority.grant({
    taskId,
    holder,
    scope: { actions, resources: ["payments/"], constraints: {} },
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`actions-${taskId}-${roots++}`),
    attribution: { initiator: "t", reason: "gateway tests" },
  });
}

/** A "transfer" request for `taskId` under `artifact`, signed by `by` (default `agent`) now, with its deadline `deadlineMs` from now. */
export function transferRequest(taskId: string, artifact: SignedArtifact, args: { [k: string]: JsonValue }, by: KeyPair = agent, deadlineMs = 20_000): SignedRequest {
  const now = Date.now();
  return signRequest(by, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: now, notAfter: now + deadlineMs });
}

/** `agent` transfers 1 under `artifact` as task `taskId`; resolves with the outcome. */
export function transfer(hh: Harness, taskId: string, artifact: SignedArtifact): Promise<TaskOutcome> {
  return hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
}

let granted = 0;
/**
 * A root grant by `authority` for `taskId` (valid from a minute ago for an hour), bound to policy
 * `doc`, or to the one the authority published last.
 */
export async function grantFrom(authority: Authority, taskId: string, doc?: PolicyDocument): Promise<SignedArtifact> {
  const now = Date.now();
  const { artifact } = await authority.grant({
    taskId,
    holder: agent.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`granted-${granted++}`),
    attribution: { initiator: "t", reason: "policy tests" },
    ...(doc !== undefined ? { policy: { id: doc.id, digest: policyDigest(doc) } } : {}),
  });
  return artifact;
}

/** A root grant by the harness's authority for `taskId`, bound to policy `doc`. */
export const grantUnder = (hh: Harness, taskId: string, doc: PolicyDocument): Promise<SignedArtifact> => grantFrom(hh.authority, taskId, doc);

/** Wait (polling every 20 ms, up to `ms`) for `what`, and fail the test if it never holds. */
export async function until(what: () => boolean, ms = 5_000): Promise<void> {
  for (let i = 0; i < ms / 20 && !what(); i++) await sleep(20);
  expect(what()).toBe(true);
}

/** The task id's claim in the claims bucket, as its JSON, or null when there is none. */
export async function claimOf(hh: Harness, taskId: string): Promise<Record<string, unknown> | null> {
  const e = await (await new Kvm(hh.runtime.nc).open(KV_BUCKETS.nonces)).get(taskClaimKey(taskId));
  return e === null ? null : e.json<Record<string, unknown>>();
}
