// The soak's world: the project's harness (a real nats-server from the launcher, an authority
// that heartbeats, two gateways with LevelDB logs in a temp dir), a client Runtime with short
// deadlines, instrumented handlers that record every invocation, and the two faults the soak
// injects (a killed nats-server restarted on its port and store; heartbeats stopped until the
// feed is stale). Everything here records facts; the oracle and the checks live elsewhere.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { artifactId as artifactIdOf, delegateArtifact, signRequest } from "../../src/core/artifacts.ts";
import { childTaskId as childTaskIdOf } from "../../src/core/child-task-id.ts";
import type { SignedArtifact, SignedRequest } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import type { ActionContext, ChildTask, Gateway } from "../../src/gateway/gateway.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import { SpawnRefusedError } from "../../src/gateway/spawn-error.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { Runtime } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { Rng } from "./prng.ts";

export interface SoakTimings {
  /** Client decision deadline and outcome wait (Runtime outcomeTimeoutMs), also ctx.spawn's wait. */
  outcomeTimeoutMs: number;
  /** Allowed clock skew, the same on gateways and clients. */
  skewMs: number;
  /** A feed older than this denies every task. */
  maxFeedAgeMs: number;
  heartbeatMs: number;
  evidenceDeadlineMs: number;
  taskAckWaitMs: number;
}

export const TIMINGS: SoakTimings = { outcomeTimeoutMs: 6_000, skewMs: 1_000, maxFeedAgeMs: 3_000, heartbeatMs: 500, evidenceDeadlineMs: 2_500, taskAckWaitMs: 4_000 };

/**
 * The longest a client spawn may take before it counts as hung: the client's own worst case
 * (deadline + 2·skew, a 2 s claim read, one more outcome wait, a publish timeout or two) with
 * generous room for a loaded two-core machine. Not a performance bound: a spawn that passes
 * it never resolved on its own.
 */
export function hangBoundMs(t: SoakTimings): number {
  return 2 * t.outcomeTimeoutMs + 2 * t.skewMs + 2_000 + 25_000;
}

export type Expectation = "may-run" | "must-deny";

/** One task id the soak submitted (or a handler spawned), with what the oracle expects of it. */
export interface TaskRecord {
  taskId: string;
  kind: string;
  expect: Expectation;
  /** Why it must be denied (the check the oracle expects to fail), or a note on a may-run. */
  why: string;
  /** Gateways that may run it (bindings.gateways); undefined: any. */
  onlyOn?: string[];
  /** The leaf artifact's nonce, when known. */
  nonce?: string;
  parentTaskId?: string;
  /** Several submissions (copies, replays, another artifact) name this task id. */
  multiSubmission: boolean;
  /** The client's view, for the spawn that waited on it (if any). */
  client?: { startedAt: number; settledAt?: number; outcome?: TaskOutcome; via: "runtime.spawn" | "submitTask" | "ctx.spawn"; threw?: string };
  /** The raw submit body, kept for replays. */
  body?: string;
  notes: string[];
}

export interface Invocation {
  gatewayId: string;
  taskId: string;
  nonce: string;
  action: string;
  at: number;
  /** The deciding gateway's durably committed log size when the handler was invoked. */
  durableSize: number;
}

export interface Window {
  from: number;
  to: number;
  what: string;
}

export interface SoakWorld {
  h: Harness;
  rt: Runtime;
  nc: NatsConnection;
  gateways: Gateway[];
  agents: KeyPair[];
  authorityKey: KeyPair;
  rootScope: { actions: string[]; resources: string[]; constraints: { amount: { max: number } } };
  tasks: Map<string, TaskRecord>;
  invocations: Invocation[];
  /** Harness-level problems (a generator that threw): they fail the run too. */
  errors: string[];
  busDown: Window[];
  stale: Window[];
  /** issuedAt of every heartbeat seen on the wire, or reported landed by the authority. */
  heartbeats: number[];
  nextNonce(label: string): string;
  policy: { id: string; digest: string };
  track(r: TaskRecord): TaskRecord;
  /** Wait (bounded) until every gateway's log has folded the revocation of `id`. */
  revocationApplied(id: string, ms?: number): Promise<boolean>;
  /** Follow a client promise: settle time and outcome go into the task's record. */
  follow(r: TaskRecord, via: NonNullable<TaskRecord["client"]>["via"], p: Promise<TaskOutcome>): Promise<TaskOutcome | undefined>;
  outstanding(): number;
  pending: Set<Promise<unknown>>;
  killBus(rng: Rng): Promise<void>;
  staleFeed(rng: Rng): Promise<void>;
  /**
   * Activate another policy (new digest) until every gateway runs it, hold it, then put the run's
   * policy back: every task of the run is bound to the first, so none may be allowed meanwhile.
   */
  flipPolicy(rng: Rng): Promise<void>;
  otherPolicy: Window[];
  /** Crash one gateway (no goodbye) and start it again on the same log, key and id. */
  crashGateway(rng: Rng, whileDown?: () => Promise<(() => void) | undefined>): Promise<void>;
  crashes: Window[];
  close(): Promise<void>;
}

