// A user's journey through the public API (src/index.ts) alone, written as a user's review of
// the README: an authority grants root artifacts; a planner task runs on a gateway and, from its
// handler, spawns children and a grandchild under attenuated artifacts (ctx.spawn(rt.child(...)));
// a separate client takes only outcomes the gateway signed, and forged ones on the outcome subject
// change nothing; widening and out-of-scope children are denied, and a child id outside its
// parent's namespace is refused; a revocation that lands while a planner runs denies its in-flight
// child, tells its handler (ctx.signal, TaskRevokedError) and stops it spawning more; a handler
// that overruns its timeout is answered failed/timedOut and its late outcome follows; a client
// trusting the wrong gateway key is told "unknown", never a false answer; everything closes, the
// audit log replays clean, and the README's ten-line tour runs and exits by itself.
// The review's findings are pinned as the refusals they became: settings that could never work
// (gateway settings without dataDir, no gatewayKeys without acceptUnsignedOutcomes, a mistyped
// key, a root spawn without its task id, an artifact every gateway would refuse) are TypeErrors
// before anything connects, signs or is published; a data directory in use is BACKEND_LOCKED.
// Real nats-server, real LevelDB, real Ed25519: nothing is mocked.
import { randomBytes } from "node:crypto";
import { spawn as spawnProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ARTIFACT_KIND,
  Authority,
  BackendError,
  DEFAULT_POLICY,
  LevelBackend,
  Runtime,
  SUBJECTS,
  SpawnRefusedError,
  TaskRevokedError,
  TrustStoreError,
  artifactId,
  awaitOutcome,
  backendLogSource,
  childTaskId,
  generateKeyPair,
  isChildTaskIdOf,
  newTaskId,
  replay,
  signPayload,
  signRequest,
  startNatsServer,
  submissionIdOf,
  submitTask,
  verifySigned,
  type ActionContext,
  type ArtifactPayload,
  type ArtifactScope,
  type ChildTask,
  type JsonValue,
  type KeyPair,
  type NatsServerHandle,
  type SignedArtifact,
  type TaskOutcome,
} from "../../src/index.ts";

const GW_ID = "gw-1";
/** The skew the gateway allows and the clients assume: the two knobs are set apart and must agree. */
const SKEW_MS = 1_000;
const HANDLER_TIMEOUT_MS = 6_000;
const EVIDENCE_DEADLINE_MS = 4_000;
const BINDINGS = { gateways: [GW_ID] };
/** Nothing listens here: a connect that got as far as the network would fail otherwise. */
const NOWHERE = "nats://127.0.0.1:1";

const ROOT_SCOPE: ArtifactScope = { actions: ["plan", "read", "summarize"], resources: ["projects/q3/"], constraints: { tokens: { max: 5_000 } } };
const RESEARCH_SCOPE: ArtifactScope = { actions: ["read", "summarize"], resources: ["projects/q3/sources"], constraints: { tokens: { max: 1_000 } } };
const WRITER_SCOPE: ArtifactScope = { actions: ["summarize"], resources: ["projects/q3/sources/draft"], constraints: { tokens: { max: 400 } } };
const PAY_SCOPE: ArtifactScope = { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { max: 5_000 } } };

/** Nonces: 16..128 base64url characters, the artifact schema's rule (grant refuses others). */
const fresh = (): string => randomBytes(16).toString("base64url");

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
}
function deferred<T = void>(): Deferred<T> {
  let resolve: (v: T) => void = () => undefined;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolve with `p`, or with "timeout" after `ms`: a hung step must fail the test, not hang it. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  return Promise.race([p, sleep(ms).then(() => "timeout" as const)]);
}

/** The gateway signed this outcome (its `sig` over every other field, domain failclosed/outcome/v1). */
function signedByGateway(o: TaskOutcome, key: KeyPair): boolean {
  const { sig, ...payload } = o;
  return typeof sig === "string" && payload.signer === key.keyId && verifySigned("outcome", { payload, sig }, key.publicKey);
}

/** Resolves once `signal` aborts (at once if it has). */
function abortOf(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((r) => signal.addEventListener("abort", () => r(), { once: true }));
}

const planner = generateKeyPair();
const researcher = generateKeyPair();
const writer = generateKeyPair();
const payer = generateKeyPair();
const rogue = generateKeyPair();
const gatewayKey = generateKeyPair();

let server: NatsServerHandle | undefined;
let dir: string | undefined;
let authority: Authority | undefined;
let rt: Runtime | undefined;
let client: Runtime | undefined;
let rogueClient: Runtime | undefined;
const warnings: string[] = [];

/** What the journey planner's handler (task A) saw. */
const A = {
  forgedSent: deferred(),
  forgedSubmissionId: undefined as string | undefined,
  research: undefined as TaskOutcome | undefined,
  researchTaskId: "",
  widenThrown: undefined as unknown,
  wide: undefined as TaskOutcome | undefined,
  nosy: undefined as TaskOutcome | undefined,
  strayRefusal: undefined as unknown,
  attestRefusal: undefined as unknown,
  ctx: undefined as ActionContext | undefined,
  handlerError: undefined as unknown,
};
/** What the revoked planner's handler (task B) saw. */
const B = {
  first: undefined as TaskOutcome | undefined,
  inflightSubmitted: deferred<number>(),
  inflightTaskId: "",
  inflightOutcome: undefined as Promise<TaskOutcome> | undefined,
  abortedAt: undefined as number | undefined,
  abortReason: undefined as unknown,
  attestRefusal: undefined as unknown,
  spawnRefusal: undefined as unknown,
};
/** Released by the test: a "plan" task in mode "hold" waits for it. */
const held = deferred();
/** What the slow transfer handler (task C) saw. */
const C = {
  signalAborted: undefined as boolean | undefined,
  spawnAfterTimeout: undefined as unknown,
  finished: deferred(),
};

