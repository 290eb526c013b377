// The simulation engine: runs scenario files against real components — a nats-server (its own,
// per scenario, or $NATS_URL), in-process gateways with LevelDB audit logs in a temp dir, an
// authority on the bus — compares every task's outcome with its expectation, then replays each
// gateway's audit log as an auditor would. Faults are real: the server is killed, LevelDB is
// closed under the gateway, the gateway process state is dropped and reopened from its log.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import { artifactId, issueArtifact, originLineage, signRequest } from "../core/artifacts.ts";
import { childTaskId } from "../core/child-task-id.ts";
import type { Check, Decision, DenialCode, SignedArtifact, SignedLineage, SignedRequest } from "../core/types.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { signPayload } from "../crypto/signing.ts";
import { backendLogSource } from "../audit/log-source.ts";
import { replay } from "../audit/replay.ts";
import { proveChain, witness } from "../audit/witness.ts";
import { requestConsistencyProof } from "../nats/proof-service.ts";
import { readCheckpointFeed } from "../nats/checkpoint-feed.ts";
import { Gateway, type ActionContext } from "../gateway/gateway.ts";
import type { TaskOutcome } from "../gateway/outcome.ts";
import { SpawnRefusedError } from "../gateway/spawn-error.ts";
import { natsServerAvailable, NatsServerNotFoundError, startNatsServer, type NatsServerHandle } from "../infra/nats-launcher.ts";
import { KV_BUCKETS, POLICY_KEY, STREAMS, SUBJECTS, TASK_CONSUMER } from "../nats/contract.ts";
import { policyDigest as policyDigestOf } from "../policy/policy-document.ts";
import { ensureBus } from "../nats/setup.ts";
import { Authority } from "../runtime/authority.ts";
import { submitTask } from "../runtime/client.ts";
import { BreakableBackend } from "../testkit/breakable-backend.ts";
import { namedKey, namedNonce } from "../testkit/world.ts";
import { duplicateKeyMessage, wrongKindRequest } from "./malformed.ts";
import { RUN_REPORT_KIND, type AuditSummary, type RunReport, type ScenarioReport, type SimulationOptions, type TaskReport } from "./report.ts";
import {
  codeDigest,
  describeExpectation,
  expectationMet,
  resolveDelegation,
  resolveGrant,
  type Fault,
  type ReplayStep,
  type ResolvedArtifact,
  type Scenario,
  type Step,
  type TaskStep,
} from "./scenario-format.ts";
import { assertNever } from "../infra/assert-never.ts";

const DEFAULT_EVIDENCE_DEADLINE_MS = 1_500;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  for (let i = 0; i < ms / 10; i++) {
    if (cond()) return;
    await sleep(10);
  }
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

const flip = (sig: string): string => (sig.startsWith("A") ? "B" : "A") + sig.slice(1);

interface GatewaySlot {
  id: string;
  key: KeyPair;
  dir: string;
  backend: BreakableBackend;
  gw: Gateway;
}

interface TaskRun {
  stepIndex: number;
  scenarioId: string;
  wireId: string;
  request: SignedRequest;
  args: JsonValue;
  chain: SignedArtifact[];
  lineage: SignedLineage[];
  artifactUsed?: string;
  /** Evidence messages sent as raw bytes ahead of everything else (the `malformed` tamper). */
  rawEvidence: { subject: string; data: string }[];
}

interface Issued {
  artifact: SignedArtifact;
  resolved: ResolvedArtifact;
  /** Key of the artifact's holder (it signs delegations of it). */
  holderKey: KeyPair;
  /** Issuer key (authority for a root; the parent's holder for a delegation). */
  issuerKey: KeyPair;
  parent?: string;
}

class ScenarioRun {
  readonly prefix: string;
  now: number;
  readonly skew = new Map<string, number>();
  server: NatsServerHandle | undefined;
  url = "";
  dir = "";
  /** The checkpoint stream's last sequence when this run began (a shared server holds earlier runs'). */
  checkpointSeqAtStart = 0;
  nc!: NatsConnection;
  readonly authorities = new Map<string, { key: KeyPair; gen: number; trusted: boolean; service?: Authority }>();
  readonly agents = new Map<string, { key: KeyPair; code?: string; environment: Record<string, string> }>();
  readonly agentByKey = new Map<string, string>();
  readonly gateways = new Map<string, GatewaySlot>();
  readonly issued = new Map<string, Issued>();
  readonly runs = new Map<string, TaskRun>();
  readonly executed = new Map<string, number>();
  readonly firstDecision = new Map<string, { decision: Decision; gatewayId: string }>();
  readonly outcomeWaiters = new Map<string, ((o: TaskOutcome) => void)[]>();
  readonly live = new Map<string, { ctx: ActionContext; release: () => void }>();
  readonly liveWaiters = new Map<string, (() => void)[]>();
  readonly remainingChildren = new Map<string, number>();
  readonly tasks: TaskReport[] = [];
  readonly events: ScenarioReport["events"] = [];
  readonly lineage: ScenarioReport["lineage"] = [];
  readonly pendingFaults = new Map<string, Fault>();
  /** Revocations armed `during` a task (by wire id): sent while it is held collecting evidence. */
  readonly pendingRevocations = new Map<string, () => Promise<void>>();
  feedStale = false;
  readonly heldRevocations: (() => Promise<unknown>)[] = [];
  activePolicy: string;
  /** The bucket entry (signed) each policy was published with, by policy name: what a rollback puts back. */
  readonly policyEntries = new Map<string, Uint8Array>();
  readonly warnings: string[] = [];
  readonly finishing: Promise<unknown>[] = [];
  /** Scenario task id → the parent it claims (`parent`, or a `splice-lineage` target). */
  readonly claimedParent = new Map<string, string>();
  /** wire(): scenario id → task id on the bus, and back. */
  readonly wires = new Map<string, string>();
  readonly scenarioIds = new Map<string, string>();

  constructor(
    readonly s: Scenario,
    readonly index: number,
    runId: string,
    readonly externalNats: string | undefined,
  ) {
    this.prefix = `${runId}-${index}`;
    this.now = s.start;
    this.activePolicy = s.activePolicy;
    // The loader made every parent and splice target an earlier task: wire() cannot loop.
    const visit = (st: Step): void => {
      if (st.kind === "task") {
        const parent = st.tamper.find((t) => t.kind === "splice-lineage")?.parent ?? st.parent;
        if (parent !== undefined) this.claimedParent.set(st.id, parent);
      }
      if (st.kind === "concurrently") st.steps.forEach(visit);
    };
    s.steps.forEach(visit);
  }