export async function startSoakWorld(seed: number, t: SoakTimings = TIMINGS): Promise<SoakWorld> {
  const h = await startHarness({
    gateways: 2,
    heartbeatMs: t.heartbeatMs,
    gateway: {
      evidenceDeadlineMs: t.evidenceDeadlineMs,
      limits: { maxSkewMs: t.skewMs, maxFeedAgeMs: t.maxFeedAgeMs },
      childTimeoutMs: t.outcomeTimeoutMs,
      handlerTimeoutMs: 60_000,
      stopGraceMs: 15_000,
      // Short, so redeliveries of unacknowledged tasks (after an outage) happen inside the run.
      taskAckWaitMs: t.taskAckWaitMs,
    },
  });
  let rt: Runtime;
  try {
    const gatewayKeys = Array.from({ length: 4 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId);
    rt = await Runtime.connect({ natsUrl: h.url, outcomeTimeoutMs: t.outcomeTimeoutMs, maxSkewMs: t.skewMs, gatewayKeys });
  } catch (e) {
    await h.close();
    throw e;
  }
  const agents = Array.from({ length: 5 }, (_, i) => namedKey(`agent-${i}`));
  const keyOf = new Map(agents.map((k) => [k.keyId, k]));
  const tasks = new Map<string, TaskRecord>();
  const invocations: Invocation[] = [];
  const errors: string[] = [];
  const heartbeats: number[] = [];
  const pending = new Set<Promise<unknown>>();
  let nonceN = 0;
  const busDown: Window[] = [];
  const stale: Window[] = [];
  const crashes: Window[] = [];
  const otherPolicy: Window[] = [];
  /** Crashed gateway instances not yet replaced: they follow nothing any more. */
  const down = new Set<Gateway>();

  // Heartbeats as they cross the wire (core subscription on the stream's subject).
  const hbSub: Subscription = rt.nc.subscribe(SUBJECTS.heartbeat, {
    callback: (err, m) => {
      if (err !== null) return;
      try {
        const v = JSON.parse(m.string()) as { payload?: { issuedAt?: unknown } };
        if (typeof v.payload?.issuedAt === "number") heartbeats.push(v.payload.issuedAt);
      } catch {
        // not ours to judge
      }
    },
  });
  const hbPoll = setInterval(() => {
    const at = h.authority.lastHeartbeatAt;
    if (at !== undefined && heartbeats[heartbeats.length - 1] !== at) heartbeats.push(at);
  }, 50);
  hbPoll.unref();

  const policy = { id: "failclosed-default", digest: "" };
  const w: SoakWorld = {
    h,
    rt,
    nc: rt.nc,
    // The gateways now running (a crashed one is replaced by its restart).
    gateways: [...h.gateways],
    agents,
    authorityKey: namedKey("authority"),
    rootScope: { actions: ["transfer", "read", "plan"], resources: ["payments/"], constraints: { amount: { max: 5000 } } },
    tasks,
    invocations,
    errors,
    busDown,
    stale,
    crashes,
    otherPolicy,
    heartbeats,
    pending,
    policy,
    nextNonce: (label) => namedNonce(`soak-${seed}-${nonceN++}-${label}`),
    track(r) {
      if (tasks.has(r.taskId)) {
        const prev = tasks.get(r.taskId)!;
        // One task id, several submissions: the strictest expectation wins, and it is marked.
        prev.multiSubmission = true;
        if (r.expect === "must-deny") prev.expect = "must-deny";
        prev.notes.push(`also submitted as ${r.kind}`);
        return prev;
      }
      tasks.set(r.taskId, r);
      return r;
    },
    async revocationApplied(id, ms = 6_000) {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        if (w.gateways.filter((g) => !down.has(g)).every((g) => g.ledger.state.revokedArtifacts.has(id) || g.ledger.state.revokedKeys.has(id))) return true;
        await sleep(25);
      }
      return false;
    },
    follow(r, via, p) {
      r.client = { startedAt: Date.now(), via };
      const c = r.client;
      const q = p.then(
        (o) => {
          c.settledAt = Date.now();
          c.outcome = o;
          return o;
        },
        (e: unknown) => {
          c.settledAt = Date.now();
          c.threw = String(e);
          return undefined;
        },
      );
      pending.add(q);
      void q.finally(() => pending.delete(q));
      return q;
    },
    outstanding: () => pending.size,
    async killBus(rng) {
      const server = h.server!;
      await server.kill();
      const from = Date.now();
      // From a blip to longer than the evidence deadline and the task ack wait (redeliveries).
      await sleep(rng.pick([300, 1_000, 2_000, 3_500, 6_000]) + rng.int(0, 500));
      const to = Date.now();
      busDown.push({ from, to, what: "nats-server killed" });
      await server.restart();
    },
    async staleFeed(rng) {
      h.authority.stopHeartbeats();
      // A heartbeat already under way finishes (its bucket read may take up to 2 s).
      await sleep(t.maxFeedAgeMs + rng.int(1_000, 2_500));
      const to = Date.now();
      // `from` is fixed after the run, from the last heartbeat issued before `to`.
      stale.push({ from: Number.NaN, to, what: "heartbeats stopped" });
      await h.authority.startHeartbeats(t.heartbeatMs).catch((e: unknown) => errors.push(`startHeartbeats after a stale window failed: ${String(e)}`));
    },
    async flipPolicy(rng) {
      const other: PolicyDocument = { ...DEFAULT_POLICY, version: `soak-${seed}-${otherPolicy.length}` };
      const digest = policyDigest(other);
      await h.authority.publishPolicy(other);
      let from: number | undefined;
      for (let i = 0; i < 200 && from === undefined; i++) {
        if (w.gateways.every((g) => g.ledger.state.policy?.digest === digest)) from = Date.now();
        else await sleep(25);
      }
      await sleep(rng.int(500, 2_500));
      const to = Date.now();
      await h.authority.publishPolicy(DEFAULT_POLICY);
      if (from !== undefined) otherPolicy.push({ from, to, what: `policy ${digest} in force on every gateway` });
      else errors.push(`policy flip: not every gateway took policy ${digest} within 5 s`);
    },
    async crashGateway(rng, whileDown) {
      const i = rng.int(0, w.gateways.length - 1);
      const g = w.gateways[i]!;
      await g.crash();
      down.add(g);
      const from = Date.now();
      const afterRestart = await whileDown?.().catch((e: unknown) => {
        errors.push(`while ${g.id} was down: ${String(e)}`);
        return undefined;
      });
      await sleep(rng.int(200, 1_500));
      const g2 = await h.startGateway({ id: g.id, key: namedKey(`gateway-${i + 1}`), audit: join(h.dir, g.id) });
      registerHandlers(w, g2, keyOf, t);
      w.gateways[i] = g2;
      down.delete(g);
      crashes.push({ from, to: Date.now(), what: `${g.id} crashed and restarted` });
      afterRestart?.();
    },
    async close() {
      clearInterval(hbPoll);
      try {
        hbSub.unsubscribe();
      } catch {
        // closed with the connection
      }
      await rt.close().catch(() => undefined);
      await h.close();
    },
  };
  // The digest the authority granted under (its last published policy).
  {
    const probe = await h.authority.grant({
      taskId: `probe-${seed}`,
      holder: agents[0]!.keyId,
      scope: w.rootScope,
      validity: { notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 },
      nonce: w.nextNonce("probe"),
      attribution: { initiator: "soak", reason: "policy probe" },
    });
    policy.id = probe.artifact.payload.policy.id;
    policy.digest = probe.artifact.payload.policy.digest;
  }

  for (const g of h.gateways) registerHandlers(w, g, keyOf, t);
  return w;
}