function grantFor(holder: KeyPair, taskId: string, scope: ArtifactScope, reason: string, nonce = fresh()): Promise<{ artifact: SignedArtifact }> {
  const now = Date.now();
  return authority!.grant({
    taskId,
    holder: holder.keyId,
    scope,
    bindings: BINDINGS,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce,
    attribution: { initiator: "alice", reason },
  });
}

/** A child of the task in `ctx`, the README way: rt.child, delegated by the parent's holder. */
function childOf(ctx: ActionContext, o: { holderKey: KeyPair; childAgent: KeyPair; scope: ArtifactScope; action: string; resource: string; args: JsonValue; label?: string }): ChildTask {
  const leaf = ctx.chain[ctx.chain.length - 1]!;
  return rt!.child({
    parent: leaf,
    parentTaskId: ctx.taskId,
    holderKey: o.holderKey,
    childAgent: o.childAgent,
    delegation: { scope: o.scope, bindings: BINDINGS, validity: leaf.payload.validity, nonce: fresh(), attribution: { initiator: leaf.payload.attribution.initiator, onBehalfOf: ctx.agent, reason: `${o.action} ${o.resource}` } },
    action: o.action,
    resource: o.resource,
    args: o.args,
    ...(o.label !== undefined ? { label: o.label } : {}),
  });
}

