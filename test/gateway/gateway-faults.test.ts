// Infrastructure faults through the real components: nats-server killed mid-collection,
// the audit store failing under a gateway, revocations racing tasks, gateway restarts.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { artifactId, delegateArtifact, originLineage, revoke, signRequest } from "../../src/core/artifacts.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { replay } from "../../src/audit/replay.ts";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS, STREAMS, SUBJECTS, TASK_CONSUMER, taskClaimKey } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { BreakableBackend } from "../../src/testkit/breakable-backend.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import type { TaskOutcome } from "../../src/gateway/outcome.ts";
import type { Gateway } from "../../src/gateway/gateway.ts";
import type { SignedArtifact } from "../../src/core/types.ts";

const agent = namedKey("agent-0");
const other = namedKey("agent-1");
const validity = () => ({ notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 });
const waitFor = async (cond: () => boolean, ms = 10_000) => {
  for (let i = 0; i < ms / 20 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(cond()).toBe(true);
};

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function grant(hh: Harness, taskId: string, holder = agent.keyId) {
  return hh.authority.grant({ taskId, holder, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`g-${taskId}`), attribution: { initiator: "t", reason: "faults" } });
}

/** An artifact for `taskId` whose origin lineage is never published: the task sits in `collecting`. */
async function grantWithoutLineage(hh: Harness, taskId: string): Promise<SignedArtifact> {
  // Suffixed, not prefixed: "other-" and a newTaskId would put a random character at index 22,
  // an id of child form one time in 64, which Authority.grant refuses.
  return (await grant(hh, `${taskId}-other`)).artifact;
}

/**
 * The bus forgets every claim, as a nats-server that acked claims it never synced can after a
 * crash. Claims cannot be purged or deleted (the bucket's stream denies it): the stream goes, and
 * the next gateway to start makes it again, empty.
 */
async function loseAllClaims(hh: Harness): Promise<void> {
  await (await jetstreamManager(hh.runtime.nc)).streams.delete(`KV_${KV_BUCKETS.nonces}`);
}

/** Gateways (two by default) whose "transfer" handler counts its runs per task id. */
async function countingGateways(n = 2): Promise<{ hh: Harness; runs: Map<string, number> }> {
  h = await startHarness({ gateways: n });
  const runs = new Map<string, number>();
  for (const g of h.gateways) g.registerAction("transfer", ({ taskId }) => (runs.set(taskId, (runs.get(taskId) ?? 0) + 1), { ok: true }));
  return { hh: h, runs };
}

/**
 * `races` new task ids, 50 at a time: for each, publish the submit bodies `submit` returns on
 * the shared queue at once. Resolves with every task's outcomes once each body has one.
 */
async function raceSubmissions(hh: Harness, races: number, submit: (taskId: string) => Promise<string[]>): Promise<Map<string, TaskOutcome[]>> {
  const js = jetstream(hh.runtime.nc);
  const out = new Map<string, TaskOutcome[]>();
  for (let start = 0; start < races; start += 50) {
    const sent = new Map<string, number>();
    await Promise.all(
      Array.from({ length: Math.min(50, races - start) }, async () => {
        const taskId = newTaskId();
        const bodies = await submit(taskId);
        sent.set(taskId, bodies.length);
        await Promise.all(bodies.map((b) => js.publish(SUBJECTS.taskSubmit, b)));
      }),
    );
    await waitFor(() => [...sent].every(([t, n]) => hh.outcomes.filter((o) => o.taskId === t).length === n), 60_000);
    for (const t of sent.keys()) out.set(t, hh.outcomes.filter((o) => o.taskId === t));
  }
  return out;
}

/** Per task: one allow, one REPLAYED deny, one run. Returns how many pairs were split across gateways. */
function expectOneRunEach(outcomes: Map<string, TaskOutcome[]>, runs: Map<string, number>, races: number): number {
  expect(outcomes.size).toBe(races);
  let bothGateways = 0;
  for (const [t, os] of outcomes) {
    expect({ t, allows: os.filter((o) => o.verdict === "allow").length }).toEqual({ t, allows: 1 });
    expect(os.filter((o) => o.verdict === "deny" && o.codes.includes("REPLAYED")).length).toBe(1);
    expect(runs.get(t)).toBe(1);
    if (new Set(os.map((o) => o.gatewayId)).size === 2) bothGateways++;
  }
  return bothGateways;
}