/** Instrumented handlers: each invocation is recorded before anything else happens. */
function registerHandlers(w: SoakWorld, g: Gateway, keyOf: Map<string, KeyPair>, t: SoakTimings): void {
  const record = (ctx: ActionContext): void => {
    const leaf = ctx.chain[ctx.chain.length - 1];
    w.invocations.push({ gatewayId: ctx.gatewayId, taskId: ctx.taskId, nonce: leaf?.payload.nonce ?? "?", action: ctx.action, at: Date.now(), durableSize: g.ledger.store.size });
  };
  const simple = async (ctx: ActionContext): Promise<JsonValue> => {
    record(ctx);
    const d = (ctx.args as { delayMs?: unknown }).delayMs;
    if (typeof d === "number" && d > 0) await sleep(d);
    return { ok: true, by: ctx.gatewayId };
  };
  g.registerAction("transfer", simple);
  g.registerAction("read", simple);
  g.registerAction("plan", async (ctx) => {
    record(ctx);
    const spec = (ctx.args as { child?: unknown }).child;
    if (typeof spec !== "string" || spec === "none") return { child: "none" };
    try {
      const status = await spawnChild(w, ctx, spec, keyOf, t);
      return { child: status };
    } catch (e) {
      w.errors.push(`plan handler for ${ctx.taskId} on ${ctx.gatewayId} (child ${spec}) threw: ${String(e)}`);
      return { child: "error" };
    }
  });
}