async function journeyPlanner(ctx: ActionContext): Promise<JsonValue> {
  // Held until the test has put forged outcomes for this submission on the bus.
  await within(A.forgedSent.promise, 5_000);
  const leaf = ctx.chain[ctx.chain.length - 1]!;
  const research = childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/sources/revenue", args: { tokens: 800, handOff: true }, label: "research" });
  A.researchTaskId = research.request.payload.taskId;
  A.research = await ctx.spawn(research);

  // A widening delegation through the documented API: refused before anything is signed.
  try {
    childOf(ctx, { holderKey: planner, childAgent: researcher, scope: { ...RESEARCH_SCOPE, actions: ["read", "transfer"] }, action: "read", resource: "projects/q3/sources/x", args: { tokens: 1 } });
  } catch (e) {
    A.widenThrown = e;
  }
  // The same widening signed by hand (a buggy or hostile planner): the gateway must deny it.
  const widePayload: ArtifactPayload = {
    kind: ARTIFACT_KIND,
    issuer: planner.keyId,
    holder: researcher.keyId,
    scope: { ...RESEARCH_SCOPE, actions: ["read", "transfer"] },
    bindings: BINDINGS,
    validity: leaf.payload.validity,
    nonce: fresh(),
    policy: leaf.payload.policy,
    parent: artifactId(leaf),
    depth: leaf.payload.depth + 1,
    attribution: { initiator: "alice", reason: "widened on purpose" },
    metadata: {},
  };
  const wide = signPayload("artifact", widePayload, planner);
  const wideArgs = { tokens: 100 };
  const now = Date.now();
  A.wide = await ctx.spawn({
    artifact: wide,
    args: wideArgs,
    request: signRequest(researcher, { taskId: childTaskId(ctx.taskId, "wide"), action: "read", resource: "projects/q3/sources/churn", args: wideArgs, artifact: wide, parentTaskId: ctx.taskId, createdAt: now, notAfter: now + 15_000 }),
  });

  // A child asking outside its own (narrower) artifact's scope.
  A.nosy = await ctx.spawn(childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/payroll", args: { tokens: 100 }, label: "nosy" }));

  // A child id outside this task's namespace (someone else's root id): refused, nothing signed.
  const stray = childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/sources/y", args: { tokens: 1 }, label: "stray" });
  const strayTaskId = newTaskId();
  const strayChild: ChildTask = {
    artifact: stray.artifact,
    args: stray.args,
    request: signRequest(researcher, { taskId: strayTaskId, action: "read", resource: "projects/q3/sources/y", args: stray.args, artifact: stray.artifact, parentTaskId: ctx.taskId, createdAt: Date.now(), notAfter: Date.now() + 15_000 }),
  };
  A.strayRefusal = await ctx.spawn(strayChild).then(
    () => undefined,
    (e: unknown) => e,
  );
  try {
    ctx.attest(strayTaskId, stray.artifact);
  } catch (e) {
    A.attestRefusal = e;
  }
  A.ctx = ctx;
  return { plan: ["revenue", "churn"], research: { taskId: A.research.taskId, status: A.research.status, result: A.research.result ?? null } };
}

async function revokedPlanner(ctx: ActionContext): Promise<JsonValue> {
  const told = abortOf(ctx.signal);
  B.first = await ctx.spawn(childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/sources/a", args: { tokens: 10 }, label: "first" }));
  // A child this handler submits itself (ctx.attest + submitTask), its lineage withheld, so that
  // it waits in the gateway, collecting evidence, when the revocation lands.
  const inflight = childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/sources/b", args: { tokens: 10 }, label: "inflight" });
  B.inflightTaskId = inflight.request.payload.taskId;
  ctx.attest(B.inflightTaskId, inflight.artifact);
  const before = rt!.gateway!.inFlight;
  B.inflightOutcome = submitTask(rt!.nc, { request: inflight.request, args: inflight.args, chain: [...ctx.chain, inflight.artifact], timeoutMs: 15_000, skewMs: SKEW_MS, gatewayKeys: new Set([gatewayKey.keyId]) });
  B.inflightSubmitted.resolve(before);
  // The handler goes on until it is told of the revocation (or gives up, and the test fails).
  await within(told, 15_000);
  B.abortedAt = Date.now();
  B.abortReason = ctx.signal.reason;
  const after = childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/sources/c", args: { tokens: 10 }, label: "after" });
  try {
    ctx.attest(after.request.payload.taskId, after.artifact);
  } catch (e) {
    B.attestRefusal = e;
  }
  B.spawnRefusal = await ctx.spawn(after).then(
    (o) => o,
    (e: unknown) => e,
  );
  return { first: B.first.status, told: ctx.signal.aborted };
}

describe("a user's multi-agent program against the public API", () => {
  let slowC: { taskId: string; outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined> } | undefined;
  let rogueF: { taskId: string; outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined>; trusted: Promise<TaskOutcome>; startedAt: number } | undefined;
  const t0 = Date.now();

  beforeAll(async () => {
    server = await startNatsServer();
    dir = await mkdtemp(join(tmpdir(), "fc-user-journey-"));
    const natsUrl = server.url;
    // As in "A governed task in ten lines".
    authority = await Authority.connect({ natsUrl, key: generateKeyPair() });
    await authority.publishPolicy(DEFAULT_POLICY);
    await authority.startHeartbeats(1_000);
    rt = await Runtime.connect({
      natsUrl,
      dataDir: join(dir, "audit"),
      gatewayKeys: [],
      gateway: {
        gatewayId: GW_ID,
        gatewayKey,
        authorities: [authority.keyId],
        limits: { maxSkewMs: SKEW_MS },
        handlerTimeoutMs: HANDLER_TIMEOUT_MS,
        evidenceDeadlineMs: EVIDENCE_DEADLINE_MS,
        onWarning: (m) => warnings.push(m),
      },
      outcomeTimeoutMs: 15_000,
      maxSkewMs: SKEW_MS,
    });
    // A client process of its own: no gateway, takes only outcomes the gateway signed.
    client = await Runtime.connect({ natsUrl, gatewayKeys: [gatewayKey.keyId], outcomeTimeoutMs: 15_000, maxSkewMs: SKEW_MS, lateOutcomeWaitMs: 20_000 });
    // A client misconfigured with the wrong gateway key: it must never be told anything false.
    rogueClient = await Runtime.connect({ natsUrl, gatewayKeys: [rogue.keyId], outcomeTimeoutMs: 2_000, maxSkewMs: SKEW_MS, lateOutcomeWaitMs: 1_000 });

    rt.registerAction("plan", async (ctx) => {
      const mode = (ctx.args as { mode?: unknown }).mode;
      if (mode === "revoke") return revokedPlanner(ctx);
      if (mode !== "hold") return journeyPlanner(ctx);
      await within(held.promise, 5_000);
      return { held: true };
    });
    rt.registerAction("read", async (ctx) => {
      const notes = [`${ctx.resource}: Q3 revenue grew 12%`];
      if ((ctx.args as { handOff?: unknown }).handOff !== true) return { notes, by: ctx.agent };
      // The researcher hands the write-up to the writer: a grandchild at depth 2.
      const draft = childOf(ctx, { holderKey: researcher, childAgent: writer, scope: WRITER_SCOPE, action: "summarize", resource: "projects/q3/sources/draft", args: { tokens: 300, notes }, label: "draft" });
      const o = await ctx.spawn(draft);
      return { notes, by: ctx.agent, draft: { taskId: o.taskId, status: o.status, depth: draft.artifact.payload.depth, result: o.result ?? null } };
    });
    rt.registerAction("summarize", (ctx) => {
      const notes = (ctx.args as { notes?: unknown }).notes;
      return { summary: Array.isArray(notes) ? notes.join(" ") : "", by: ctx.agent };
    });
    // A payment whose bank call ignores ctx.signal: it overruns the handler timeout and lands anyway.
    rt.registerAction("transfer", async (ctx) => {
      await within(abortOf(ctx.signal), HANDLER_TIMEOUT_MS + 5_000);
      await sleep(300);
      C.signalAborted = ctx.signal.aborted;
      const child = childOf(ctx, { holderKey: payer, childAgent: writer, scope: { ...PAY_SCOPE, constraints: { amount: { max: 10 } } }, action: "transfer", resource: "payments/fee", args: { amount: 1 }, label: "fee" });
      C.spawnAfterTimeout = await ctx.spawn(child).then(
        () => undefined,
        (e: unknown) => e,
      );
      C.finished.resolve();
      return { sent: ctx.args };
    });
  });

  afterAll(async () => {
    // Idempotent: the last test closes everything; this only cleans up after a failure.
    for (const r of [rogueClient, client, rt]) await r?.close().catch(() => undefined);
    await authority?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("refuses caller mistakes up front with typed errors", async () => {
    // README: a registered name cannot be registered again; spawn/child refuse non-I-JSON args.
    expect(() => rt!.registerAction("plan", () => null)).toThrow(TypeError);
    await expect(Runtime.connect({ natsUrl: server!.url, gatewayKeys: [] })).rejects.toThrow(new TypeError("connect: gatewayKeys is empty and this runtime runs no gateway: no outcome could ever be accepted"));
    // A mistyped gateway key is found before connecting: nothing listens at NOWHERE, so a connect
    // attempt would have failed otherwise. The trust store's own error is its cause.
    const badKey = await Runtime.connect({ natsUrl: NOWHERE, gatewayKeys: ["not-a-key"] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(badKey).toBeInstanceOf(TypeError);
    expect((badKey as Error).message).toMatch(/^connect: gatewayKeys: /);
    expect((badKey as Error).cause).toBeInstanceOf(TrustStoreError);
    expect((badKey as Error).cause).toMatchObject({ code: "BAD_KEY" });
    // A root grant may not take a child-form id (README).
    await expect(grantFor(planner, childTaskId(newTaskId(), "x"), ROOT_SCOPE, "child-form id")).rejects.toThrow(TypeError);
    const parentTaskId = newTaskId();
    const { artifact } = await grantFor(planner, parentTaskId, ROOT_SCOPE, "mistakes");
    const base = {
      parent: artifact,
      parentTaskId,
      holderKey: planner,
      childAgent: researcher,
      delegation: { scope: RESEARCH_SCOPE, bindings: BINDINGS, validity: artifact.payload.validity, nonce: fresh(), attribution: { initiator: "alice", reason: "r" } },
      action: "read",
      resource: "projects/q3/sources/z",
    };
    expect(() => rt!.child({ ...base, args: { n: 1n } as unknown as JsonValue })).toThrow(TypeError);
    expect(() => rt!.child({ ...base, args: { tokens: 1 }, taskId: newTaskId() })).toThrow(TypeError);
    // Forgetting to carry the parent's bindings over is a widening too.
    expect(() => rt!.child({ ...base, delegation: { ...base.delegation, bindings: {} }, args: { tokens: 1 } })).toThrow(/gateway binding widened/);
    expect(() => client!.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: { n: 1n } as unknown as JsonValue, chain: [artifact], taskId: parentTaskId })).toThrow(TypeError);
  });

  it("refuses gateway settings without a dataDir with TypeError, before connecting, rather than run no gateway", async () => {
    const e = await Runtime.connect({ natsUrl: NOWHERE, gateway: { gatewayId: "gw-ghost", gatewayKey: generateKeyPair(), authorities: [authority!.keyId] }, gatewayKeys: [gatewayKey.keyId] }).then(
      (r) => r.close().then(() => undefined),
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(TypeError);
    expect((e as Error).message).toMatch(/^connect: gateway settings need dataDir .*without it no gateway would run/);
  });

  it("a second runtime on a data directory in use fails with BackendError BACKEND_LOCKED, and the first gateway runs on", async () => {
    const e = await Runtime.connect({ natsUrl: server!.url, dataDir: join(dir!, "audit"), gateway: { gatewayId: "gw-twin", gatewayKey: generateKeyPair(), authorities: [authority!.keyId] } }).then(
      (r) => r.close().then(() => undefined),
      (x: unknown) => x,
    );
    // Its own code: "in use" is not "the disk failed" (BACKEND_IO).
    expect(e).toBeInstanceOf(BackendError);
    expect(e).toMatchObject({ name: "BackendError", code: "BACKEND_LOCKED" });
    expect((e as Error).message).toMatch(/^BACKEND_LOCKED: .* is in use/);
    // The failed twin left the lock holder alone: the gateway still decides (the tests below).
    expect(rt!.gateway).toBeDefined();
  });

  it("a client runtime with no gatewayKeys is refused unless it sets acceptUnsignedOutcomes, which takes an unsigned \"succeeded\" as documented", async () => {
    const refused = await Runtime.connect({ natsUrl: NOWHERE, outcomeTimeoutMs: 15_000, maxSkewMs: SKEW_MS }).then(
      (r) => r.close().then(() => undefined),
      (x: unknown) => x,
    );
    expect(refused).toBeInstanceOf(TypeError);
    expect((refused as Error).message).toMatch(/needs gatewayKeys .* or acceptUnsignedOutcomes: true/);
    // The opt-in trusts NATS permissions on the outcome subject alone: whoever may publish there
    // tells it "succeeded" (the journey's client, with gatewayKeys, ignores the same forgery).
    const naive = await Runtime.connect({ natsUrl: server!.url, acceptUnsignedOutcomes: true, outcomeTimeoutMs: 15_000, maxSkewMs: SKEW_MS });
    try {
      const taskIdH = newTaskId();
      const { artifact } = await grantFor(planner, taskIdH, ROOT_SCOPE, "unsigned outcomes accepted");
      const sub = naive.nc.subscribe(SUBJECTS.taskSubmit, {
        callback: (_err, m) => {
          const body = JSON.parse(m.string()) as { request?: { payload?: { taskId?: unknown } } };
          if (body.request?.payload?.taskId !== taskIdH) return;
          const sid = submissionIdOf(body);
          naive.nc.publish(SUBJECTS.outcome(taskIdH), JSON.stringify({ taskId: taskIdH, gatewayId: GW_ID, verdict: "allow", codes: [], status: "succeeded", result: { forged: true }, ...(sid !== undefined ? { submissionId: sid } : {}) }));
        },
      });
      const o = await naive.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: { tokens: 1, mode: "hold" }, chain: [artifact], taskId: taskIdH }).outcome;
      sub.unsubscribe();
      expect(o).toMatchObject({ taskId: taskIdH, status: "succeeded", result: { forged: true } });
      expect(o.sig).toBeUndefined();
    } finally {
      held.resolve();
      await naive.close();
    }
  });

  it("spawn of a root task without the task id its grant names is a TypeError, and nothing is published", async () => {
    const granted = newTaskId();
    const { artifact } = await grantFor(planner, granted, ROOT_SCOPE, "root spawn needs its task id");
    // Every submission under this grant, whatever its task id (its request names the artifact).
    const submitted: string[] = [];
    const sub = client!.nc.subscribe(SUBJECTS.taskSubmit, {
      callback: (_err, m) => {
        const body = JSON.parse(m.string()) as { request?: { payload?: { artifactId?: unknown; taskId?: unknown } } };
        if (body.request?.payload?.artifactId === artifactId(artifact)) submitted.push(String(body.request.payload.taskId));
      },
    });
    try {
      const e = (() => {
        try {
          client!.spawn({ agent: planner, action: "summarize", resource: "projects/q3/notes", args: { tokens: 1, notes: ["n"] }, chain: [artifact] });
          return undefined;
        } catch (x) {
          return x;
        }
      })();
      expect(e).toBeInstanceOf(TypeError);
      expect((e as Error).message).toMatch(/^spawn: a root task needs the task id its grant names/);
      await client!.nc.flush();
      expect(submitted).toEqual([]);
      // With it, the same spawn is published once and allowed.
      const o = await client!.spawn({ agent: planner, action: "summarize", resource: "projects/q3/notes", args: { tokens: 1, notes: ["n"] }, chain: [artifact], taskId: granted }).outcome;
      expect(o).toMatchObject({ taskId: granted, verdict: "allow", status: "succeeded", gatewayId: GW_ID });
      expect(submitted).toEqual([granted]);
    } finally {
      sub.unsubscribe();
    }
  });

  it("refuses with TypeError an artifact every gateway would refuse as MALFORMED (nonce \"n-1\"): at grant, delegate and child, before anything is published", async () => {
    const taskId = newTaskId();
    const lineage: string[] = [];
    const sub = client!.nc.subscribe(SUBJECTS.lineage(taskId), { callback: (_err, m) => void lineage.push(m.string()) });
    try {
      const e = await grantFor(planner, taskId, ROOT_SCOPE, "short nonce", "n-1").then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(TypeError);
      expect((e as Error).message).toMatch(/^issueArtifact: gateways would refuse this artifact as MALFORMED \(.*nonce/);
      await client!.nc.flush();
      expect(lineage).toEqual([]);
      // The README's example nonce passes; its grant publishes the origin lineage the bad one did not.
      const { artifact } = await grantFor(planner, taskId, ROOT_SCOPE, "README nonce", "n-0123456789abcdef");
      await client!.nc.flush();
      expect(lineage).toHaveLength(1);
      const delegation = { scope: RESEARCH_SCOPE, bindings: BINDINGS, validity: artifact.payload.validity, nonce: "n-1", attribution: { initiator: "alice", reason: "short nonce" } };
      expect(() => rt!.delegate(artifact, planner, { ...delegation, holder: researcher.keyId })).toThrow(TypeError);
      expect(() => rt!.delegate(artifact, planner, { ...delegation, holder: researcher.keyId })).toThrow(/^delegate: gateways would refuse this artifact as MALFORMED \(.*nonce/);
      const child = { parent: artifact, parentTaskId: taskId, holderKey: planner, childAgent: researcher, delegation, action: "read", resource: "projects/q3/sources/n", args: { tokens: 1 }, label: "short-nonce" };
      expect(() => rt!.child(child)).toThrow(TypeError);
      expect(() => rt!.child(child)).toThrow(/^delegate: gateways would refuse this artifact as MALFORMED/);
      // The same delegation with a well-formed nonce is signed: the nonce alone was refused.
      expect(rt!.child({ ...child, delegation: { ...delegation, nonce: fresh() } }).artifact.payload.parent).toBe(artifactId(artifact));
    } finally {
      sub.unsubscribe();
    }
  });

  it("starts a payment that will overrun its handler timeout, and a client that trusts the wrong gateway key", async () => {
    const taskIdC = newTaskId();
    const { artifact: payGrant } = await grantFor(payer, taskIdC, PAY_SCOPE, "pay invoice 42");
    slowC = client!.spawn({ agent: payer, action: "transfer", resource: "payments/transfer", args: { amount: 250 }, chain: [payGrant], taskId: taskIdC });
    expect(slowC.taskId).toBe(taskIdC);

    const taskIdF = newTaskId();
    const { artifact: readGrant } = await grantFor(researcher, taskIdF, { actions: ["read"], resources: ["projects/q3/"], constraints: { tokens: { max: 10 } } }, "quick read");
    // A trusted observer listens for the same task's outcome, to show what really happened.
    const observer = awaitOutcome(client!.nc, taskIdF, 15_000, { gatewayKeys: new Set([gatewayKey.keyId]) });
    await observer.ready;
    const startedAt = Date.now();
    const f = rogueClient!.spawn({ agent: researcher, action: "read", resource: "projects/q3/sources/f", args: { tokens: 1 }, chain: [readGrant], taskId: taskIdF });
    rogueF = { ...f, trusted: observer.outcome, startedAt };
    const seen = await observer.outcome;
    expect(seen).toMatchObject({ taskId: taskIdF, verdict: "allow", status: "succeeded", gatewayId: GW_ID });
    expect(signedByGateway(seen, gatewayKey)).toBe(true);
  });

  it("runs a planner that delegates to a researcher and a writer; the client takes only gateway-signed outcomes", async () => {
    const taskIdA = newTaskId();
    const { artifact: root } = await grantFor(planner, taskIdA, ROOT_SCOPE, "write the Q3 report");
    // Someone who may publish on failclosed.outcome.> forges "succeeded" for this very submission.
    const sub = client!.nc.subscribe(SUBJECTS.taskSubmit, {
      callback: (_err, m) => {
        let body: unknown;
        try {
          body = JSON.parse(m.string());
        } catch {
          return;
        }
        const tid = (body as { request?: { payload?: { taskId?: unknown } } }).request?.payload?.taskId;
        if (tid !== taskIdA) return;
        const sid = submissionIdOf(body);
        A.forgedSubmissionId = sid;
        const forged = { taskId: taskIdA, gatewayId: GW_ID, verdict: "allow", codes: [], status: "succeeded", result: { forged: true }, ...(sid !== undefined ? { submissionId: sid } : {}) };
        client!.nc.publish(SUBJECTS.outcome(taskIdA), JSON.stringify(forged));
        const byRogue = signPayload("outcome", { ...forged, signer: rogue.keyId }, rogue);
        client!.nc.publish(SUBJECTS.outcome(taskIdA), JSON.stringify({ ...byRogue.payload, sig: byRogue.sig }));
        const impersonating = signPayload("outcome", { ...forged, signer: gatewayKey.keyId }, rogue);
        client!.nc.publish(SUBJECTS.outcome(taskIdA), JSON.stringify({ ...impersonating.payload, sig: impersonating.sig }));
        void client!.nc.flush().then(() => A.forgedSent.resolve());
      },
    });
    const { taskId, outcome, late } = client!.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: { tokens: 2_000, mode: "journey" }, chain: [root], taskId: taskIdA });
    expect(taskId).toBe(taskIdA);
    const o = await outcome;
    sub.unsubscribe();
    expect(A.forgedSubmissionId).toBeDefined();
    expect(o).toMatchObject({ taskId: taskIdA, gatewayId: GW_ID, verdict: "allow", codes: [], status: "succeeded", submissionId: A.forgedSubmissionId });
    expect(signedByGateway(o, gatewayKey)).toBe(true);
    expect(JSON.stringify(o.result)).not.toContain("forged");
    expect(await late).toBeUndefined();

    // The child: in the parent's namespace, allowed, signed by the gateway.
    expect(A.researchTaskId).toBe(childTaskId(taskIdA, "research"));
    expect(isChildTaskIdOf(taskIdA, A.researchTaskId)).toBe(true);
    const research = A.research!;
    expect(research).toMatchObject({ taskId: A.researchTaskId, verdict: "allow", status: "succeeded", gatewayId: GW_ID });
    expect(signedByGateway(research, gatewayKey)).toBe(true);
    // The grandchild, at depth 2, in the child's namespace.
    const r = research.result as { by: string; notes: string[]; draft: { taskId: string; status: string; depth: number; result: { summary: string; by: string } } };
    expect(r.by).toBe(researcher.keyId);
    expect(r.draft).toMatchObject({ taskId: childTaskId(A.researchTaskId, "draft"), status: "succeeded", depth: 2, result: { by: writer.keyId } });
    expect(r.draft.result.summary).toContain("Q3 revenue grew 12%");
    expect(o.result).toEqual({ plan: ["revenue", "churn"], research: { taskId: A.researchTaskId, status: "succeeded", result: research.result } });
  });

  it("denies a widening child and an out-of-scope child; refuses a child id outside the parent's namespace", async () => {
    expect(A.widenThrown).toBeInstanceOf(TypeError);
    expect(String(A.widenThrown)).toMatch(/action "transfer" not in parent scope/);
    const wide = A.wide!;
    expect(wide).toMatchObject({ verdict: "deny", status: "denied", gatewayId: GW_ID });
    expect(wide.codes).toContain("LINEAGE_BROKEN");
    expect(wide.checks?.find((c) => c.check === "delegation")).toMatchObject({ ok: false, code: "LINEAGE_BROKEN" });
    expect(signedByGateway(wide, gatewayKey)).toBe(true);
    const nosy = A.nosy!;
    expect(nosy).toMatchObject({ verdict: "deny", status: "denied" });
    expect(nosy.codes).toContain("POLICY_MISMATCH");
    for (const e of [A.strayRefusal, A.attestRefusal]) {
      expect(e).toBeInstanceOf(SpawnRefusedError);
      expect(e).toMatchObject({ code: "LINEAGE_BROKEN", reason: "child-id-not-in-namespace", name: "SpawnRefusedError" });
    }
    // After the handler returned, its ctx spawns nothing more.
    const ctx = A.ctx!;
    const late = await ctx.spawn(childOf(ctx, { holderKey: planner, childAgent: researcher, scope: RESEARCH_SCOPE, action: "read", resource: "projects/q3/sources/late", args: { tokens: 1 }, label: "too-late" })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(late).toBeInstanceOf(SpawnRefusedError);
    expect(late).toMatchObject({ code: "LINEAGE_BROKEN", reason: "parent-not-executing" });
  });

  it("denies a root request outside its artifact's scope", async () => {
    const taskIdD = newTaskId();
    const { artifact } = await grantFor(planner, taskIdD, ROOT_SCOPE, "q3 only");
    const o = await client!.spawn({ agent: planner, action: "plan", resource: "projects/q4/plan", args: { tokens: 10 }, chain: [artifact], taskId: taskIdD }).outcome;
    expect(o).toMatchObject({ taskId: taskIdD, verdict: "deny", status: "denied", gatewayId: GW_ID });
    expect(o.codes).toContain("POLICY_MISMATCH");
    expect(signedByGateway(o, gatewayKey)).toBe(true);
  });

  it("revokes a planner's artifact while it runs: its in-flight child is denied REVOKED, its handler is told, and it spawns nothing more", async () => {
    const taskIdB = newTaskId();
    const { artifact: root } = await grantFor(planner, taskIdB, ROOT_SCOPE, "to be revoked");
    // Any spawn lineage for the child the handler tries after the revocation.
    const afterLineage: string[] = [];
    const sub = client!.nc.subscribe(SUBJECTS.lineage(childTaskId(taskIdB, "after")), { callback: (_err, m) => void afterLineage.push(m.string()) });
    const run = client!.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: { tokens: 10, mode: "revoke" }, chain: [root], taskId: taskIdB });
    const before = await within(B.inflightSubmitted.promise, 15_000);
    expect(before).not.toBe("timeout");
    // Let the gateway pull the child and start collecting its (withheld) lineage.
    for (let i = 0; i < 60 && rt!.gateway!.inFlight <= (before as number); i++) await sleep(25);
    const revokedAt = Date.now();
    const revocation = await authority!.revoke({ type: "artifact", id: artifactId(root) }, "planner key leaked");
    expect(revocation.payload.target).toEqual({ type: "artifact", id: artifactId(root) });
    const inflight = await B.inflightOutcome!;
    const tookMs = Date.now() - revokedAt;
    expect(inflight).toMatchObject({ taskId: B.inflightTaskId, verdict: "deny", status: "denied", gatewayId: GW_ID });
    expect(inflight.codes).toContain("REVOKED");
    expect(signedByGateway(inflight, gatewayKey)).toBe(true);
    // Denied by the revocation itself, not by its evidence deadline.
    expect(tookMs).toBeLessThan(EVIDENCE_DEADLINE_MS - 500);
    const o = await run.outcome;
    await client!.nc.flush();
    sub.unsubscribe();
    expect(B.first).toMatchObject({ verdict: "allow", status: "succeeded" });
    // The executing planner is told, when the revocation arrives (not at the handler's 15 s fallback).
    expect(B.abortReason).toBeInstanceOf(TaskRevokedError);
    expect(B.abortReason).toMatchObject({ name: "TaskRevokedError", code: "REVOKED", target: `artifact ${artifactId(root)}` });
    expect(B.abortedAt! - revokedAt).toBeLessThan(EVIDENCE_DEADLINE_MS - 500);
    // From then on it signs no child: attest throws, spawn rejects, and no lineage goes out.
    for (const e of [B.attestRefusal, B.spawnRefusal]) {
      expect(e).toBeInstanceOf(SpawnRefusedError);
      expect(e).toMatchObject({ name: "SpawnRefusedError", code: "REVOKED", reason: "parent-revoked" });
      expect((e as Error).message).toMatch(/^REVOKED: parent task rests on artifact /);
    }
    expect(afterLineage).toEqual([]);
    // What the handler did stands: it ran to its end, and its outcome says so.
    expect(o).toMatchObject({ taskId: taskIdB, verdict: "allow", status: "succeeded", result: { first: "succeeded", told: true } });
    expect(signedByGateway(o, gatewayKey)).toBe(true);
  });

  it("a task spawned right after revoke() resolves is denied REVOKED (as observed here; no API guarantees the gateway has applied it yet)", async () => {
    const taskIdE = newTaskId();
    const { artifact } = await grantFor(planner, taskIdE, ROOT_SCOPE, "revoked before use");
    await authority!.revoke({ type: "artifact", id: artifactId(artifact) }, "withdrawn before use");
    const o = await client!.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: { tokens: 1 }, chain: [artifact], taskId: taskIdE }).outcome;
    expect(o).toMatchObject({ verdict: "deny", status: "denied", gatewayId: GW_ID });
    expect(o.codes).toContain("REVOKED");
  });

  it("refuses an oversized submission on the client, before anything is published (README)", async () => {
    const taskIdG = newTaskId();
    const { artifact } = await grantFor(planner, taskIdG, ROOT_SCOPE, "oversized");
    const o = await client!.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: { tokens: 1, blob: "x".repeat(70_000) }, chain: [artifact], taskId: taskIdG }).outcome;
    expect(o).toMatchObject({ taskId: taskIdG, verdict: "deny", codes: ["MALFORMED"], status: "denied", gatewayId: "client" });
  });

  it("answers the overrunning payment failed/timedOut, then hands its late outcome", async () => {
    const o = await slowC!.outcome;
    expect(o).toMatchObject({ taskId: slowC!.taskId, verdict: "allow", status: "failed", timedOut: true, gatewayId: GW_ID });
    expect(o.error).toMatch(/may still be running/);
    expect(signedByGateway(o, gatewayKey)).toBe(true);
    const late = await slowC!.late;
    expect(late).toMatchObject({ taskId: slowC!.taskId, verdict: "allow", status: "succeeded", late: true, result: { sent: { amount: 250 } }, submissionId: o.submissionId, decisionSeq: o.decisionSeq });
    expect(signedByGateway(late!, gatewayKey)).toBe(true);
    expect(C.signalAborted).toBe(true);
    expect(C.spawnAfterTimeout).toBeInstanceOf(SpawnRefusedError);
    expect(C.spawnAfterTimeout).toMatchObject({ code: "LINEAGE_BROKEN", reason: "parent-not-executing" });
    expect(warnings.some((w) => w.includes(slowC!.taskId) && /completed after its timeout/.test(w))).toBe(true);
  });

  it("a client holding the wrong gateway key is never told a false answer: unknown, not succeeded or denied", async () => {
    const o = await rogueF!.outcome;
    expect(o).toMatchObject({ taskId: rogueF!.taskId, gatewayId: "client", verdict: "deny", status: "unknown" });
    // The signed outcome that did arrive, from a key it does not trust, is dropped like a forgery,
    // and the detail says so, naming its signer: a misconfigured key does not look like a lost gateway.
    expect(o.detail).toMatch(/no outcome arrived/);
    expect(o.detail).toContain(`outcome(s) of this task were ignored, signed by no key in gatewayKeys: "${gatewayKey.keyId}"`);
    // Settled only after the deadline (2 s) plus twice the skew, then the claim read.
    expect(Date.now() - rogueF!.startedAt).toBeGreaterThanOrEqual(2_000 + 2 * SKEW_MS);
    expect(await rogueF!.late).toBeUndefined();
    // What really happened: it ran (the trusted observer saw it).
    expect(await rogueF!.trusted).toMatchObject({ status: "succeeded" });
  });

  it("closes everything cleanly, and the audit log replays with no divergence", async () => {
    const first = rt!.close();
    const second = rt!.close();
    expect(second).toBe(first);
    await first;
    expect(() => rt!.registerAction("later", () => null)).toThrow(TypeError);
    expect(() => rt!.spawn({ agent: planner, action: "plan", resource: "projects/q3/plan", args: {}, chain: [] })).toThrow(TypeError);
    await client!.close();
    await rogueClient!.close();
    await authority!.close();
    const backend = await LevelBackend.open(join(dir!, "audit"), { createIfMissing: false });
    try {
      const report = await replay(backendLogSource(backend), { gatewayKeys: [gatewayKey.keyId], authorities: [authority!.keyId], origin: GW_ID, limits: { maxSkewMs: SKEW_MS } });
      expect(report.divergences).toEqual([]);
      expect(report.ok).toBe(true);
      // A (+ research, draft, wide, nosy), B (+ first, inflight), C, D, E, F, H, the root spawn
      // given its task id; none for the refusals, which published nothing.
      expect(report.decisionsRederived).toBe(14);
    } finally {
      await backend.close();
    }
    expect(Date.now() - t0).toBeLessThan(60_000);
  });
});

