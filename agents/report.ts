// What the example agents hand back: for every task they attempted, what they expected the
// gateway to decide and what it actually decided. An agent that cannot say what it expected
// is not a demonstration, so every task carries an expectation and is judged against it.
import { randomBytes } from "node:crypto";
import type { Authority, DenialCode, Runtime, TaskOutcome } from "../src/index.ts";

export interface Expectation {
  verdict: "allow" | "deny";
  /** The decision's reasons, exactly (as a set); empty for an allow. */
  codes: DenialCode[];
}

export interface TaskReport {
  agent: string;
  /** What the agent was trying to show, in a few words. */
  label: string;
  taskId: string;
  action: string;
  resource: string;
  /** Delegation depth of the artifact the task ran on (0 = a root grant). */
  depth: number;
  expected: Expectation;
  actual: { verdict: "allow" | "deny"; codes: DenialCode[]; status: TaskOutcome["status"]; detail?: string };
  /** Expected reasons the gateway did not give, and reasons it gave that were not expected. */
  missingCodes: DenialCode[];
  extraCodes: DenialCode[];
  ok: boolean;
}

/** A check made outside the gateway: a refusal by the local API, or a side effect. */
export interface SideCheck {
  agent: string;
  label: string;
  expected: string;
  actual: string;
  ok: boolean;
}

export interface AgentReport {
  agent: string;
  tasks: TaskReport[];
  checks: SideCheck[];
  ok: boolean;
}

/** What every agent gets from the demo: the runtime, the authority that grants to it, a log. */
export interface AgentEnv {
  rt: Runtime;
  authority: Authority;
  gatewayId: string;
  log: (line: string) => void;
}

export const ALLOW: Expectation = { verdict: "allow", codes: [] };
export const deny = (...codes: DenialCode[]): Expectation => ({ verdict: "deny", codes });

/** A fresh single-use artifact nonce: every artifact authorizes exactly one task. */
export function freshNonce(): string {
  return randomBytes(18).toString("base64url");
}

export function judge(
  t: { agent: string; label: string; action: string; resource: string; depth: number; expected: Expectation },
  o: TaskOutcome,
): TaskReport {
  const codes = [...o.codes];
  const expected = t.expected;
  const missing = expected.codes.filter((c) => !codes.includes(c));
  const extra = codes.filter((c) => !expected.codes.includes(c));
  // Exact: a deny for an unexpected reason as well is a surprise worth failing on. And an
  // allow must also have run: a handler failure after an allow is not what an agent expects.
  // A verbatim replay's answer is "unknown", marked duplicate: the client cannot see its
  // original's fate (the original ran), and a replay that ran nothing is what is expected.
  const ok =
    o.verdict === expected.verdict && missing.length === 0 && extra.length === 0 && (expected.verdict === "deny" ? o.status === "denied" || (o.status === "unknown" && o.duplicate === true) : o.status === "succeeded");
  return {
    agent: t.agent,
    label: t.label,
    taskId: o.taskId,
    action: t.action,
    resource: t.resource,
    depth: t.depth,
    expected,
    actual: { verdict: o.verdict, codes, status: o.status, ...(o.detail !== undefined ? { detail: o.detail } : o.error !== undefined ? { detail: o.error } : {}) },
    missingCodes: missing,
    extraCodes: extra,
    ok,
  };
}

export function sideCheck(agent: string, label: string, expected: string, actual: string): SideCheck {
  return { agent, label, expected, actual, ok: expected === actual };
}

export function summarize(agent: string, tasks: TaskReport[], checks: SideCheck[]): AgentReport {
  return { agent, tasks, checks, ok: tasks.length > 0 && tasks.every((t) => t.ok) && checks.every((c) => c.ok) };
}

export function describeTask(t: TaskReport): string {
  const want = t.expected.verdict === "allow" ? "allow" : `deny ${t.expected.codes.join(",")}`;
  const got = t.actual.verdict === "allow" ? `allow (${t.actual.status})` : `deny ${t.actual.codes.join(",")}`;
  return `${t.ok ? "ok  " : "FAIL"} [${t.agent}] ${t.label}: ${t.action} ${t.resource} (depth ${t.depth}) expected ${want}, got ${got}`;
}

/** A validity window around now: agents sit at the edge, so the wall clock is theirs to read. */
export function windowFromNow(beforeMs: number, afterMs: number): { notBefore: number; expiresAt: number } {
  const now = Date.now();
  return { notBefore: now - beforeMs, expiresAt: now + afterMs };
}
