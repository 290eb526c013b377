// The runtime API for multi-agent systems: connect to the bus (optionally running a gateway
// in this process), register action handlers, spawn governed tasks, delegate attenuated
// artifacts. A task runs only if a gateway verified it first; the promise you get back tells
// you what happened, and a missing answer is a deny.
import { randomBytes } from "node:crypto";
import { connect as natsConnect, type NatsConnection } from "@nats-io/transport-node";
import type { JsonValue } from "../canonical/jcs.ts";
import { CanonicalError } from "../canonical/errors.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { delegateArtifact, signRequest, type DelegateOptions } from "../core/artifacts.ts";
import { childTaskId, isChildTaskIdOf } from "../core/child-task-id.ts";
import type { SignedArtifact } from "../core/types.ts";
import { Gateway, type ActionHandler, type GatewayOptions } from "../gateway/gateway.ts";
import type { TaskOutcome } from "../gateway/outcome.ts";
import { assertAcceptableKey } from "../core/trust-store.ts";
import { TASK_ID_RE } from "../nats/contract.ts";
import { ensureBus } from "../nats/setup.ts";
import { submitTaskTracked } from "./client.ts";
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
   * none must be given them, or told `acceptUnsignedOutcomes: true`: connect throws TypeError
   * otherwise.
   */
  gatewayKeys?: string[];
  /**
   * For a runtime that runs no gateway and is given no `gatewayKeys`: take any outcome on the
   * outcome subject, signed or not, trusting NATS permissions on `failclosed.outcome.>` alone
   * (anyone who may publish there can tell spawn() "succeeded"). Off unless set; with
   * `gatewayKeys`, or a gateway of its own, it changes nothing.
   */
  acceptUnsignedOutcomes?: boolean;
  /**
   * How long spawn()'s `late` goes on listening, after an outcome that says its handler was cut
   * off by its timeout (`timedOut`), for how that handler ended. Default 10 minutes.
   */
  lateOutcomeWaitMs?: number;
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
   * The task id: for a root task (a chain of one artifact) the one its authority's grant names,
   * and required (spawn throws TypeError without it: the grant's origin lineage names one task
   * id, and any other is denied LINEAGE_BROKEN). For a delegated chain, default a fresh id. A
   * subject token (contract.ts TASK_ID_RE: letters, digits, '_' and '-', 1 to 128 of them).
   */
  taskId?: string;
}

export function newTaskId(): string {
  return `t-${randomBytes(12).toString("base64url")}`;
}

/**
 * A fresh task id for a child of `parentTaskId`: in the parent's namespace (core/child-task-id.ts),
 * with a random label. Throws TypeError when `parentTaskId` is not a task id.
 */
export function newChildTaskId(parentTaskId: string): string {
  return childTaskId(parentTaskId, randomBytes(12).toString("base64url"));
}

/** A task id is a subject token (DESIGN §6): one that is not could never be answered on its subjects. */
function assertTaskId(where: string, taskId: unknown): asserts taskId is string {
  if (typeof taskId !== "string" || !TASK_ID_RE.test(taskId)) throw new TypeError(`${where}: task id ${JSON.stringify(taskId)} is not a subject-safe token (${String(TASK_ID_RE)})`);
}

/**
 * The task id Runtime.child gives a child: in its parent's namespace, whichever way it was asked
 * for (a gateway would refuse any other with LINEAGE_BROKEN; refusing here says so sooner).
 */
function childTaskIdFor(o: { parentTaskId: string; label?: string; taskId?: string }): string {
  assertTaskId("child: parentTaskId", o.parentTaskId);
  if (o.label !== undefined && o.taskId !== undefined) throw new TypeError("child: give a label or a taskId, not both");
  if (o.taskId === undefined) return o.label === undefined ? newChildTaskId(o.parentTaskId) : childTaskId(o.parentTaskId, o.label);
  assertTaskId("child", o.taskId);
  if (!isChildTaskIdOf(o.parentTaskId, o.taskId)) throw new TypeError(`child: task id ${JSON.stringify(o.taskId)} is not in the namespace of parent task ${o.parentTaskId} (use childTaskId(parentTaskId, label), or pass label)`);
  return o.taskId;
}

/**
 * Run `sign`, turning a CanonicalError (a value that is not I-JSON: a BigInt, an undefined member,
 * a Date, a class instance) into the TypeError the API promises for caller mistakes.
 */