describe("the README's ten-line tour, run literally", () => {
  it("prints its verdict and exits by itself: it closes what it opened", { timeout: 30_000 }, async () => {
    const own = await startNatsServer();
    const work = await mkdtemp(join(tmpdir(), "fc-user-tour-"));
    try {
      const readme = await readFile(join(import.meta.dirname, "..", "..", "README.md"), "utf8");
      const code = /## A governed task in ten lines\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
      expect(code).toBeDefined();
      // A user's ES module project: `from "failclosed"` resolves as it would once installed.
      await writeFile(join(work, "package.json"), JSON.stringify({ private: true, type: "module" }));
      await mkdir(join(work, "node_modules"));
      await symlink(join(import.meta.dirname, "..", ".."), join(work, "node_modules", "failclosed"), "dir");
      const file = join(work, "tour.ts");
      await writeFile(file, `const natsUrl = process.env["NATS_URL"]!;\nprocess.chdir(${JSON.stringify(work)});\n${code!}`);
      const child = spawnProcess(process.execPath, ["--import", import.meta.resolve("tsx"), file], { env: { ...process.env, NATS_URL: own.url }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
      // No process.exit in it: a tour that left anything open would still be running at 20 s.
      const ended = await within(exited, 20_000);
      if (ended === "timeout") child.kill("SIGKILL");
      await exited;
      expect(ended, err).toBe(0);
      expect(out.trim(), err).toBe("allow []");
    } finally {
      await own.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});
