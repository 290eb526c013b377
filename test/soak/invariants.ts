// The soak's invariants, checked after the run against what actually happened: the handler
// invocations the gateways made, the client outcomes, and each gateway's LevelDB audit log as an
// auditor reads it (raw records, plus replay). Each violation names the seed and the task.
import { LevelBackend } from "../../src/audit/backend.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay, type ReplayReport } from "../../src/audit/replay.ts";
import { namedKey } from "../../src/testkit/world.ts";
import type { Invocation, SoakTimings, TaskRecord, Window } from "./soak-world.ts";

export interface DecisionFact {
  seq: number;
  verdict: "allow" | "deny";
  reasons: string[];
  now: number;
  busConnected: unknown;
  feedAt: unknown;
  nonceKey: unknown;
  time: number;
}

export interface LogFacts {
  gatewayId: string;
  size: number;
  decisions: Map<string, DecisionFact[]>;
  outcomes: Map<string, { seq: number; status: string; error?: string }[]>;
  revocations: Map<string, number>;
  verify: ReplayReport;
  replay: ReplayReport;
}

/** Read a stopped gateway's log from its LevelDB directory, verify it, replay it. */
export async function readGatewayLog(dir: string, gatewayId: string): Promise<LogFacts> {
  const backend = await LevelBackend.open(dir, { createIfMissing: false });
  try {
    const roots = { gatewayKeys: Array.from({ length: 4 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId), authorities: [namedKey("authority").keyId], origin: gatewayId };
    const verify = await replay(backendLogSource(backend), roots, { rederive: false });
    const rep = await replay(backendLogSource(backend), roots);
    const decisions = new Map<string, DecisionFact[]>();
    const outcomes = new Map<string, { seq: number; status: string; error?: string }[]>();
    const revocations = new Map<string, number>();
    let size = 0;
    for await (const { bytes } of backendLogSource(backend).records()) {
      size++;
      const r = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
      const seq = r["seq"] as number;
      if (r["type"] === "decision") {
        const taskId = r["taskId"] as string;
        const d = r["decision"] as { verdict: "allow" | "deny"; reasons: string[] };
        const input = r["input"] as { now?: number; health?: { busConnected?: unknown; revocationFeedAt?: unknown }; nonce?: { key?: unknown } };
        const list = decisions.get(taskId) ?? [];
        list.push({ seq, verdict: d.verdict, reasons: d.reasons, now: input.now ?? Number.NaN, busConnected: input.health?.busConnected, feedAt: input.health?.revocationFeedAt, nonceKey: input.nonce?.key, time: r["time"] as number });
        decisions.set(taskId, list);
      } else if (r["type"] === "outcome") {
        const taskId = r["taskId"] as string;
        const list = outcomes.get(taskId) ?? [];
        list.push({ seq, status: r["status"] as string, ...(typeof r["error"] === "string" ? { error: r["error"] } : {}) });
        outcomes.set(taskId, list);
      } else if (r["type"] === "revocation") {
        const t = (r["revocation"] as { payload: { target: { type: string; id?: string; keyId?: string } } }).payload.target;
        revocations.set(t.id ?? t.keyId ?? "?", seq);
      }
    }
    return { gatewayId, size, decisions, outcomes, revocations, verify, replay: rep };
  } finally {
    await backend.close();
  }
}

export interface RunFacts {
  seed: number;
  timings: SoakTimings;
  hangBoundMs: number;
  tasks: Map<string, TaskRecord>;
  invocations: Invocation[];
  logs: LogFacts[];
  busDown: Window[];
  stale: Window[];
  /** Another policy in force on every gateway: every task of the run is bound to the first one. */
  otherPolicy: Window[];
  heartbeats: number[];
  errors: string[];
}

/** Tolerance after a kill for a decision whose claims were answered just before it (no I/O between). */
const KILL_TOLERANCE_MS = 500;

export function checkInvariants(f: RunFacts): string[] {
  const v: string[] = [];
  const tag = `[seed=${f.seed}]`;
  const task = (id: string): string => {
    const r = f.tasks.get(id);
    return r ? `task ${id} (${r.kind}${r.notes.length ? `; ${r.notes.join("; ")}` : ""})` : `task ${id} (not submitted by the soak)`;
  };
  for (const e of f.errors) v.push(`${tag} HARNESS ${e}`);

  // 1. A handler never runs, and no gateway allows, what the oracle says must be denied.
  for (const inv of f.invocations) {
    const r = f.tasks.get(inv.taskId);
    if (r === undefined) {
      v.push(`${tag} INV1 handler ran for ${task(inv.taskId)} on ${inv.gatewayId}: no such task was submitted`);
      continue;
    }
    if (r.expect === "must-deny") v.push(`${tag} INV1 handler ran for ${task(inv.taskId)} on ${inv.gatewayId} at ${inv.at}, but it must be denied: ${r.why}`);
    if (r.onlyOn !== undefined && !r.onlyOn.includes(inv.gatewayId)) v.push(`${tag} INV1 handler ran for ${task(inv.taskId)} on ${inv.gatewayId}, but its artifact binds it to ${r.onlyOn.join(",")}`);
  }
  for (const log of f.logs) {
    for (const [taskId, ds] of log.decisions) {
      const r = f.tasks.get(taskId);
      for (const d of ds) {
        if (d.verdict !== "allow") continue;
        if (r?.expect === "must-deny") v.push(`${tag} INV1 ${log.gatewayId} log seq ${d.seq} allows ${task(taskId)}, which must be denied: ${r.why}`);
        if (r?.onlyOn !== undefined && !r.onlyOn.includes(log.gatewayId)) v.push(`${tag} INV1 ${log.gatewayId} log seq ${d.seq} allows ${task(taskId)}, bound to ${r.onlyOn.join(",")}`);
      }
    }
  }

  // 2. At most one handler run per task id and per nonce, across both gateways.
  const byTask = new Map<string, Invocation[]>();
  const byNonce = new Map<string, Invocation[]>();
  for (const inv of f.invocations) {
    byTask.set(inv.taskId, [...(byTask.get(inv.taskId) ?? []), inv]);
    byNonce.set(inv.nonce, [...(byNonce.get(inv.nonce) ?? []), inv]);
  }
  for (const [id, xs] of byTask) if (xs.length > 1) v.push(`${tag} INV2 handler ran ${xs.length}x for ${task(id)}: on ${xs.map((x) => `${x.gatewayId}@${x.at}`).join(", ")}`);
  for (const [nonce, xs] of byNonce) {
    if (xs.length > 1 && new Set(xs.map((x) => x.taskId)).size > 1) v.push(`${tag} INV2 handler ran ${xs.length}x for nonce ${nonce}: tasks ${xs.map((x) => `${x.taskId} on ${x.gatewayId}`).join(", ")}`);
  }
  // Also: at most one allow per task id across every log (each log's second allow is replay's finding).
  const allowsByTask = new Map<string, string[]>();
  for (const log of f.logs) for (const [id, ds] of log.decisions) for (const d of ds) if (d.verdict === "allow") allowsByTask.set(id, [...(allowsByTask.get(id) ?? []), `${log.gatewayId}#${d.seq}`]);
  for (const [id, xs] of allowsByTask) if (xs.length > 1) v.push(`${tag} INV2 ${xs.length} allow decisions for ${task(id)} across the logs: ${xs.join(", ")}`);

  // 3. Every invocation has an allow decision and an outcome after it in the deciding gateway's log.
  for (const inv of f.invocations) {
    const log = f.logs.find((l) => l.gatewayId === inv.gatewayId);
    const allow = log?.decisions.get(inv.taskId)?.find((d) => d.verdict === "allow");
    if (allow === undefined) {
      v.push(`${tag} INV3 handler ran for ${task(inv.taskId)} on ${inv.gatewayId} with no allow decision in that gateway's log`);
      continue;
    }
    // Write-ahead: the allow was durable in the log before the handler was invoked.
    if (allow.seq >= inv.durableSize) v.push(`${tag} INV3 handler ran for ${task(inv.taskId)} on ${inv.gatewayId} when its log was durable only to size ${inv.durableSize}: the allow (seq ${allow.seq}) was not yet written`);
    const out = log!.outcomes.get(inv.taskId)?.find((o) => o.seq > allow.seq);
    if (out === undefined) v.push(`${tag} INV3 handler ran for ${task(inv.taskId)} on ${inv.gatewayId} (allow at seq ${allow.seq}) but its log holds no outcome record after it`);
  }

  // 3b. Every allow in a log has an outcome after it there (gateways were stopped gracefully at
  //     the end, and a crashed one records its unfinished allows as interrupted when it restarts).
  for (const log of f.logs) {
    for (const [taskId, ds] of log.decisions) {
      for (const d of ds) {
        if (d.verdict !== "allow") continue;
        if (!(log.outcomes.get(taskId) ?? []).some((o) => o.seq > d.seq)) v.push(`${tag} INV3 ${log.gatewayId} log seq ${d.seq} allows ${task(taskId)} but holds no outcome record after it`);
      }
    }
  }

  // 4. Every spawn (client or ctx.spawn) resolved, within the hang bound.
  for (const r of f.tasks.values()) {
    const c = r.client;
    if (c === undefined) continue;
    if (c.settledAt === undefined) v.push(`${tag} INV4 ${c.via} for ${task(r.taskId)} never resolved (started ${c.startedAt})`);
    else if (c.settledAt - c.startedAt > f.hangBoundMs) v.push(`${tag} INV4 ${c.via} for ${task(r.taskId)} took ${c.settledAt - c.startedAt} ms, over the ${f.hangBoundMs} ms hang bound`);
    if (c.threw !== undefined) v.push(`${tag} INV4 ${c.via} for ${task(r.taskId)} threw instead of resolving: ${c.threw}`);
  }

  // 5. Every log verifies and replays with no divergence.
  for (const log of f.logs) {
    for (const [what, rep] of [["verify", log.verify], ["replay", log.replay]] as const) {
      if (!rep.ok || rep.divergences.length > 0) v.push(`${tag} INV5 ${what} of ${log.gatewayId}'s log: ok=${rep.ok}, ${rep.divergences.length} divergence(s): ${rep.divergences.slice(0, 5).map((d) => `seq ${d.seq} ${d.kind}: ${d.detail}`).join(" | ")}`);
    }
  }

  // 6. No allow decided while the bus was down, nor while the feed was stale (heartbeats stopped),
  //    nor while a policy the run's artifacts are not bound to was in force everywhere.
  for (const log of f.logs) {
    for (const [taskId, ds] of log.decisions) {
      for (const d of ds) {
        if (d.verdict !== "allow") continue;
        for (const win of f.busDown) {
          if (d.now > win.from + KILL_TOLERANCE_MS && d.now < win.to) v.push(`${tag} INV6 ${log.gatewayId} seq ${d.seq} allowed ${task(taskId)} at ${d.now}, ${d.now - win.from} ms into a bus outage [${win.from}, ${win.to}] (busConnected=${String(d.busConnected)})`);
        }
        for (const win of f.otherPolicy) {
          if (d.now > win.from && d.now < win.to) v.push(`${tag} INV6 ${log.gatewayId} seq ${d.seq} allowed ${task(taskId)} at ${d.now} while ${win.what} [${win.from}, ${win.to}], though every artifact of the run binds the first policy`);
        }
        for (const win of f.stale) {
          if (d.now > win.from && d.now < win.to) v.push(`${tag} INV6 ${log.gatewayId} seq ${d.seq} allowed ${task(taskId)} at ${d.now} on a stale feed: last heartbeat + maxFeedAge = ${win.from}, heartbeats resumed ${win.to} (recorded feedAt=${String(d.feedAt)})`);
        }
      }
    }
  }

  // 7. The client's word: "denied" means its submission did not run and will not; "succeeded" means
  //    it ran. Its submission is told apart by its nonce: byte-identical copies share it, another
  //    artifact's submission for the same task id does not.
  for (const r of f.tasks.values()) {
    const o = r.client?.outcome;
    if (o === undefined || r.nonce === undefined) continue;
    const runs = f.invocations.filter((i) => i.taskId === r.taskId && i.nonce === r.nonce);
    if (o.status === "denied" && runs.length > 0) v.push(`${tag} INV7 client was told "denied" (${o.codes.join(",")} by ${o.gatewayId}${o.duplicate ? ", duplicate" : ""}: ${o.detail ?? ""}) for ${task(r.taskId)}, but it ran on ${runs.map((i) => `${i.gatewayId}@${i.at}`).join(", ")} (told at ${r.client?.settledAt})`);
    if (o.status === "succeeded" && runs.length === 0) v.push(`${tag} INV7 client was told "succeeded" by ${o.gatewayId} for ${task(r.taskId)}, but no handler ran for its submission`);
  }
  return v;
}

/** The stale windows' start: the last heartbeat issued before each window's end, plus the feed bound. */
export function fixStaleWindows(stale: Window[], heartbeats: number[], maxFeedAgeMs: number): void {
  for (const w of stale) {
    const before = heartbeats.filter((h) => h < w.to);
    // No heartbeat seen at all: nothing can have been fresh, any allow is suspect from the start.
    w.from = (before.length > 0 ? Math.max(...before) : 0) + maxFeedAgeMs;
  }
}