function signedOrTypeError<T>(where: string, what: string, sign: () => T): T {
  try {
    return sign();
  } catch (e) {
    if (e instanceof CanonicalError) throw new TypeError(`${where}: not I-JSON (${what}): ${e.message}`, { cause: e });
    throw e;
  }
}

export class Runtime {
  /** Set when close() begins: nothing is registered or spawned after it. */
  #closed = false;
  /** The one close in progress or done (close()). */
  #closing: Promise<void> | undefined;

  private constructor(
    readonly nc: NatsConnection,
    readonly gateway: Gateway | undefined,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
    private readonly gatewayKeys: ReadonlySet<string> | undefined,
    private readonly skewMs: number,
    private readonly lateWaitMs: number,
  ) {}

  /**
   * @example
   * const rt = await Runtime.connect({ natsUrl, dataDir: "./audit", gateway: { gatewayId: "gw-1", gatewayKey, authorities: [authority.keyId] } });
   * rt.registerAction("transfer", async ({ args }) => ({ ok: true }));
   * const { outcome } = rt.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 10 }, chain: [artifact], taskId });
   * console.log((await outcome).status); // "succeeded", "failed" (the handler threw), "denied", or "unknown" (no answer it can trust)
   * // An outcome "failed" with `timedOut`: the handler was cut off, and may still be running.
   * // `late` tells how it ended, once its gateway records it (or undefined):
   * // const { outcome, late } = rt.spawn(...); (await late)?.status
   */
  static async connect(o: ConnectOptions): Promise<Runtime> {
    if (o.dataDir !== undefined && !o.gateway) throw new TypeError("connect: dataDir needs gateway settings (gatewayId, gatewayKey, authorities)");
    if (o.dataDir === undefined && o.gateway !== undefined) throw new TypeError("connect: gateway settings need dataDir (the directory of the gateway's audit log); without it no gateway would run");
    if (o.dataDir === undefined && o.gatewayKeys === undefined && o.acceptUnsignedOutcomes !== true) {
      throw new TypeError("connect: a runtime that runs no gateway needs gatewayKeys (the keyIds of the gateways whose signed outcomes spawn() accepts), or acceptUnsignedOutcomes: true to take unsigned ones");
    }
    if (o.dataDir === undefined && o.gatewayKeys !== undefined && o.gatewayKeys.length === 0) throw new TypeError("connect: gatewayKeys is empty and this runtime runs no gateway: no outcome could ever be accepted");
    // Checked before anything connects or starts: a mistyped key would make every spawn() a deny at its timeout.
    for (const k of o.gatewayKeys ?? []) {
      try {
        assertAcceptableKey(k);
      } catch (e) {
        throw new TypeError(`connect: gatewayKeys: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }
    const nc = await natsConnect({ servers: o.natsUrl, name: "failclosed-runtime", maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    let gateway: Gateway | undefined;
    try {
      // A gateway of its own: the task consumer, if this makes it, gets that gateway's ack wait
      // (the gateway's own ensureBus would find it made, and leave it as it is).
      const g = o.dataDir !== undefined ? o.gateway : undefined;
      await ensureBus(nc, { ...(g?.taskAckWaitMs !== undefined ? { taskAckWaitMs: g.taskAckWaitMs } : {}), ...(g?.onWarning !== undefined ? { onWarning: g.onWarning } : {}) });
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
      return new Runtime(nc, gateway, o.clock ?? systemClock, o.outcomeTimeoutMs ?? 30_000, keys, o.maxSkewMs ?? 5_000, o.lateOutcomeWaitMs ?? 600_000);
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
   * `name` (however it was registered: here or on `gateway`), or `handler` is not a function: an
   * action's handler is set once, never silently replaced (Gateway.registerAction).
   */
  registerAction(name: string, handler: ActionHandler): void {
    if (!this.gateway) throw new TypeError("registerAction: this runtime runs no gateway");
    if (this.#closed) throw new TypeError("registerAction: this runtime is closed");
    this.gateway.registerAction(name, handler);
  }

  /**
   * Submit a governed root task. Children are spawned from a handler with ctx.spawn().
   *
   * Throws TypeError for a caller mistake, before anything is published: a runtime that is
   * closed (or closing), a task id that is not a subject token (TASK_ID_RE), an empty chain,
   * args (or an action or resource) that are not I-JSON (a BigInt, an undefined member, a Date).
   * Everything else is an outcome. Args whose submit message (the signed request and the args)
   * would exceed MAX_MESSAGE_BYTES, or evidence over it, are refused before anything is
   * published: `{ verdict: "deny", codes: ["MALFORMED"], status: "denied", gatewayId: "client" }`.
   * A submit the server refuses without storing it is "denied" too (see submitTask).
   */
  spawn(r: SpawnRequest): { taskId: string; outcome: Promise<TaskOutcome>; late: Promise<TaskOutcome | undefined> } {
    if (this.#closed) throw new TypeError("spawn: this runtime is closed");
    if (r.taskId !== undefined) assertTaskId("spawn", r.taskId);
    const leaf = r.chain[r.chain.length - 1];
    if (!leaf) throw new TypeError("spawn: empty artifact chain");
    if (r.taskId === undefined && r.chain.length === 1) throw new TypeError("spawn: a root task needs the task id its grant names (taskId): a fresh one would be denied LINEAGE_BROKEN");
    const taskId = r.taskId ?? newTaskId();
    const now = this.clock();
    const request = signedOrTypeError("spawn", "its args, action or resource", () => signRequest(r.agent, { taskId, action: r.action, resource: r.resource, args: r.args, artifact: leaf, createdAt: now, notAfter: now + this.timeoutMs }));
    const tracked = submitTaskTracked(this.nc, {
      request,
      args: r.args,
      chain: r.chain,
      timeoutMs: this.timeoutMs,
      skewMs: this.skewMs,
      lateWaitMs: this.lateWaitMs,
      ...(this.gatewayKeys !== undefined ? { gatewayKeys: this.gatewayKeys } : {}),
    });
    return { taskId, ...tracked };
  }

  /**
   * Prepare a child task for ctx.spawn(): a delegated artifact and the child's signed request.
   *
   * The child's task id is in its parent's namespace, the only ids a gateway signs a spawn lineage
   * for (core/child-task-id.ts): childTaskId(parentTaskId, label) for the `label` given, else for
   * a random one (newChildTaskId). An explicit `taskId` must already be one (from childTaskId
   * with this parent); give `label` or `taskId`, not both.
   *
   * Throws TypeError, before anything is signed, when `parentTaskId` or `taskId` is not a subject
   * token (TASK_ID_RE), `taskId` is not in the parent's namespace, `label` is not 1 to
   * MAX_CHILD_LABEL_LENGTH letters, digits, '_' or '-', both are given, the delegation would
   * widen the parent, or args (or the delegation) are not I-JSON. Oversized args: see spawn().
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
    /** The child's label in its parent's namespace: its task id is childTaskId(parentTaskId, label). Default: a random one. */
    label?: string;
    /** The child's task id, when made already: must be childTaskId(parentTaskId, some label). */
    taskId?: string;
  }): { request: ReturnType<typeof signRequest>; args: JsonValue; artifact: SignedArtifact } {
    const taskId = childTaskIdFor(o);
    const artifact = this.delegate(o.parent, o.holderKey, { ...o.delegation, holder: o.childAgent.keyId });
    const now = this.clock();
    const request = signedOrTypeError("child", "its args, action or resource", () =>
      signRequest(o.childAgent, {
        taskId,
        action: o.action,
        resource: o.resource,
        args: o.args,
        artifact,
        parentTaskId: o.parentTaskId,
        createdAt: now,
        notAfter: now + this.timeoutMs,
      }),
    );
    return { request, args: o.args, artifact };
  }

  /** Attenuate: sign a child artifact that narrows `parent`. Throws TypeError if it would widen, or is not I-JSON. */
  delegate(parent: SignedArtifact, holderKey: KeyPair, o: DelegateOptions): SignedArtifact {
    return signedOrTypeError("delegate", "the delegation", () => delegateArtifact(parent, holderKey, o));
  }

  /**
   * Stop this runtime's gateway and drain its connection; spawn() and registerAction() throw
   * after it. A second call returns the first one's promise: it resolves once all that is done.
   */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#closeOnce();
    return this.#closing;
  }

  async #closeOnce(): Promise<void> {
    await this.gateway?.stop();
    await this.nc.drain().catch(() => undefined);
  }
}