/** Two copies of one fresh submission for `taskId`: the same nonce, the same task id. */
async function twinSubmission(hh: Harness, taskId: string): Promise<string[]> {
  const { artifact } = await grant(hh, taskId);
  await jetstream(hh.runtime.nc).publish(SUBJECTS.artifact(taskId), JSON.stringify(artifact));
  const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
  const body = JSON.stringify({ request, args: { amount: 1 } });
  return [body, body];
}

/** The reasons of `taskId`'s decision records in a gateway's log, in order. */
async function decisionReasons(gw: Gateway, taskId: string): Promise<string[][]> {
  const out: string[][] = [];
  for await (const { bytes } of backendLogSource(gw.ledger.store.backend).records()) {
    const r = JSON.parse(Buffer.from(bytes).toString("utf8")) as { type: string; taskId?: string; decision?: { reasons: string[] } };
    if (r.type === "decision" && r.taskId === taskId) out.push(r.decision!.reasons);
  }
  return out;
}

/** The verdicts of `taskId`'s decision records in a gateway's log, in order. */
async function decisionVerdicts(gw: Gateway, taskId: string): Promise<string[]> {
  const out: string[] = [];
  for await (const { bytes } of backendLogSource(gw.ledger.store.backend).records()) {
    const r = JSON.parse(Buffer.from(bytes).toString("utf8")) as { type: string; taskId?: string; decision?: { verdict: string } };
    if (r.type === "decision" && r.taskId === taskId) out.push(r.decision!.verdict);
  }
  return out;
}