export const CHILD_VARIANTS = ["valid", "nested", "overscope", "wrong-signer", "tampered", "revoked-child", "revoked-parent"] as const;
export type ChildVariant = (typeof CHILD_VARIANTS)[number];

/** One child of an executing parent, built and tracked per `spec`; resolves with the client's status. */
async function spawnChild(w: SoakWorld, ctx: ActionContext, spec: string, keyOf: Map<string, KeyPair>, t: SoakTimings): Promise<string> {
  const leaf = ctx.chain[ctx.chain.length - 1]!;
  const depth = leaf.payload.depth;
  const holderKey = keyOf.get(leaf.payload.holder);
  if (holderKey === undefined) throw new Error(`no key for holder ${leaf.payload.holder}`);
  const childKey = w.agents[(depth + 1) % w.agents.length]!;
  const stranger = w.agents[(depth + 3) % w.agents.length]!;
  // In the parent's namespace: the gateway signs a spawn lineage for no other child id.
  const childTaskId = childTaskIdOf(ctx.taskId, "c");
  const nested = spec === "nested";
  const delegation = {
    scope: { actions: nested ? ["transfer", "plan"] : ["transfer"], resources: ["payments/"], constraints: { amount: { max: 100 } } },
    validity: leaf.payload.validity,
    nonce: w.nextNonce(`child-${spec}`),
    attribution: { initiator: "soak-planner", reason: `child ${spec}` },
  };
  const action = nested ? "plan" : "transfer";
  const signedArgs: JsonValue = nested ? { amount: 1, child: "valid" } : { amount: spec === "overscope" ? 500 : 50 };
  const artifact: SignedArtifact = delegateArtifact(leaf, holderKey, { ...delegation, holder: childKey.keyId });
  const now = Date.now();
  const signer = spec === "wrong-signer" ? stranger : childKey;
  const request: SignedRequest = signRequest(signer, { taskId: childTaskId, action, resource: "payments/child", args: signedArgs, artifact, parentTaskId: ctx.taskId, createdAt: now, notAfter: now + t.outcomeTimeoutMs });
  const args: JsonValue = spec === "tampered" ? { amount: 99 } : signedArgs;
  const r = w.track({ taskId: childTaskId, kind: `child-${spec}`, expect: "may-run", why: "", nonce: delegation.nonce, parentTaskId: ctx.taskId, multiSubmission: false, notes: [] });
  switch (spec) {
    case "valid":
    case "nested":
      break;
    case "overscope":
      r.expect = "must-deny";
      r.why = "POLICY_MISMATCH: amount 500 over the child's max 100";
      break;
    case "wrong-signer":
      r.expect = "must-deny";
      r.why = "IDENTITY_MISMATCH: request signed by a key that is not the child artifact's holder";
      break;
    case "tampered":
      r.expect = "must-deny";
      r.why = "BAD_SIGNATURE: args differ from the signed argsDigest";
      break;
    case "revoked-child":
    case "revoked-parent": {
      const target = spec === "revoked-child" ? artifact : ctx.chain[0]!;
      const id = artifactIdOf(target);
      try {
        await w.h.authority.revoke({ type: "artifact", id }, `soak ${spec}`);
        if (await w.revocationApplied(id)) {
          r.expect = "must-deny";
          r.why = `REVOKED: ${spec === "revoked-child" ? "its artifact" : "its root ancestor"} was revoked and folded into every gateway's log before the spawn`;
        } else r.notes.push("revocation not seen by every gateway in time: not held to a deny");
      } catch (e) {
        r.notes.push(`revoke failed (${String(e)}): not held to a deny`);
      }
      break;
    }
    default:
      throw new Error(`unknown child variant ${spec}`);
  }
  const child: ChildTask = { request, args, artifact };
  // A parent revoked while it executes signs no more children: ctx.spawn refuses (code REVOKED),
  // which is that child's deny, told at once. Any other refusal stays a thrown spawn (INV4).
  const spawned =
    spec === "revoked-parent"
      ? ctx.spawn(child).catch((e: unknown): TaskOutcome => {
          if (!(e instanceof SpawnRefusedError) || e.code !== "REVOKED") throw e;
          r.notes.push(`refused at spawn: ${e.message}`);
          return { taskId: childTaskId, gatewayId: ctx.gatewayId, verdict: "deny", codes: ["REVOKED"], status: "denied", detail: e.message };
        })
      : ctx.spawn(child);
  const o = await w.follow(r, "ctx.spawn", spawned);
  return o?.status ?? "threw";
}

/** Publish a submit body straight onto the shared work queue (a copy, a replay). */
export async function publishRaw(w: SoakWorld, body: string): Promise<void> {
  await jetstream(w.nc).publish(SUBJECTS.taskSubmit, body);
}