  /**
   * A scenario task's task id on the bus: `<run>-<index>-<id>` for a task that starts a lineage;
   * for a child, `id` labelled in the namespace of the parent it claims (its `parent`, or the
   * task its lineage is spliced onto), since the parent's gateway signs a spawn lineage for no
   * other child id (core/child-task-id.ts). A splice is then refused by `decide`, not by the
   * parent's gateway: the lineage it claims is signed, but links another artifact.
   */
  wire(id: string): string {
    let w = this.wires.get(id);
    if (w === undefined) {
      const parent = this.claimedParent.get(id);
      w = parent === undefined ? `${this.prefix}-${id}` : childTaskId(this.wire(parent), id);
      this.wires.set(id, w);
      this.scenarioIds.set(w, id);
    }
    return w;
  }

  /** The scenario id of a task id on the bus (wire's inverse; anything else comes back as it is). */
  scenarioIdOf(wireId: string): string {
    return this.scenarioIds.get(wireId) ?? (wireId.startsWith(`${this.prefix}-`) ? wireId.slice(this.prefix.length + 1) : wireId);
  }

  key(kind: string, name: string): KeyPair {
    return namedKey(`${this.prefix}/${this.s.name}/${kind}/${name}`);
  }

  clockFor(gatewayId: string): () => number {
    return () => this.now + (this.skew.get(gatewayId) ?? 0);
  }

