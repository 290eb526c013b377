// The runtime API for multi-agent systems: connect to the bus (optionally running a gateway
// in this process), register action handlers, spawn governed tasks, delegate attenuated
// artifacts. A task runs only if a gateway verified it first; the promise you get back tells
// you what happened, and a missing answer is a deny.
import { randomBytes } from "node:crypto";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { delegateArtifact, signRequest, type DelegateOptions } from "../core/artifacts.ts";
import type { SignedArtifact } from "../core/types.ts";
import { Gateway, type ActionHandler, type GatewayOptions } from "../gateway/gateway.ts";
import type { TaskOutcome } from "../gateway/outcome.ts";
import { assertAcceptableKey } from "../core/trust-store.ts";
import { TASK_ID_RE } from "../nats/contract.ts";
import { ensureBus } from "../nats/setup.ts";
import { submitTask } from "./client.ts";
import { systemClock, type Clock } from "./clock.ts";

export interface ConnectOptions {
  natsUrl: string;
  /** Run a gateway in this process with its audit log here (LevelDB directory). */
  dataDir?: string;
  /** Gateway settings when dataDir is given. */
  gateway?: Omit<GatewayOptions, "natsUrl" | "audit"> ;
  clock?: Clock;
  /**
   * The decision deadline spawn() signs into each request (notAfter = now + this), and how long
   * it waits for a task's outcome once a gateway has claimed it. Default 30 s. With no answer,
   * spawn() settles after the deadline plus twice `maxSkewMs`: "denied" when no gateway
   * claimed the task (none can allow it any more), else "unknown" (client.ts awaitOutcome).
   */
  outcomeTimeoutMs?: number;
  /** The clock skew the gateways allow (their limits.maxSkewMs). Default 5 s. */
  maxSkewMs?: number;
  /**
   * The keyIds of the gateways whose outcomes spawn() accepts: each outcome must carry a valid
   * signature by one of them, and anything else on the outcome subject is ignored (so a forged
   * "succeeded" cannot reach the agent; with no genuine answer, spawn() reports a deny at its
   * timeout). A runtime that runs a gateway always requires signed outcomes: that gateway's
   * key and its peerGateways are trusted besides these. A runtime that runs none and is given
   * none trusts outcomes as far as NATS permissions on `failclosed.outcome.>` go.
   */
  gatewayKeys?: string[];
}

export interface SpawnRequest {
  /** The agent asking; it signs the request (proof of possession of the artifact's holder key). */
  agent: KeyPair;
  action: string;
  resource: string;
  args: JsonValue;
  /** The artifact chain, root first; the last one is held by `agent`. */
  chain: SignedArtifact[];
  /**
   * For a root task: the task id its authority's grant names. Default: a fresh id. A subject
   * token (contract.ts TASK_ID_RE: letters, digits, '_' and '-', 1 to 128 of them).
   */
  taskId?: string;
}

export function newTaskId(): string {
  return `t-${randomBytes(12).toString("base64url")}`;
}

/** A task id is a subject token (DESIGN §6): one that is not could never be answered on its subjects. */
function assertTaskId(where: string, taskId: unknown): asserts taskId is string {
  if (typeof taskId !== "string" || !TASK_ID_RE.test(taskId)) throw new TypeError(`${where}: task id ${JSON.stringify(taskId)} is not a subject-safe token (${String(TASK_ID_RE)})`);
}

export class Runtime {
  /** Set when close() begins: nothing is registered or spawned after it. */
  #closed = false;
  /** The action names registered through this runtime: a second handler for one is refused. */
  readonly #actions = new Set<string>();

  private constructor(
    readonly nc: NatsConnection,
    readonly gateway: Gateway | undefined,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
    private readonly gatewayKeys: ReadonlySet<string> | undefined,
    private readonly skewMs: number,
  ) {}