describe("gateway faults", () => {
  it("nats-server killed while tasks collect evidence: all pending denied GOVERNANCE_UNAVAILABLE, none executed; after restart new tasks run", async () => {
    h = await startHarness({ gateway: { evidenceDeadlineMs: 8_000 } });
    const hh = h;
    const executed = new Set<string>();
    hh.gateways[0]!.registerAction("transfer", ({ taskId }) => (executed.add(taskId), { ok: true }));
    // Tasks whose artifacts are withheld: they sit in `collecting`.
    const pending: string[] = [];
    for (let i = 0; i < 5; i++) {
      const taskId = newTaskId();
      const { artifact } = await grant(hh, taskId);
      const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
      await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request, args: { amount: 1 } }));
      pending.push(taskId);
    }
    await waitFor(() => hh.gateways[0]!.inFlight === 5);
    await hh.server!.kill();
    await waitFor(() => pending.every((t) => hh.outcomes.some((o) => o.taskId === t)));
    for (const t of pending) {
      const o = hh.outcomes.find((x) => x.taskId === t)!;
      expect(o.verdict).toBe("deny");
      expect(o.codes).toContain("GOVERNANCE_UNAVAILABLE");
      expect(executed.has(t)).toBe(false);
    }
    // Each deny is in the audit log.
    const tasks = hh.gateways[0]!.ledger.state.tasks;
    for (const t of pending) expect(tasks.get(t)?.status).toBe("denied");

    await hh.server!.restart();
    await waitFor(() => hh.warnings.length >= 0 && hh.gateways[0]!.connection.isClosed() === false, 10_000);
    await new Promise((r) => setTimeout(r, 1_500)); // reconnect + a fresh heartbeat
    const taskId = newTaskId();
    const { artifact } = await grant(hh, taskId);
    const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, chain: [artifact], taskId }).outcome;
    expect(o).toMatchObject({ verdict: "allow", status: "succeeded" });
  });

  it("audit store write failure: deny, handler never invoked; the gateway says why and leaves the queue to a sound gateway", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    const backend = await BreakableBackend.open(join(hh.dir, "breakable"));
    const gw = await hh.startGateway({ audit: backend });
    let calls = 0;
    gw.registerAction("transfer", () => (calls++, { ok: true }));
    const spawnOne = async (): Promise<TaskOutcome> => {
      const t = newTaskId();
      return hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [(await grant(hh, t)).artifact], taskId: t }).outcome;
    };
    const ok = await spawnOne();
    expect(ok.verdict).toBe("allow");
    expect(calls).toBe(1);
    await backend.breakNow();
    // The task whose records the log refuses: denied by this gateway, its handler never invoked.
    const refused = await spawnOne();
    expect(refused).toMatchObject({ verdict: "deny", gatewayId: gw.id });
    expect(refused.codes).toContain("GOVERNANCE_UNAVAILABLE");
    expect(calls).toBe(1);
    // It says why, once, and takes no more tasks: it would deny them all (GOVERNANCE_UNAVAILABLE
    // until reopened), and in a cluster that is a share of every valid task.
    expect(gw.auditFailure).toBeDefined();
    expect(hh.warnings.filter((w) => w.includes(`[${gw.id}] audit log not writable (`) && w.includes("leaving the task queue"))).toHaveLength(1);
    const sound = await hh.startGateway({ id: "gw-sound", key: namedKey("gateway-2") });
    sound.registerAction("transfer", () => ({ ok: true }));
    for (let i = 0; i < 3; i++) expect(await spawnOne()).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-sound" });
    expect(calls).toBe(1);
  });

  it("revocation while a task collects evidence denies it; revoking a parent denies a child in flight", async () => {
    h = await startHarness({ gateway: { evidenceDeadlineMs: 6_000 } });
    const hh = h;
    hh.gateways[0]!.registerAction("transfer", () => ({ ok: true }));
    const js = jetstream(hh.runtime.nc);
    // Root task: the artifact arrives, the origin lineage is held back.
    const taskId = newTaskId();
    const artifact = await grantWithoutLineage(hh, taskId);
    const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
    const p1 = submitTask(hh.runtime.nc, { request, args: { amount: 1 }, chain: [artifact] });
    await waitFor(() => hh.gateways[0]!.inFlight === 1);
    await hh.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "compromised");
    const o1 = await p1;
    expect(o1.verdict).toBe("deny");
    expect(o1.codes).toContain("REVOKED");
    // Stopped by the revocation event itself, not by the evidence deadline.
    expect(o1.detail).toMatch(/^revoked: artifact /);

    // Child in flight: chain [root, child] published, spawn lineage not yet; revoke the root.
    const parentTask = newTaskId();
    const { artifact: root } = await grant(hh, parentTask);
    const child = delegateArtifact(root, agent, { holder: other.keyId, scope: DEFAULT_SCOPE, validity: root.payload.validity, nonce: namedNonce(`c-${parentTask}`), attribution: { initiator: "t", reason: "t" } });
    const childTask = newTaskId();
    const creq = signRequest(other, { taskId: childTask, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact: child, parentTaskId: parentTask, createdAt: Date.now() });
    const p2 = submitTask(hh.runtime.nc, { request: creq, args: { amount: 1 }, chain: [root, child] });
    await waitFor(() => hh.gateways[0]!.inFlight === 1);
    await hh.authority.revoke({ type: "artifact", id: artifactId(root) }, "parent compromised");
    const o2 = await p2;
    expect(o2.codes).toContain("REVOKED");
    expect(o2.detail).toMatch(/^revoked: artifact /);
    // The log records why: each decision's own reasons name the revocation (its input holds the
    // evidence gathered so far), and replay re-derives them.
    for (const t of [taskId, childTask]) {
      const [reasons] = await decisionReasons(hh.gateways[0]!, t);
      expect(reasons).toContain("REVOKED");
    }
    expect((await replayGateway(hh.gateways[0]!)).ok).toBe(true);
    void js;
  });

  for (const verifyWorkers of [1, 0]) {
    it(`a revocation recorded after the nonce claim, just before the decision: the decision is made on it, recorded as a deny, and replay agrees (verify workers: ${verifyWorkers})`, async () => {
      let revokeNow: (() => Promise<void>) | undefined;
      h = await startHarness({ gateway: { verifyWorkers, hooks: { beforeRecordDecision: async () => revokeNow?.() } } });
      const hh = h;
      const gw = hh.gateways[0]!;
      let ran = 0;
      gw.registerAction("transfer", () => (ran++, { ok: true }));
      const taskId = newTaskId();
      const { artifact } = await grant(hh, taskId);
      // Straight into the log, as the governance feed would, but without telling the task:
      // the decision must still be made on the trust at its own position in the log.
      revokeNow = async () => {
        revokeNow = undefined;
        await gw.ledger.append({ type: "revocation", revocation: revoke(namedKey("authority"), { type: "artifact", id: artifactId(artifact) }, "late", Date.now()) });
      };
      const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
      expect(o.verdict).toBe("deny");
      expect(o.codes).toContain("REVOKED");
      expect(ran).toBe(0);
      expect(await decisionVerdicts(gw, taskId)).toEqual(["deny"]);
      const rep = await replayGateway(gw);
      expect(rep.divergences).toEqual([]);
      expect(rep.ok).toBe(true);
    });
  }

  it("a task revoked while its decision is being made is denied once: one decision record, no second one when the decision comes back", async () => {
    let hold: (() => Promise<void>) | undefined;
    h = await startHarness({ gateway: { hooks: { beforeRecordDecision: async () => hold?.() } } });
    const hh = h;
    const gw = hh.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const taskId = newTaskId();
    const { artifact } = await grant(hh, taskId);
    // Revoke through the governance feed and wait until the machine has denied and recorded it.
    hold = async () => {
      hold = undefined;
      await hh.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "mid-decision");
      await waitFor(() => hh.outcomes.some((x) => x.taskId === taskId));
    };
    const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
    expect(o.verdict).toBe("deny");
    expect(o.codes).toContain("REVOKED");
    await new Promise((r) => setTimeout(r, 200)); // let the abandoned verify step finish
    expect(await decisionVerdicts(gw, taskId)).toEqual(["deny"]);
    expect((await replayGateway(gw)).ok).toBe(true);
  });

  it("a task that waits longer than the ack wait is not redelivered into a second flight: one decision, one run", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    // The shared consumer exists already (the runtime created the bus): shorten its ack wait.
    const jsm = await jetstreamManager(hh.runtime.nc);
    await jsm.consumers.update(STREAMS.tasks, TASK_CONSUMER, { ack_wait: 1_000_000_000 });
    const gw = await hh.startGateway({ evidenceDeadlineMs: 6_000 });
    let ran = 0;
    gw.registerAction("transfer", () => (ran++, { ok: true }));
    const taskId = newTaskId();
    // The origin lineage for this task is published by hand, late.
    const artifact = await grantWithoutLineage(hh, taskId);
    const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
    const done = submitTask(hh.runtime.nc, { request, args: { amount: 1 }, chain: [artifact] });
    await waitFor(() => gw.inFlight === 1);
    await new Promise((r) => setTimeout(r, 2_600)); // over two ack waits in `collecting`
    expect(gw.inFlight).toBe(1);
    const lineage = originLineage(namedKey("authority"), { childTaskId: taskId, childArtifact: artifact, emittedAt: Date.now() });
    await jetstream(hh.runtime.nc).publish(SUBJECTS.lineage(taskId), JSON.stringify(lineage));
    const o = await done;
    expect(o.verdict).toBe("allow");
    await new Promise((r) => setTimeout(r, 300));
    expect(ran).toBe(1);
    expect(await decisionVerdicts(gw, taskId)).toEqual(["allow"]);
    expect(hh.outcomes.filter((x) => x.taskId === taskId)).toHaveLength(1);
  });

  it("stop() while a task waits for a slot: it is handed back, not run by the stopping gateway, and another gateway runs it", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    // A short ack wait: a message handed back may first reach the stopped gateway's last pull
    // request (the server cannot know it is gone), and is redelivered from there after it.
    const jsm = await jetstreamManager(hh.runtime.nc);
    await jsm.consumers.update(STREAMS.tasks, TASK_CONSUMER, { ack_wait: 2_000_000_000 });
    const gw1 = await hh.startGateway({ maxInFlight: 1, evidenceDeadlineMs: 8_000 });
    const ran: string[] = [];
    gw1.registerAction("transfer", ({ taskId }) => (ran.push(`gw1:${taskId}`), { ok: true }));
    // Task 1 holds the only slot: its origin lineage never comes.
    const t1 = newTaskId();
    const a1 = await grantWithoutLineage(hh, t1);
    const p1 = submitTask(hh.runtime.nc, { request: signRequest(agent, { taskId: t1, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact: a1, createdAt: Date.now() }), args: { amount: 1 }, chain: [a1] });
    await waitFor(() => gw1.inFlight === 1);
    // Task 2 has all its evidence, and waits for the slot.
    const t2 = newTaskId();
    const { artifact: a2 } = await grant(hh, t2);
    const p2 = submitTask(hh.runtime.nc, { request: signRequest(agent, { taskId: t2, action: "transfer", resource: "payments/transfer", args: { amount: 2 }, artifact: a2, createdAt: Date.now() }), args: { amount: 2 }, chain: [a2] });
    await new Promise((r) => setTimeout(r, 300));
    await gw1.stop();
    expect((await p1).verdict).toBe("deny");
    expect(ran).toEqual([]);
    expect(gw1.ledger.state.tasks.has(t2)).toBe(false);
    // Handed back: the next gateway runs it.
    const gw2 = await hh.startGateway({ id: "gw-2", key: namedKey("gateway-2") });
    gw2.registerAction("transfer", ({ taskId }) => (ran.push(`gw2:${taskId}`), { ok: true }));
    expect(await p2).toMatchObject({ verdict: "allow", gatewayId: "gw-2", status: "succeeded" });
    expect(ran).toEqual([`gw2:${t2}`]);
  });

  it("a malformed submission naming a task that is still collecting does not drop that task's evidence", async () => {
    h = await startHarness({ gateway: { evidenceDeadlineMs: 6_000 } });
    const hh = h;
    const gw = hh.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const taskId = newTaskId();
    const artifact = await grantWithoutLineage(hh, taskId);
    const done = submitTask(hh.runtime.nc, { request: signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() }), args: { amount: 1 } , chain: [artifact] });
    await waitFor(() => gw.inFlight === 1);
    // Someone else submits a malformed request under the same task id: denied at once.
    await jetstream(hh.runtime.nc).publish(SUBJECTS.taskSubmit, JSON.stringify({ request: { payload: { taskId } }, args: 1, extra: true }));
    await waitFor(() => hh.outcomes.some((o) => o.taskId === taskId && o.codes.includes("MALFORMED")));
    const lineage = originLineage(namedKey("authority"), { childTaskId: taskId, childArtifact: artifact, emittedAt: Date.now() });
    await jetstream(hh.runtime.nc).publish(SUBJECTS.lineage(taskId), JSON.stringify(lineage));
    // (The client's own wait may see the forged twin's deny first: outcomes are per task id.)
    void done.catch(() => undefined);
    await waitFor(() => hh.outcomes.filter((o) => o.taskId === taskId).length === 2);
    const outcomes = hh.outcomes.filter((o) => o.taskId === taskId);
    expect(outcomes.map((o) => o.verdict).sort()).toEqual(["allow", "deny"]);
    expect(outcomes.find((o) => o.verdict === "allow")).toMatchObject({ status: "succeeded" });
    expect(outcomes.find((o) => o.verdict === "deny")!.codes).toContain("MALFORMED");
  });

  it("two gateways, one nonce submitted to both: exactly one allow, across many races", async () => {
    const RACES = Number(process.env["FAILCLOSED_RACES"] ?? 1000);
    const { hh, runs } = await countingGateways();
    // The same submission twice on the shared queue: each gateway may take one.
    const outcomes = await raceSubmissions(hh, RACES, (taskId) => twinSubmission(hh, taskId));
    // The race is real: a good share of pairs were split across the two gateways.
    expect(expectOneRunEach(outcomes, runs, RACES)).toBeGreaterThan(RACES / 10);
  });

  it("one gateway, two copies of a submission in flight at once: the copy that loses the nonce does not deny the one that won it", async () => {
    // The loser's REPLAYED decision is queued while the winner still claims its task id: it
    // must not make the winner's nonce look spent in this gateway's log.
    const RACES = Number(process.env["FAILCLOSED_TASK_RACES"] ?? 200);
    const { hh, runs } = await countingGateways(1);
    expectOneRunEach(await raceSubmissions(hh, RACES, (taskId) => twinSubmission(hh, taskId)), runs, RACES);
    expect((await replayGateway(hh.gateways[0]!)).ok).toBe(true);
  });

  it("one task id, two different artifacts, one to each of two gateways: one allow and one run, across many races", async () => {
    // Two valid authorizations naming one task id are two nonces, so only the task-id claim
    // can stop the second run; the gateways keep separate logs.
    const RACES = Number(process.env["FAILCLOSED_TASK_RACES"] ?? 200);
    const { hh, runs } = await countingGateways();
    const js = jetstream(hh.runtime.nc);
    const outcomes = await raceSubmissions(hh, RACES, (taskId) =>
      Promise.all(
        ["a", "b"].map(async (which) => {
          const { artifact } = await hh.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`${which}-${taskId}`), attribution: { initiator: "t", reason: "twin" } });
          await js.publish(SUBJECTS.artifact(taskId), JSON.stringify(artifact));
          const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
          return JSON.stringify({ request, args: { amount: 1 } });
        }),
      ),
    );
    expect(expectOneRunEach(outcomes, runs, RACES)).toBeGreaterThan(RACES / 10);
    for (const g of hh.gateways) expect((await replayGateway(g)).ok).toBe(true);
  });

  it("a task id that ran is never run again after a restart, with a fresh artifact, even when the cluster has lost its claim", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    const dir = join(hh.dir, "gw-restart");
    let runs = 0;
    const gw = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
    gw.registerAction("transfer", () => (runs++, { ok: true }));
    const t = newTaskId();
    const first = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [(await grant(hh, t)).artifact], taskId: t }).outcome;
    expect(first).toMatchObject({ verdict: "allow", status: "succeeded" });
    await gw.stop();
    const sizeAtStop = gw.ledger.store.size;

    // JetStream on nats-server 2.9 acks before fsync, so a claim can be lost; the log is the backstop.
    expect(await (await new Kvm(hh.runtime.nc).open(KV_BUCKETS.nonces)).get(taskClaimKey(t))).toMatchObject({ operation: "PUT" });
    await loseAllClaims(hh);
    const gw2 = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
    // stop() snapshotted the fold: the restart read its state from there and folded nothing.
    expect(gw2.ledger.store.openedFrom).toEqual({ snapshotSize: sizeAtStop, recordsFolded: 0 });
    gw2.registerAction("transfer", () => (runs++, { ok: true }));
    const fresh = await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`again-${t}`), attribution: { initiator: "t", reason: "again" } });
    const again = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [fresh.artifact], taskId: t }).outcome;
    expect(again).toMatchObject({ verdict: "deny", codes: ["REPLAYED"] });
    expect(again.checks?.find((c) => c.check === "task")).toMatchObject({ ok: false, code: "REPLAYED", detail: "task id already decided on this gateway" });
    expect(runs).toBe(1);
    // A duplicate is refused before any claim: the fresh artifact's nonce is not spent.
    expect(await (await new Kvm(hh.runtime.nc).open(KV_BUCKETS.nonces)).get(fresh.artifact.payload.nonce)).toBeNull();
    expect(await decisionVerdicts(gw2, t)).toEqual(["allow", "deny"]);
    const rep = await replayGateway(gw2);
    expect(rep.ok).toBe(true);
    expect(rep.snapshot).toEqual({ at: sizeAtStop, result: "matches" });
  });

  it("a gateway that crashed restarts from its last periodic snapshot: the records after it are folded, and what ran stays spent", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    const dir = join(hh.dir, "gw-crash");
    let runs = 0;
    const gw = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1"), snapshotEveryEntries: 5 });
    gw.registerAction("transfer", () => (runs++, { ok: true }));
    const ids = Array.from({ length: 6 }, () => newTaskId());
    for (const t of ids) {
      const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [(await grant(hh, t)).artifact], taskId: t }).outcome;
      expect(o).toMatchObject({ verdict: "allow", status: "succeeded" });
    }
    await gw.crash();
    const size = gw.ledger.store.size;
    await loseAllClaims(hh);

    const gw2 = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1"), snapshotEveryEntries: 5 });
    gw2.registerAction("transfer", () => (runs++, { ok: true }));
    const opened = gw2.ledger.store.openedFrom;
    expect(opened.snapshotProblem).toBeUndefined();
    expect(opened.snapshotSize).toBeGreaterThan(0);
    expect(opened.snapshotSize + opened.recordsFolded).toBe(size);
    expect(opened.recordsFolded).toBeLessThan(size / 2);
    // The first task's allow is in the snapshot, the last one's in the records folded after it.
    for (const t of [ids[0]!, ids[5]!]) {
      const fresh = await hh.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: validity(), nonce: namedNonce(`again-${t}`), attribution: { initiator: "t", reason: "again" } });
      const again = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [fresh.artifact], taskId: t }).outcome;
      expect(again).toMatchObject({ verdict: "deny", codes: ["REPLAYED"] });
    }
    expect(runs).toBe(6);
    expect(hh.warnings.filter((w) => w.includes("snapshot"))).toEqual([]);
    expect(await gw2.ledger.store.prefixCheck).toMatchObject({ ok: true });
    const rep = await replayGateway(gw2);
    expect(rep.ok).toBe(true);
    // The auditor compared the gateway's latest snapshot with its own fold from the first record.
    expect(rep.snapshot).toMatchObject({ result: "matches" });
  });

  it("a copy of a task sent as the fold window passes the original: denied, one run, and the log replays clean", async () => {
    // The claims a decision records must be the fold at the decision's own position, as replay
    // sees it: the copy's evidence entries, queued just before its decision, move the window.
    // F entries after the original's outcome, the copy's four entries straddle its edge for
    // F = W-2, W-1 and W; the runs around them check both sides.
    const W = 30;
    for (let F = W - 3; F <= W + 1; F++) {
      h = await startHarness({ gateways: 0 });
      const hh = h;
      const gw = await hh.startGateway({ foldWindow: W });
      let runs = 0;
      gw.registerAction("transfer", () => (runs++, { ok: true }));
      const taskId = newTaskId();
      const { artifact, lineage } = await grant(hh, taskId);
      const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, artifact, createdAt: Date.now() });
      const first = await submitTask(hh.runtime.nc, { request, args: { amount: 1 }, chain: [artifact], timeoutMs: 15_000 });
      expect(first).toMatchObject({ verdict: "allow", status: "succeeded" });
      const at = gw.ledger.state.entries;
      // Filler entries: peer gateway keys (an authority added would have to heartbeat too).
      await Promise.all(Array.from({ length: F }, (_, i) => gw.ledger.append({ type: "trust", change: { op: "gateway.add", keyId: namedKey(`filler-${i}`).keyId } })));
      expect(gw.ledger.state.entries - at).toBe(F);
      const js = jetstream(hh.runtime.nc);
      await js.publish(SUBJECTS.artifact(taskId), JSON.stringify(artifact));
      await js.publish(SUBJECTS.lineage(taskId), JSON.stringify(lineage));
      await js.publish(SUBJECTS.taskSubmit, JSON.stringify({ request, args: { amount: 1 } }));
      await waitFor(() => hh.outcomes.filter((o) => o.taskId === taskId).length === 2);
      expect(hh.outcomes.filter((o) => o.taskId === taskId)[1], JSON.stringify({ F, checks: hh.outcomes.filter((o) => o.taskId === taskId)[1]?.checks?.filter((c) => !c.ok) })).toMatchObject({ verdict: "deny", codes: expect.arrayContaining(["REPLAYED"]) });
      expect(runs).toBe(1);
      await gw.ledger.store.checkpoint();
      const roots = {
        gatewayKeys: Array.from({ length: 4 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId),
        authorities: [namedKey("authority").keyId, ...Array.from({ length: F }, (_, i) => namedKey(`filler-${i}`).keyId)],
        origin: gw.id,
      };
      const rep = await replay(backendLogSource(gw.ledger.store.backend), roots, { foldWindow: W });
      expect({ F, divergences: rep.divergences }).toEqual({ F, divergences: [] });
      expect(rep.decisionsRederived).toBe(2);
      await hh.close();
      h = undefined;
    }
  });

  it("a handler that throws records a failed outcome; a crash while executing is recorded as interrupted and never re-run", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    const dir = join(hh.dir, "gw-crash");
    const gw = await hh.startGateway({ id: "gw-1", audit: dir });
    gw.registerAction("transfer", ({ args }) => {
      if ((args as { amount: number }).amount === 13) throw new Error("unlucky amount");
      return { ok: true };
    });
    let release: () => void = () => undefined;
    gw.registerAction("read", () => new Promise((r) => (release = () => r({ never: true }))));
    const t1 = newTaskId();
    const o1 = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 13 }, chain: [(await grant(hh, t1)).artifact], taskId: t1 }).outcome;
    expect(o1).toMatchObject({ verdict: "allow", status: "failed", error: "unlucky amount" });

    const t2 = newTaskId();
    const p2 = hh.runtime.spawn({ agent, action: "read", resource: "payments/ledger", args: { amount: 1 }, chain: [(await grant(hh, t2)).artifact], taskId: t2 }).outcome;
    await waitFor(() => gw.ledger.state.tasks.get(t2)?.status === "allowed");
    await gw.crash();
    release();
    void p2;
    const store = await AuditStore.open(dir, { origin: "gw-1", gatewayKey: namedKey("gateway-1"), clock: () => Date.now() });
    expect(store.state.tasks.get(t2)?.status).toBe("allowed");
    await store.close();
    // Restart on the same log: the unfinished allow becomes an interrupted failure.
    const gw2 = await hh.startGateway({ id: "gw-1", audit: dir, key: namedKey("gateway-1") });
    let reruns = 0;
    gw2.registerAction("read", () => (reruns++, { ok: true }));
    expect(gw2.ledger.state.tasks.get(t2)?.status).toBe("failed");
    await new Promise((r) => setTimeout(r, 1_000));
    expect(reruns).toBe(0);
  });

  it("a handler that never returns is cut off: outcome failed, recorded, its signal aborted, and the final checkpoint reaches the bus on stop", async () => {
    h = await startHarness({ gateways: 0 });
    const hh = h;
    const gw = await hh.startGateway({ handlerTimeoutMs: 300 });
    let toldToStop: unknown;
    gw.registerAction("transfer", ({ signal }) => {
      signal.addEventListener("abort", () => {
        toldToStop = signal.reason as unknown;
      });
      return new Promise(() => undefined);
    });
    const t = newTaskId();
    const o = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [(await grant(hh, t)).artifact], taskId: t }).outcome;
    expect(o).toMatchObject({ verdict: "allow", status: "failed" });
    expect(o.error).toMatch(/took longer than 300 ms/);
    expect(String(toldToStop)).toMatch(/took longer than 300 ms/); // the handler was told to stop
    expect(gw.ledger.state.tasks.get(t)?.status).toBe("failed");
    await gw.stop();
    const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(hh.runtime.nc);
    const info = await jsm.streams.info("FAILCLOSED_CHECKPOINTS");
    expect(info.state.messages).toBeGreaterThan(0);
    const last = await jsm.streams.getMessage("FAILCLOSED_CHECKPOINTS", { last_by_subj: "failclosed.audit.checkpoint.gw-1" });
    expect((JSON.parse(last!.string()) as { payload: { size: number } }).payload.size).toBe(gw.ledger.store.size - 1);
  });
});