  get defaultAuthority(): string {
    return this.s.authorities[0]?.name ?? "authority";
  }

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), "failclosed-sim-"));
    // An outage scenario kills its server: it gets a private one even when $NATS_URL is shared.
    const killsServer = this.s.steps.some((st) => st.kind === "fault" && st.fault.kind === "nats-outage");
    if (this.externalNats && !(killsServer && natsServerAvailable())) this.url = this.externalNats;
    else {
      this.server = await startNatsServer();
      this.url = this.server.url;
    }
    this.nc = await connect({ servers: this.url, name: "failclosed-simulator", maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    // Short redelivery so a task pulled by a crashed gateway comes back within the scenario.
    await ensureBus(this.nc, { taskAckWaitMs: 2_000 });
    this.checkpointSeqAtStart = (await (await jetstreamManager(this.nc)).streams.info(STREAMS.checkpoints)).state.last_seq;

    for (const a of this.s.authorities) this.authorities.set(a.name, { key: this.key("authority", `${a.name}#0`), gen: 0, trusted: a.trusted });
    for (const a of this.s.agents) {
      const key = this.key("agent", a.name);
      this.agents.set(a.name, { key, ...(a.code !== undefined ? { code: a.code } : {}), environment: { ...a.environment } });
      this.agentByKey.set(key.keyId, a.name);
    }
    const auth = this.authorities.get(this.defaultAuthority);
    if (!auth) throw new Error("scenario has no authority");
    auth.service = await Authority.connect({ natsUrl: this.url, key: auth.key, clock: () => this.now });
    await auth.service.publishPolicy(this.policyDoc(this.activePolicy));
    await this.notePolicyEntry(this.activePolicy);
    await auth.service.startHeartbeats(500);

    for (const id of this.s.gateways) await this.startGateway(id);
    for (const slot of this.gateways.values()) await until(() => slot.gw.ledger.state.policy !== undefined, 5_000, `${slot.id} to load the policy`);

    // Child counts: a task whose children come later stays executing until they are spawned.
    const visit = (st: Step) => {
      if (st.kind === "task" && st.parent !== undefined) this.remainingChildren.set(st.parent, (this.remainingChildren.get(st.parent) ?? 0) + 1);
      if (st.kind === "concurrently") st.steps.forEach(visit);
    };
    this.s.steps.forEach(visit);

    for (const g of this.s.grants) this.issueGrant(g.id);
    for (const d of this.s.delegations) this.issueDelegation(d.id);
  }

  async notePolicyEntry(name: string): Promise<void> {
    const e = await (await new Kvm(this.nc).open(KV_BUCKETS.policy)).get(POLICY_KEY);
    if (e?.operation === "PUT") this.policyEntries.set(name, e.value);
  }

  policyDoc(name: string) {
    const doc = this.s.policies[name];
    if (!doc) throw new Error(`unknown policy ${name}`);
    return doc;
  }

  async startGateway(id: string, reuseDir?: string): Promise<GatewaySlot> {
    const key = this.key("gateway", id);
    const dir = reuseDir ?? join(this.dir, id);
    const backend = await BreakableBackend.open(dir);
    const trusted = [...this.authorities.values()].filter((a) => a.trusted).map((a) => a.key.keyId);
    const peers = this.s.gateways.map((g) => this.key("gateway", g).keyId);
    const lim = this.s.limits;
    const gw = await Gateway.start({
      natsUrl: this.url,
      gatewayId: id,
      gatewayKey: key,
      audit: backend,
      authorities: trusted,
      peerGateways: peers,
      // A scenario's gateway decides a handful of tasks: a verify worker thread would cost more
      // to start than it saves (the gateway suites and the benchmark run with one).
      verifyWorkers: 0,
      clock: this.clockFor(id),
      limits: {
        ...(lim.maxSkewMs !== undefined ? { maxSkewMs: lim.maxSkewMs } : {}),
        ...(lim.maxFeedAgeMs !== undefined ? { maxFeedAgeMs: lim.maxFeedAgeMs } : {}),
        ...(lim.maxRequestAgeMs !== undefined ? { maxRequestAgeMs: lim.maxRequestAgeMs } : {}),
        ...(lim.maxDepth !== undefined ? { maxDepth: lim.maxDepth } : {}),
      },
      evidenceDeadlineMs: lim.evidenceDeadlineMs ?? DEFAULT_EVIDENCE_DEADLINE_MS,
      taskAckWaitMs: 2_000,
      checkpointEvery: 16,
      measureAgentCode: (k) => {
        const a = this.agents.get(this.agentByKey.get(k) ?? "");
        return a?.code !== undefined ? codeDigest(a.code) : null;
      },
      measureAttributes: (k) => this.agents.get(this.agentByKey.get(k) ?? "")?.environment ?? {},
      onOutcome: (o) => this.onOutcome(o),
      onDecision: (taskId, decision) => {
        if (!this.firstDecision.has(taskId)) this.firstDecision.set(taskId, { decision, gatewayId: id });
      },
      onWarning: (w) => this.warnings.push(w),
      hooks: {
        beforeVerify: (taskId) => this.crashPoint(id, taskId, "verifying"),
        afterAllowCommit: (taskId) => this.crashPoint(id, taskId, "after-allow-commit"),
      },
    });
    for (const action of this.actions()) gw.registerAction(action, (ctx) => this.handle(ctx));
    const slot: GatewaySlot = { id, key, dir, backend, gw };
    this.gateways.set(id, slot);
    return slot;
  }

  actions(): Set<string> {
    const out = new Set<string>();
    const visit = (st: Step) => {
      if (st.kind === "task") out.add(st.action);
      if (st.kind === "concurrently") st.steps.forEach(visit);
    };
    this.s.steps.forEach(visit);
    return out;
  }

  /** The action handler every gateway runs: counts executions, keeps parents alive for their children. */
  async handle(ctx: ActionContext): Promise<JsonValue> {
    this.executed.set(ctx.taskId, (this.executed.get(ctx.taskId) ?? 0) + 1);
    const scenarioId = this.scenarioIdOf(ctx.taskId);
    if ((this.remainingChildren.get(scenarioId) ?? 0) > 0) {
      await new Promise<void>((release) => {
        this.live.set(ctx.taskId, { ctx, release });
        for (const w of this.liveWaiters.get(ctx.taskId) ?? []) w();
        this.liveWaiters.delete(ctx.taskId);
      });
    }
    return { ok: true, action: ctx.action, resource: ctx.resource };
  }

  onOutcome(o: TaskOutcome): void {
    const ws = this.outcomeWaiters.get(o.taskId);
    const w = ws?.shift();
    if (ws && ws.length === 0) this.outcomeWaiters.delete(o.taskId);
    w?.(o);
  }

  nextOutcome(wireId: string, timeoutMs: number): Promise<TaskOutcome | undefined> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        const ws = this.outcomeWaiters.get(wireId);
        const i = ws?.indexOf(done) ?? -1;
        if (ws && i >= 0) ws.splice(i, 1);
        resolve(undefined);
      }, timeoutMs);
      const done = (o: TaskOutcome) => {
        clearTimeout(t);
        resolve(o);
      };
      const ws = this.outcomeWaiters.get(wireId) ?? [];
      ws.push(done);
      this.outcomeWaiters.set(wireId, ws);
    });
  }

  /** Resolves when the parent task is executing (its handler holds it open), or never ran. */
  waitLive(wireId: string, timeoutMs: number): Promise<boolean> {
    if (this.live.has(wireId)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(this.live.has(wireId)), timeoutMs);
      const ws = this.liveWaiters.get(wireId) ?? [];
      ws.push(() => {
        clearTimeout(t);
        resolve(true);
      });
      this.liveWaiters.set(wireId, ws);
    });
  }

  async crashPoint(gatewayId: string, taskId: string, point: "verifying" | "after-allow-commit"): Promise<void> {
    const f = this.pendingFaults.get(taskId);
    if (!f || f.kind !== "crash-gateway" || f.point !== point) return;
    if (f.gateway !== undefined && f.gateway !== gatewayId) return;
    this.pendingFaults.delete(taskId);
    const slot = this.gateways.get(gatewayId);
    if (!slot) return;
    this.event(-1, "fault", `gateway ${gatewayId} crashed at ${point} of ${this.scenarioIdOf(taskId)}`);
    const restart = (async () => {
      await slot.gw.crash();
      await sleep(f.restartAfterMs);
      await this.startGateway(gatewayId, slot.dir);
      this.event(-1, "fault", `gateway ${gatewayId} restarted on its audit log`);
    })();
    this.finishing.push(restart);
    // Hold this task here forever: the process that ran it is gone.
    await new Promise<never>(() => undefined);
  }

  event(step: number, kind: string, summary: string): void {
    this.events.push({ step, at: this.now, kind, summary });
  }

  // ---------- artifacts ----------

  authorityKey(name: string): KeyPair {
    const a = this.authorities.get(name);
    if (a) return a.key;
    const agent = this.agents.get(name);
    if (agent) return agent.key; // a rogue root signed by an agent
    throw new Error(`unknown issuer ${name}`);
  }

  issueGrant(id: string, spec = this.s.grants.find((g) => g.id === id)): void {
    if (!spec) throw new Error(`unknown grant ${id}`);
    const issuerKey = this.authorityKey(spec.issuer ?? this.defaultAuthority);
    const holder = this.agents.get(spec.to);
    if (!holder) throw new Error(`unknown agent ${spec.to}`);
    const resolved = resolveGrant(spec, this.s.start, this.now);
    const doc = this.policyDoc(spec.policy ?? this.activePolicy);
    const artifact = issueArtifact(issuerKey, {
      holder: holder.key.keyId,
      scope: resolved.scope,
      bindings: resolved.bindings,
      validity: resolved.validity,
      nonce: namedNonce(`${this.prefix}/${id}`),
      policy: { id: doc.id, digest: policyDigestOf(doc) },
      attribution: spec.attribution ?? { initiator: "scenario", reason: this.s.name },
      metadata: spec.metadata,
    });
    this.issued.set(id, { artifact, resolved, holderKey: holder.key, issuerKey });
  }

  issueDelegation(id: string, spec = this.s.delegations.find((d) => d.id === id)): void {
    if (!spec) throw new Error(`unknown delegation ${id}`);
    const parent = this.issued.get(spec.from);
    if (!parent) throw new Error(`delegation ${id}: unknown parent ${spec.from}`);
    const holder = this.agents.get(spec.to);
    if (!holder) throw new Error(`unknown agent ${spec.to}`);
    const resolved = resolveDelegation(spec, parent.resolved, this.s.start);
    // Signed directly (not via delegateArtifact) so a scenario may also describe a widening
    // delegation and watch the verifier refuse it.
    const payload = {
      ...parent.artifact.payload,
      issuer: parent.holderKey.keyId,
      holder: holder.key.keyId,
      scope: resolved.scope,
      bindings: resolved.bindings,
      validity: resolved.validity,
      nonce: namedNonce(`${this.prefix}/${id}`),
      parent: artifactId(parent.artifact),
      depth: parent.artifact.payload.depth + 1,
      attribution: spec.attribution ?? parent.artifact.payload.attribution,
      metadata: spec.metadata,
    };
    const artifact = signPayload("artifact", payload, parent.holderKey);
    this.issued.set(id, { artifact, resolved, holderKey: holder.key, issuerKey: parent.holderKey, parent: spec.from });
  }

  chainOf(id: string): SignedArtifact[] {
    const out: SignedArtifact[] = [];
    let cur: string | undefined = id;
    while (cur !== undefined) {
      const i = this.issued.get(cur);
      if (!i) throw new Error(`unknown grant or delegation ${cur}`);
      out.unshift(i.artifact);
      cur = i.parent;
    }
    return out;
  }

  // ---------- steps ----------

  async runStep(st: Step, index: number): Promise<void> {
    switch (st.kind) {
      case "task":
        await this.runTask(st, index);
        return;
      case "replay":
        await this.runReplay(st, index);
        return;
      case "concurrently":
        await Promise.all(st.steps.map((x) => (x.kind === "task" ? this.runTask(x, index) : this.runReplay(x, index))));
        return;
      case "grant":
        this.issueGrant(st.grant.id, st.grant);
        this.event(index, "grant", `${st.grant.id} to ${st.grant.to}`);
        return;
      case "delegate":
        this.issueDelegation(st.delegation.id, st.delegation);
        this.event(index, "delegate", `${st.delegation.id}: ${st.delegation.from} → ${st.delegation.to}`);
        return;
      case "revoke": {
        const i = this.issued.get(st.target);
        if (!i) throw new Error(`revoke: unknown ${st.target}`);
        const id = artifactId(i.artifact);
        await this.revokeNowOrDuring(st.during, index, "revoke", st.target, st.reason, () => this.revoke({ type: "artifact", id }, st.reason));
        return;
      }
      case "revokeKey": {
        const k = this.agents.get(st.principal)?.key ?? this.authorities.get(st.principal)?.key;
        if (!k) throw new Error(`revokeKey: unknown ${st.principal}`);
        await this.revokeNowOrDuring(st.during, index, "revokeKey", st.principal, st.reason, () => this.revoke({ type: "key", keyId: k.keyId }, st.reason));
        return;
      }
      case "advance":
        this.now += st.ms;
        this.event(index, "advance", `clock +${st.ms} ms`);
        if (!this.feedStale) await this.heartbeat();
        return;
      case "changeAgent": {
        const a = this.agents.get(st.agent);
        if (!a) throw new Error(`changeAgent: unknown ${st.agent}`);
        if (st.code !== undefined) a.code = st.code;
        if (st.environment !== undefined) a.environment = { ...st.environment };
        this.event(index, "changeAgent", `${st.agent} now measures ${st.code ?? "(same code)"}`);
        return;
      }
      case "fault":
        await this.fault(st.fault, index);
        return;
      case "heal":
        await this.heal(st.fault, index);
        return;
      default:
        assertNever(st, "scenario step");
    }
  }

  async heartbeat(): Promise<void> {
    for (const a of this.authorities.values()) await a.service?.heartbeat();
    await sleep(100); // let the gateways' feed consumers apply it
  }

  /** Revoke now, or arm the revocation to land while `during` is held collecting evidence (submit). */
  async revokeNowOrDuring(during: string | undefined, index: number, kind: string, what: string, reason: string, send: () => Promise<void>): Promise<void> {
    if (during === undefined) {
      await send();
      this.event(index, kind, `${what} (${reason})`);
      return;
    }
    this.pendingRevocations.set(this.wire(during), async () => {
      await send();
      this.event(index, kind, `${what} (${reason}) while ${during} is held collecting evidence`);
    });
    this.event(index, kind, `${what} armed during ${during}`);
  }

  async revoke(target: { type: "artifact"; id: string } | { type: "key"; keyId: string }, reason: string): Promise<void> {
    const service = this.authorities.get(this.defaultAuthority)?.service;
    if (!service) throw new Error("no authority service");
    const send = async () => {
      await service.revoke(target, reason);
      await service.heartbeat();
      const tgt = target.type === "artifact" ? target.id : target.keyId;
      await until(
        () => [...this.gateways.values()].every((g) => (target.type === "artifact" ? g.gw.ledger.state.revokedArtifacts : g.gw.ledger.state.revokedKeys).has(tgt)),
        5_000,
        "gateways to apply the revocation",
      );
    };
    if (this.feedStale) this.heldRevocations.push(send);
    else await send();
  }

  async fault(f: Fault, index: number): Promise<void> {
    if ("during" in f && f.during !== undefined) {
      this.pendingFaults.set(this.wire(f.during), f);
      this.event(index, "fault", `${f.kind} armed during ${f.during}`);
      return;
    }
    await this.inject(f, index);
  }

  async inject(f: Fault, index: number): Promise<void> {
    switch (f.kind) {
      case "nats-outage":
        if (!this.server) throw new Error("nats-outage needs a nats-server the simulator started (not $NATS_URL)");
        await this.server.kill();
        this.event(index, "fault", "nats-server killed");
        return;
      case "audit-store-failure":
        for (const g of this.gateways.values()) await g.backend.breakNow();
        this.event(index, "fault", "audit store (LevelDB) closed under the gateways");
        return;
      case "policy-unavailable": {
        const kv = await new Kvm(this.nc).open(KV_BUCKETS.policy);
        await kv.delete(POLICY_KEY);
        await until(() => [...this.gateways.values()].every((g) => g.gw.ledger.state.policy === undefined), 5_000, "gateways to drop the policy");
        this.event(index, "fault", "active policy withdrawn from the policy bucket");
        return;
      }
      case "stale-revocation-feed":
        this.feedStale = true;
        for (const a of this.authorities.values()) a.service?.stopHeartbeats();
        this.event(index, "fault", "revocation feed stopped (no heartbeats, revocations held)");
        return;
      case "clock-skew":
        for (const id of f.gateway !== undefined ? [f.gateway] : [...this.gateways.keys()]) this.skew.set(id, f.byMs);
        this.event(index, "fault", `clock skew ${f.byMs} ms on ${f.gateway ?? "all gateways"}`);
        return;
      case "rotate-authority-key": {
        const name = f.authority ?? this.defaultAuthority;
        const old = this.authorities.get(name);
        if (!old) throw new Error(`rotate: unknown authority ${name}`);
        const key = this.key("authority", `${name}#${old.gen + 1}`);
        // Heartbeating first: a gateway trusting it reads its latest heartbeat when it adds it, and
        // every trusted authority must vouch for the feed to be fresh.
        const service = await Authority.connect({ natsUrl: this.url, key, clock: () => this.now });
        await service.startHeartbeats(500);
        for (const g of this.gateways.values()) await g.gw.addAuthority(key.keyId);
        if (f.retireOld) {
          await old.service?.close();
          for (const g of this.gateways.values()) await g.gw.removeAuthority(old.key.keyId);
        }
        this.authorities.set(name, { key, gen: old.gen + 1, trusted: true, service });
        this.event(index, "fault", `authority ${name} rotated to a new key${f.retireOld ? "; old key retired" : ""}`);
        return;
      }
      case "change-policy": {
        const doc = this.policyDoc(f.to);
        await this.authorities.get(this.defaultAuthority)?.service?.publishPolicy(doc);
        await this.notePolicyEntry(f.to);
        this.activePolicy = f.to;
        const digest = policyDigestOf(doc);
        await until(() => [...this.gateways.values()].every((g) => g.gw.ledger.state.policy?.digest === digest), 5_000, "gateways to load the new policy");
        this.event(index, "fault", `active policy changed to ${f.to}`);
        return;
      }
      case "policy-rollback": {
        const entry = this.policyEntries.get(f.to);
        if (entry === undefined || f.to === this.activePolicy) throw new Error(`policy-rollback: ${f.to} is not a policy published earlier and since retired`);
        await (await new Kvm(this.nc).open(KV_BUCKETS.policy)).put(POLICY_KEY, entry);
        // Time for every gateway's watch to see it; then each must still hold the active policy.
        await sleep(500);
        const digest = policyDigestOf(this.policyDoc(this.activePolicy));
        const took = [...this.gateways.values()].filter((g) => g.gw.ledger.state.policy?.digest !== digest).map((g) => g.id);
        if (took.length > 0) throw new Error(`policy-rollback: ${took.join(", ")} no longer hold${took.length === 1 ? "s" : ""} the active policy ${this.activePolicy}`);
        this.event(index, "fault", `the retired policy ${f.to}'s signed entry put back in the policy bucket; every gateway kept ${this.activePolicy}`);
        return;
      }
      case "crash-gateway":
        // Without `during`, crash the gateway now, between tasks, and restart it.
        for (const g of f.gateway !== undefined ? [this.gateways.get(f.gateway)] : [...this.gateways.values()].slice(0, 1)) {
          if (!g) continue;
          await g.gw.crash();
          await sleep(f.restartAfterMs);
          await this.startGateway(g.id, g.dir);
        }
        this.event(index, "fault", "gateway crashed and restarted");
        return;
      default:
        assertNever(f, "fault");
    }
  }

  async heal(kind: Fault["kind"], index: number): Promise<void> {
    switch (kind) {
      case "nats-outage":
        await this.server?.restart();
        await sleep(1_500); // clients reconnect
        await this.heartbeat();
        break;
      case "audit-store-failure":
        for (const g of [...this.gateways.values()]) {
          await g.gw.stop().catch(() => undefined);
          await this.startGateway(g.id, g.dir);
        }
        break;
      case "policy-unavailable": {
        const doc = this.policyDoc(this.activePolicy);
        await this.authorities.get(this.defaultAuthority)?.service?.publishPolicy(doc);
        await this.notePolicyEntry(this.activePolicy);
        const digest = policyDigestOf(doc);
        await until(() => [...this.gateways.values()].every((g) => g.gw.ledger.state.policy?.digest === digest), 5_000, "gateways to reload the policy");
        break;
      }
      case "stale-revocation-feed":
        this.feedStale = false;
        for (const send of this.heldRevocations.splice(0)) await send();
        for (const a of this.authorities.values()) await a.service?.startHeartbeats(500);
        await sleep(100);
        break;
      case "clock-skew":
        this.skew.clear();
        break;
      case "rotate-authority-key":
      case "change-policy":
      case "policy-rollback":
      case "crash-gateway":
        throw new Error(`${kind} cannot be healed`);
      default:
        assertNever(kind, "fault");
    }
    this.event(index, "heal", `${kind} healed`);
  }

  async runTask(st: TaskStep, index: number): Promise<void> {
    const wireId = this.wire(st.id);
    const agent = this.agents.get(st.agent);
    if (!agent) throw new Error(`task ${st.id}: unknown agent ${st.agent}`);
    const used = this.issued.get(st.uses);
    if (!used) throw new Error(`task ${st.id}: unknown grant or delegation ${st.uses}`);
    let chain = this.chainOf(st.uses);
    const tamperText: string[] = [];
    const has = <K extends TaskStep["tamper"][number]["kind"]>(k: K) => st.tamper.find((t) => t.kind === k) as Extract<TaskStep["tamper"][number], { kind: K }> | undefined;

    const widen = has("widen-scope");
    if (widen) {
      const leaf = chain[chain.length - 1]!;
      const scope = {
        actions: [...new Set([...leaf.payload.scope.actions, ...(widen.actions ?? [])])],
        resources: [...new Set([...leaf.payload.scope.resources, ...(widen.resources ?? [])])],
        constraints: { ...leaf.payload.scope.constraints, ...(widen.constraints ?? {}) },
      };
      chain = [...chain.slice(0, -1), signPayload("artifact", { ...leaf.payload, scope }, used.issuerKey)];
      tamperText.push("widen-scope");
    }
    const leaf = chain[chain.length - 1]!;

    // Lineage: an origin from the issuer for a root; for a child, the executing parent's gateway attests.
    const splice = has("splice-lineage");
    const parentScenarioId = splice?.parent ?? st.parent;
    let lineage: SignedLineage[] = [];
    let refused: TaskOutcome | undefined;
    if (parentScenarioId === undefined) {
      lineage = [originLineage(used.issuerKey, { childTaskId: wireId, childArtifact: leaf, emittedAt: this.now })];
    } else {
      const parentWire = this.wire(parentScenarioId);
      const alive = await this.waitLive(parentWire, 3_000);
      const parentRun = this.runs.get(parentScenarioId);
      if (alive) {
        const ctx = this.live.get(parentWire)!.ctx;
        try {
          lineage = ctx.attest(wireId, leaf);
        } catch (e) {
          // The parent's gateway signs no lineage for this child (its parent revoked while it
          // executes, say): that refusal is the child's answer, and nothing is submitted.
          // Only a revoked parent's: any other refusal is the simulator's own mistake, not a deny.
          if (!(e instanceof SpawnRefusedError) || e.code !== "REVOKED") throw e;
          refused = { taskId: wireId, gatewayId: ctx.gatewayId, verdict: "deny", codes: [e.code], status: "denied", detail: e.message };
          tamperText.push(`refused at spawn: ${e.reason}`);
        }
      } else lineage = parentRun?.lineage ?? [];
      if (splice) tamperText.push(`splice-lineage: ${splice.parent}`);
    }
    const signer = has("sign-as");
    const request0 = signRequest(agent.key, {
      taskId: wireId,
      action: st.action,
      resource: st.resource,
      args: st.args,
      artifact: leaf,
      ...(parentScenarioId !== undefined ? { parentTaskId: this.wire(parentScenarioId) } : {}),
      createdAt: this.now,
    });
    let request = request0;
    if (signer) {
      const other = this.agents.get(signer.agent);
      if (!other) throw new Error(`sign-as: unknown agent ${signer.agent}`);
      request = signPayload("request", request0.payload, other.key);
      tamperText.push(`sign-as: ${signer.agent}`);
    }
    for (const t of st.tamper) {
      if (t.kind !== "forge-signature") continue;
      tamperText.push(`forge-signature: ${t.target}`);
      if (t.target === "request") request = { ...request, sig: flip(request.sig) };
      else if (t.target === "artifact") chain = [...chain.slice(0, -1), { ...leaf, sig: flip(leaf.sig) }];
      else if (lineage.length > 0) lineage = [...lineage.slice(0, -1), { ...lineage[lineage.length - 1]!, sig: flip(lineage[lineage.length - 1]!.sig) }];
    }
    if (has("drop-lineage")) {
      lineage = lineage.slice(0, -1);
      tamperText.push("drop-lineage");
    }
    const dropArtifact = has("drop-artifact") !== undefined;
    if (dropArtifact) tamperText.push("drop-artifact");
    const rawEvidence: TaskRun["rawEvidence"] = [];
    for (const t of st.tamper) {
      if (t.kind !== "malformed") continue;
      tamperText.push(`malformed: ${t.how}`);
      if (t.how === "wrong-kind") request = wrongKindRequest(request, agent.key);
      else {
        // The presented artifact goes on the wire only as a message with a duplicated key.
        const presented = chain[chain.length - 1];
        if (presented) rawEvidence.push({ subject: SUBJECTS.artifact(wireId), data: duplicateKeyMessage(presented) });
        chain = chain.slice(0, -1);
      }
    }

    const run: TaskRun = { stepIndex: index, scenarioId: st.id, wireId, request, args: st.args, chain: dropArtifact ? [] : chain, lineage, artifactUsed: artifactId(leaf), rawEvidence };
    this.runs.set(st.id, run);
    if (parentScenarioId !== undefined) {
      this.lineage.push({ parentTaskId: parentScenarioId, childTaskId: st.id, childArtifactId: artifactId(leaf), ...(used.parent ? { parentArtifactId: artifactId(this.issued.get(used.parent)!.artifact) } : {}), ok: true });
    }
    const submittedAt = this.now;
    const outcome = refused !== undefined ? { outcome: refused, client: undefined } : await this.submit(run, this.pendingFaults.get(wireId), index);
    if (st.parent !== undefined) this.childDone(st.parent);
    this.report(st, index, run, outcome, submittedAt, tamperText);
  }

  childDone(parentScenarioId: string): void {
    const left = (this.remainingChildren.get(parentScenarioId) ?? 1) - 1;
    this.remainingChildren.set(parentScenarioId, left);
    if (left <= 0) {
      const wire = this.wire(parentScenarioId);
      this.live.get(wire)?.release();
      this.live.delete(wire);
    }
  }

  /**
   * Publish evidence and submit. With a fault armed `during` this task, the request goes first
   * and the evidence after the fault, so the task is caught mid-verification.
   */
  async submit(run: TaskRun, during: Fault | undefined, index: number): Promise<{ outcome: TaskOutcome | undefined; client: TaskOutcome | undefined }> {
    const deadline = (this.s.limits.evidenceDeadlineMs ?? DEFAULT_EVIDENCE_DEADLINE_MS) + 15_000;
    const hasChildren = (this.remainingChildren.get(run.scenarioId) ?? 0) > 0;
    const outcomeP = this.nextOutcome(run.wireId, deadline + 10_000);
    const js = jetstream(this.nc);
    // Raw (malformed) evidence goes first: the gateway's evidence feed is ordered, so it has
    // these before any genuine message of the task.
    for (const m of run.rawEvidence) await js.publish(m.subject, m.data);
    const publishEvidence = async () => {
      for (const a of run.chain) await js.publish(SUBJECTS.artifact(run.wireId), JSON.stringify(a));
      for (const l of run.lineage) await js.publish(SUBJECTS.lineage(run.wireId), JSON.stringify(l));
    };
    let client: TaskOutcome | undefined;
    const revokeDuring = this.pendingRevocations.get(run.wireId);
    if (revokeDuring) {
      // Held by withholding its lineage: the chain and request go out, a gateway takes the task
      // and waits for the rest of its evidence; the revocation lands (applied by every gateway);
      // then the lineage is released. No race with the gateway: until the lineage arrives the
      // task cannot be decided (only its evidence deadline, well beyond this, would end it).
      this.pendingRevocations.delete(run.wireId);
      for (const a of run.chain) await js.publish(SUBJECTS.artifact(run.wireId), JSON.stringify(a));
      await this.submitAndWaitTaken(run);
      await revokeDuring();
      for (const l of run.lineage) await js.publish(SUBJECTS.lineage(run.wireId), JSON.stringify(l));
      if (hasChildren) {
        const raced = await Promise.race([this.waitLive(run.wireId, deadline).then(() => "live" as const), outcomeP.then(() => "done" as const)]);
        if (raced === "live") {
          this.finishing.push(outcomeP);
          return { outcome: undefined, client };
        }
      }
      return { outcome: await outcomeP, client };
    }
    if (during && during.kind !== "crash-gateway") {
      await this.submitAndWaitTaken(run);
      this.pendingFaults.delete(run.wireId);
      await this.inject(during, index);
      await publishEvidence().catch(() => undefined);
      const outcome = await outcomeP;
      if (during.kind === "nats-outage" || during.kind === "audit-store-failure" || during.kind === "policy-unavailable") await this.heal(during.kind, index);
      return { outcome, client };
    }
    if (hasChildren) {
      // A parent: done when it is executing (held open for its children) or decided otherwise.
      void submitTask(this.nc, { request: run.request, args: run.args, chain: run.chain, lineage: run.lineage, timeoutMs: deadline, gatewayKeys: this.gatewayKeys() }).then((o) => (client = o));
      const raced = await Promise.race([this.waitLive(run.wireId, deadline).then(() => "live" as const), outcomeP.then(() => "done" as const)]);
      if (raced === "live") {
        this.finishing.push(outcomeP);
        return { outcome: undefined, client };
      }
      return { outcome: await outcomeP, client };
    }
    client = await submitTask(this.nc, { request: run.request, args: run.args, chain: run.chain, lineage: run.lineage, timeoutMs: deadline, gatewayKeys: this.gatewayKeys() });
    const outcome = client.gatewayId === "client" ? await Promise.race([outcomeP, sleep(500).then(() => undefined)]) : await outcomeP;
    return { outcome, client };
  }

  /**
   * Submit the request alone and return once a gateway has taken it off the shared work queue
   * (the queue's consumer has delivered it): that gateway now holds the task, waiting for its
   * evidence. Watched by the message's stream sequence, so tasks other gateways or earlier steps
   * still hold (a parent kept executing for its children) cannot be mistaken for this one.
   */
  async submitAndWaitTaken(run: TaskRun): Promise<void> {
    const ack = await jetstream(this.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request: run.request, args: run.args }));
    const jsm = await jetstreamManager(this.nc);
    for (let i = 0; i < 500; i++) {
      const info = await jsm.consumers.info(STREAMS.tasks, TASK_CONSUMER);
      if (info.delivered.stream_seq >= ack.seq) return;
      await sleep(10);
    }
    throw new Error(`timed out waiting for ${run.scenarioId} to reach a gateway`);
  }

  /** The scenario's gateways' keys: the client takes only outcomes they signed. */
  gatewayKeys(): ReadonlySet<string> {
    return new Set(this.s.gateways.map((g) => this.key("gateway", g).keyId));
  }

  async runReplay(st: ReplayStep, index: number): Promise<void> {
    const orig = this.runs.get(st.of);
    if (!orig) throw new Error(`replay: unknown task ${st.of}`);
    const submittedAt = this.now;
    const outcomeP = this.nextOutcome(orig.wireId, 30_000);
    const js = jetstream(this.nc);
    for (const m of orig.rawEvidence) await js.publish(m.subject, m.data);
    const client = await submitTask(this.nc, { request: orig.request, args: orig.args, chain: orig.chain, lineage: orig.lineage, timeoutMs: 20_000, gatewayKeys: this.gatewayKeys() });
    const outcome = client.gatewayId === "client" ? undefined : await outcomeP;
    const actual = this.actualOf(undefined, outcome ?? client, false);
    this.tasks.push({
      taskId: st.id,
      step: index,
      agent: this.agentByKey.get(orig.request.payload.agent) ?? "?",
      action: orig.request.payload.action,
      resource: orig.request.payload.resource,
      uses: `replay of ${st.of}`,
      ...(outcome?.gatewayId !== undefined ? { gateway: outcome.gatewayId } : {}),
      tamper: [`replay of ${st.of}`],
      ...(st.note !== undefined ? { note: st.note } : {}),
      expected: describeExpectation(st.expect),
      actual,
      ok: expectationMet(st.expect, actual),
      checks: outcome?.checks ?? [],
      submittedAt,
      decidedAt: this.now,
    });
  }

  /** Verdict from the first recorded decision; executed from the handler's own count. */
  actualOf(wireId: string | undefined, o: TaskOutcome | undefined, useFirstDecision = true): TaskReport["actual"] {
    const first = useFirstDecision && wireId !== undefined ? this.firstDecision.get(wireId) : undefined;
    const executed = wireId !== undefined && (this.executed.get(wireId) ?? 0) > 0;
    if (first) return { verdict: first.decision.verdict, executed, codes: first.decision.verdict === "deny" ? (o?.codes.length ? mergeCodes(first.decision.reasons, o.codes) : first.decision.reasons) : [] };
    if (o) return { verdict: o.verdict, executed, codes: o.codes };
    return { verdict: "none", executed, codes: [] };
  }

  report(st: TaskStep, index: number, run: TaskRun, r: { outcome: TaskOutcome | undefined; client: TaskOutcome | undefined }, submittedAt: number, tamper: string[]): void {
    const o = r.outcome ?? r.client;
    const actual = this.actualOf(run.wireId, o);
    const first = this.firstDecision.get(run.wireId);
    const checks: Check[] = o?.checks ?? (first?.decision.checks ?? []);
    const edge = this.lineage.find((e) => e.childTaskId === st.id);
    if (edge && actual.codes.includes("LINEAGE_BROKEN")) edge.ok = false;
    if (edge && tamper.some((t) => t.startsWith("splice") || t === "drop-lineage")) edge.ok = false;
    this.tasks.push({
      taskId: st.id,
      step: index,
      agent: st.agent,
      action: st.action,
      resource: st.resource,
      ...(st.parent !== undefined ? { parentTaskId: st.parent } : {}),
      uses: st.uses,
      ...(run.artifactUsed !== undefined ? { artifactId: run.artifactUsed } : {}),
      ...(first?.gatewayId !== undefined ? { gateway: first.gatewayId } : o?.gatewayId !== undefined ? { gateway: o.gatewayId } : {}),
      tamper,
      ...(st.note !== undefined ? { note: st.note } : {}),
      expected: describeExpectation(st.expect),
      actual,
      ok: expectationMet(st.expect, actual),
      checks,
      submittedAt,
      ...(actual.verdict !== "none" ? { decidedAt: this.now } : {}),
      ...(actual.executed ? { executedAt: this.now } : {}),
    });
  }

  /** Parents still held open are released; their outcomes are awaited; executions re-read. */
  async finish(): Promise<void> {
    for (const [wire, l] of this.live) {
      l.release();
      this.live.delete(wire);
    }
    await Promise.race([Promise.allSettled(this.finishing), sleep(20_000)]);
    // A held parent's report was written while it executed; its verdict is final, refresh `executed`.
    for (const t of this.tasks) {
      const run = this.runs.get(t.taskId);
      if (run && t.tamper.every((x) => !x.startsWith("replay of"))) {
        t.actual.executed = (this.executed.get(run.wireId) ?? 0) > 0;
        const step = findTaskStep(this.s.steps, t.taskId);
        if (step) t.ok = expectationMet(step.expect, t.actual);
      }
    }
  }

  invariants(): ScenarioReport["invariants"] {
    // Always checked, whatever the scenario declares: a replay step's own expectation is met by
    // its client's outcome, but a second run of any task would show here, under its task id.
    const twice = [...this.executed].filter(([, n]) => n > 1);
    const atMostOnce = { name: "every task id ran at most once", ok: twice.length === 0, ...(twice.length > 0 ? { detail: twice.map(([id, n]) => `${id} ran ${n} times`).join("; ") } : {}) };
    return [atMostOnce, ...this.declaredInvariants()];
  }

  declaredInvariants(): ScenarioReport["invariants"] {
    return this.s.invariants.map((inv) => {
      const counts = inv.tasks.map((id) => {
        const run = this.runs.get(id);
        const wire = run?.wireId ?? this.wire(id);
        const replayed = this.tasks.find((t) => t.taskId === id && t.tamper.some((x) => x.startsWith("replay of")));
        return replayed ? (replayed.actual.executed ? 1 : 0) : (this.executed.get(wire) ?? 0);
      });
      const total = counts.reduce((a, b) => a + b, 0);
      const name = `${inv.kind}: ${inv.tasks.join(", ")}`;
      switch (inv.kind) {
        case "exactlyOneExecuted":
          return { name, ok: total === 1, ...(total !== 1 ? { detail: `${total} executions` } : {}) };
        case "notExecuted":
          return { name, ok: total === 0, ...(total !== 0 ? { detail: `${total} executions` } : {}) };
        default:
          return assertNever(inv, "invariant");
      }
    });
  }

  async audit(): Promise<AuditSummary> {
    let records = 0;
    let checkpoints = 0;
    let lastRoot: string | undefined;
    let decisions = 0;
    let ok = true;
    const divergences: AuditSummary["replay"]["divergences"] = [];
    const gatewayKeys = this.s.gateways.map((g) => this.key("gateway", g).keyId);
    const authorities = [...this.authorities.values()].flatMap((a) => Array.from({ length: a.gen + 1 }, (_, g) => this.key("authority", `${[...this.authorities.entries()].find(([, v]) => v === a)![0]}#${g}`).keyId));
    let witnessed = 0;
    let proved = 0;
    for (const slot of this.gateways.values()) {
      proved += await this.proveWhileLive(slot, gatewayKeys, divergences);
      await slot.gw.stop().catch(() => undefined);
      // What the gateway published, kept as a witness outside it would (audit witness): the log
      // is replayed against those checkpoints, so a log that differs from what its gateway
      // showed the world fails its audit.
      let published: ReturnType<typeof witness>["checkpoints"] = [];
      try {
        const w = witness([], await readCheckpointFeed(this.url, slot.id, { timeoutMs: 10_000, afterSeq: this.checkpointSeqAtStart }), { origin: slot.id, gatewayKeys });
        published = w.checkpoints;
        for (const f of w.findings) divergences.push({ seq: 0, kind: `WITNESS_${f.kind}`, detail: `${slot.id}: ${f.where}: ${f.detail}` });
      } catch (e) {
        divergences.push({ seq: 0, kind: "WITNESS_UNAVAILABLE", detail: `${slot.id}: ${e instanceof Error ? e.message : String(e)}` });
      }
      witnessed += published.length;
      const backend = await BreakableBackend.open(slot.dir);
      try {
        const r = await replay(backendLogSource(backend), { gatewayKeys, authorities, origin: slot.id }, { checkpoints: published });
        records += r.size;
        checkpoints += r.checkpointsVerified;
        decisions += r.decisionsRederived;
        ok &&= r.ok;
        lastRoot = r.root;
        for (const d of r.divergences) divergences.push({ seq: d.seq, kind: d.kind, detail: `${slot.id}: ${d.detail}` });
      } finally {
        await backend.close();
      }
    }
    return { records, checkpoints, witnessed, proved, ...(lastRoot !== undefined ? { lastCheckpointRoot: lastRoot } : {}), replay: { ok: ok && divergences.length === 0, decisions, divergences } };
  }

  /**
   * While the gateway still runs, as `audit witness` does: have it checkpoint what it holds, read
   * what it published, and prove with its own consistency proofs (verified against the signed
   * roots) that each checkpoint extends the one before. Returns the proofs verified; a failed or
   * missing proof is a divergence.
   */
  async proveWhileLive(slot: { id: string; gw: Gateway }, gatewayKeys: readonly string[], divergences: AuditSummary["replay"]["divergences"]): Promise<number> {
    let last: number | undefined;
    try {
      last = (await slot.gw.ledger.store.checkpoint())?.payload.size ?? slot.gw.ledger.store.lastCheckpoint?.size;
    } catch {
      // A store a fault left unwritable still answers proofs of what it holds.
    }
    try {
      let w = witness([], [], { origin: slot.id, gatewayKeys });
      // The checkpoint's publish is on its way: read until it has landed (or give up and prove what is there).
      for (let i = 0; i < 50; i++) {
        w = witness([], await readCheckpointFeed(this.url, slot.id, { timeoutMs: 10_000, afterSeq: this.checkpointSeqAtStart }), { origin: slot.id, gatewayKeys });
        if (last === undefined || w.checkpoints.some((c) => c.payload.size === last)) break;
        await sleep(50);
      }
      const r = await proveChain(w.checkpoints, 0, w.addedSizes, (m, n, signers) => requestConsistencyProof(this.nc, slot.id, m, n, 5_000, signers), gatewayKeys);
      for (const f of r.findings) divergences.push({ seq: 0, kind: `WITNESS_${f.kind}`, detail: `${slot.id}: ${f.where}: ${f.detail}` });
      if (r.unproven > 0) divergences.push({ seq: 0, kind: "WITNESS_UNPROVEN", detail: `${slot.id}: ${r.unproven} published checkpoints not proved consistent (${r.stopped ?? "?"})` });
      return r.proved;
    } catch (e) {
      divergences.push({ seq: 0, kind: "WITNESS_UNAVAILABLE", detail: `${slot.id}: ${e instanceof Error ? e.message : String(e)}` });
      return 0;
    }
  }

  async close(): Promise<void> {
    for (const g of this.gateways.values()) await g.gw.stop().catch(() => undefined);
    for (const a of this.authorities.values()) await a.service?.close().catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
    await this.server?.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

function mergeCodes(a: DenialCode[], b: DenialCode[]): DenialCode[] {
  return [...new Set([...a, ...b])];
}

function findTaskStep(steps: Step[], id: string): TaskStep | undefined {
  for (const s of steps) {
    if (s.kind === "task" && s.id === id) return s;
    if (s.kind === "concurrently") {
      const f = s.steps.find((x): x is TaskStep => x.kind === "task" && x.id === id);
      if (f) return f;
    }
  }
  return undefined;
}


async function natsAnswers(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, timeout: 1_000, reconnect: false });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