  /**
   * @example
   * const rt = await Runtime.connect({ natsUrl, dataDir: "./audit", gateway: { gatewayId: "gw-1", gatewayKey, authorities: [authority.keyId] } });
   * rt.registerAction("transfer", async ({ args }) => ({ ok: true }));
   * const { outcome } = rt.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 10 }, chain: [artifact], taskId });
   * console.log((await outcome).status); // "succeeded" or "denied"
   */
  static async connect(o: ConnectOptions): Promise<Runtime> {
    if (o.dataDir !== undefined && !o.gateway) throw new TypeError("connect: dataDir needs gateway settings (gatewayId, gatewayKey, authorities)");
    const nc = await natsConnect({ servers: o.natsUrl, name: "failclosed-runtime", maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    let gateway: Gateway | undefined;
    try {
      await ensureBus(nc);
      if (o.dataDir !== undefined && o.gateway) {
        gateway = await Gateway.start({ ...o.gateway, natsUrl: o.natsUrl, audit: o.dataDir, ...(o.clock ? { clock: o.clock } : {}) });
      }
      // With a gateway of its own, outcomes are always held to signatures: its own key and the
      // peers it shares the work queue with (whose lineage it already trusts).
      const keys = o.gatewayKeys === undefined && gateway === undefined ? undefined : new Set([...(o.gatewayKeys ?? []), ...(gateway !== undefined ? [gateway.keyId, ...(o.gateway?.peerGateways ?? [])] : [])]);
      if (keys !== undefined) {
        // A mistyped key, or none at all, would make every spawn() a deny at its timeout.
        for (const k of keys) assertAcceptableKey(k);
        if (keys.size === 0) throw new TypeError("connect: gatewayKeys is empty and this runtime runs no gateway: no outcome could ever be accepted");
      }
      return new Runtime(nc, gateway, o.clock ?? systemClock, o.outcomeTimeoutMs ?? 30_000, keys, o.maxSkewMs ?? 5_000);
    } catch (e) {
      // A failed connect leaves nothing open behind it (an open connection keeps the process
      // alive); the caller gets the original error, not one from the cleanup.
      await gateway?.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Handlers run only from `executing`, after a durable allow, on whichever gateway decided.
   * Throws TypeError when this runtime runs no gateway, is closed, or already has a handler for
   * `name`: an action's handler is set once, never silently replaced.
   */
  registerAction(name: string, handler: ActionHandler): void {
    if (!this.gateway) throw new TypeError("registerAction: this runtime runs no gateway");
    if (this.#closed) throw new TypeError("registerAction: this runtime is closed");
    // Policy: what an allow for an action runs is fixed when it is registered; a second
    // registration (a name collision between modules, a late override) is a mistake to surface.
    if (this.#actions.has(name)) throw new TypeError(`registerAction: action ${JSON.stringify(name)} already has a handler`);
    this.gateway.registerAction(name, handler);
    this.#actions.add(name);
  }

  /**
   * Submit a governed root task. Children are spawned from a handler with ctx.spawn().
   *
   * Throws TypeError for a caller mistake, before anything is published: a runtime that is
   * closed (or closing), a task id that is not a subject token (TASK_ID_RE), an empty chain.
   * Everything else is an outcome. Args whose submit message (the signed request and the args)
   * would exceed MAX_MESSAGE_BYTES, or evidence over it, are refused before anything is
   * published: `{ verdict: "deny", codes: ["MALFORMED"], status: "denied", gatewayId: "client" }`.
   * A submit the server refuses without storing it is "denied" too (see submitTask).
   */
  spawn(r: SpawnRequest): { taskId: string; outcome: Promise<TaskOutcome> } {
    if (this.#closed) throw new TypeError("spawn: this runtime is closed");
    if (r.taskId !== undefined) assertTaskId("spawn", r.taskId);
    const taskId = r.taskId ?? newTaskId();
    const leaf = r.chain[r.chain.length - 1];
    if (!leaf) throw new TypeError("spawn: empty artifact chain");
    const now = this.clock();
    const request = signRequest(r.agent, { taskId, action: r.action, resource: r.resource, args: r.args, artifact: leaf, createdAt: now, notAfter: now + this.timeoutMs });
    return {
      taskId,
      outcome: submitTask(this.nc, { request, args: r.args, chain: r.chain, timeoutMs: this.timeoutMs, skewMs: this.skewMs, ...(this.gatewayKeys !== undefined ? { gatewayKeys: this.gatewayKeys } : {}) }),
    };
  }

  /**
   * Prepare a child task for ctx.spawn(): a delegated artifact and the child's signed request.
   * Throws TypeError when `parentTaskId` or `taskId` is not a subject token (TASK_ID_RE), or
   * when the delegation would widen the parent. Oversized args: see spawn().
   */
  child(o: {
    parent: SignedArtifact;
    parentTaskId: string;
    holderKey: KeyPair;
    childAgent: KeyPair;
    delegation: Omit<DelegateOptions, "holder">;
    action: string;
    resource: string;
    args: JsonValue;
    taskId?: string;
  }): { request: ReturnType<typeof signRequest>; args: JsonValue; artifact: SignedArtifact } {
    assertTaskId("child: parentTaskId", o.parentTaskId);
    if (o.taskId !== undefined) assertTaskId("child", o.taskId);
    const artifact = this.delegate(o.parent, o.holderKey, { ...o.delegation, holder: o.childAgent.keyId });
    const now = this.clock();
    const request = signRequest(o.childAgent, {
      taskId: o.taskId ?? newTaskId(),
      action: o.action,
      resource: o.resource,
      args: o.args,
      artifact,
      parentTaskId: o.parentTaskId,
      createdAt: now,
      notAfter: now + this.timeoutMs,
    });
    return { request, args: o.args, artifact };
  }

  /** Attenuate: sign a child artifact that narrows `parent`. Throws TypeError if it would widen. */
  delegate(parent: SignedArtifact, holderKey: KeyPair, o: DelegateOptions): SignedArtifact {
    return delegateArtifact(parent, holderKey, o);
  }

  /** Stop this runtime's gateway and drain its connection; spawn() and registerAction() throw after it. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.gateway?.stop();
    await this.nc.drain().catch(() => undefined);
  }
}