/** Run scenarios in order; each gets fresh keys, gateways, audit logs and (by default) its own nats-server. */
export async function runSimulation(scenarios: Scenario[], opts: SimulationOptions): Promise<RunReport> {
  const startedAt = new Date();
  const runId = `r${randomBytes(4).toString("hex")}`;
  let external: string | undefined = opts.nats ?? process.env["NATS_URL"];
  if (external !== undefined && !(await natsAnswers(external))) {
    if (opts.nats !== undefined) throw new Error(`no NATS answers at ${external}`);
    external = undefined; // $NATS_URL set but silent: start our own, as documented
  }
  if (external === undefined && !natsServerAvailable()) throw new NatsServerNotFoundError();
  const out: ScenarioReport[] = [];
  const gatewayIds = new Set<string>();
  for (const [i, s] of scenarios.entries()) {
    opts.onProgress?.({ index: i, total: scenarios.length, scenario: s.name, phase: "start" });
    const t0 = performance.now();
    const run = new ScenarioRun(s, i, runId, external);
    s.gateways.forEach((g) => gatewayIds.add(g));
    let report: ScenarioReport;
    try {
      await run.start();
      for (const [k, st] of s.steps.entries()) await run.runStep(st, k);
      await run.finish();
      const audit = await run.audit();
      const invariants = run.invariants();
      const pass = run.tasks.every((t) => t.ok) && invariants.every((x) => x.ok) && audit.replay.ok;
      report = base(s, run, performance.now() - t0, pass ? "pass" : "fail", audit, invariants);
    } catch (e) {
      report = { ...base(s, run, performance.now() - t0, "error", emptyAudit(), []), error: e instanceof Error ? e.message : String(e) };
    } finally {
      await run.close().catch(() => undefined);
    }
    out.push(report);
    opts.onProgress?.({ index: i, total: scenarios.length, scenario: s.name, phase: "done", status: report.status });
  }
  const finishedAt = new Date();
  return {
    kind: RUN_REPORT_KIND,
    run: {
      id: runId,
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationMs: finishedAt.getTime() - startedAt.getTime(),
      version: opts.version,
      nats: external ?? "embedded",
      gateways: [...gatewayIds],
      host: `node ${process.version} ${process.platform}/${process.arch}`,
    },
    scenarios: out,
  };
}

function emptyAudit(): AuditSummary {
  return { records: 0, checkpoints: 0, replay: { ok: false, decisions: 0, divergences: [] } };
}

function base(s: Scenario, run: ScenarioRun, ms: number, status: ScenarioReport["status"], audit: AuditSummary, invariants: ScenarioReport["invariants"]): ScenarioReport {
  return {
    name: s.name,
    description: s.description,
    file: s.file,
    tags: s.tags,
    status,
    durationMs: Math.round(ms),
    start: s.start,
    tasks: run.tasks,
    events: run.events,
    lineage: run.lineage,
    invariants,
    audit,
  };
}
