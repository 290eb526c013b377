// An orchestrator that plans a report and hands the work down a chain of sub-agents:
// orchestrator → planner → researcher → writer. Each level is a governed task; while it
// executes, it delegates an attenuated artifact (fewer actions, narrower resources, a smaller
// token budget, a shorter validity window) to the next agent and spawns that agent's task
// through ctx.spawn, so the gateway signs the lineage linking the two. The writer runs at
// delegation depth 3.
import {
  generateKeyPair,
  newTaskId,
  type ActionContext,
  type ActionHandler,
  type ArtifactBindings,
  type ArtifactScope,
  type JsonValue,
  type KeyPair,
  type Runtime,
  type SignedArtifact,
} from "../src/index.ts";
import { ALLOW, freshNonce, judge, summarize, windowFromNow, type AgentEnv, type AgentReport, type TaskReport } from "./report.ts";

type Role = "orchestrator" | "planner" | "researcher" | "writer";

interface Level {
  role: Role;
  action: "plan" | "read" | "summarize";
  resource: string;
  /** What this level's artifact authorizes; each level's is within the one above it. */
  scope: ArtifactScope;
  /** The budget this level asks for; within its own constraint and every ancestor's. */
  tokens: number;
}

const PROJECT = "projects/q3-report";

// Every ancestor's scope must cover every descendant's request (the gateway checks the whole
// chain), so the root names all three actions and each level drops what it no longer needs.
const LEVELS: readonly Level[] = [
  {
    role: "orchestrator",
    action: "plan",
    resource: PROJECT,
    scope: { actions: ["plan", "read", "summarize"], resources: [PROJECT], constraints: { tokens: { min: 1, max: 8000 } } },
    tokens: 6000,
  },
  {
    role: "planner",
    action: "plan",
    resource: `${PROJECT}/outline`,
    scope: { actions: ["plan", "read", "summarize"], resources: [`${PROJECT}/`], constraints: { tokens: { min: 1, max: 4000 } } },
    tokens: 3000,
  },
  {
    role: "researcher",
    action: "read",
    resource: `${PROJECT}/sources`,
    scope: { actions: ["read", "summarize"], resources: [`${PROJECT}/sources`, `${PROJECT}/draft`], constraints: { tokens: { min: 1, max: 2000 } } },
    tokens: 1500,
  },
  {
    role: "writer",
    action: "summarize",
    resource: `${PROJECT}/draft`,
    scope: { actions: ["summarize"], resources: [`${PROJECT}/draft`], constraints: { tokens: { min: 1, max: 1000 } } },
    tokens: 800,
  },
];

/** Each level's window ends this much before its parent's: delegation also shortens time. */
const VALIDITY_STEP_MS = 60_000;

/** The material the researcher reads: a stand-in for a document store. */
const SOURCES: Readonly<Record<string, string>> = {
  "revenue.md": "Q3 revenue grew 12% quarter on quarter, led by the EU region.",
  "churn.md": "Churn fell to 2.1% after the onboarding redesign shipped in July.",
  "hiring.md": "Engineering headcount rose by 9; two senior roles remain open.",
};

export interface Orchestrator {
  readonly team: Readonly<Record<Role, KeyPair>>;
  /** Handlers for the actions the team uses; the demo registers them on its gateway. */
  readonly handlers: Readonly<Record<"plan" | "read" | "summarize", ActionHandler>>;
  run(env: AgentEnv): Promise<AgentReport>;
}

export function createOrchestrator(rt: Runtime, o: { gatewayId: string }): Orchestrator {
  const team: Record<Role, KeyPair> = {
    orchestrator: generateKeyPair(),
    planner: generateKeyPair(),
    researcher: generateKeyPair(),
    writer: generateKeyPair(),
  };
  const bindings: ArtifactBindings = { gateways: [o.gatewayId] };
  const reports: TaskReport[] = [];

  const work: Record<Level["action"], (ctx: ActionContext) => JsonValue> = {
    plan: (ctx) => ({ outline: ["revenue", "churn", "hiring"].map((topic) => `${ctx.resource}: ${topic}`) }),
    read: () => ({ notes: Object.entries(SOURCES).map(([name, text]) => `${name}: ${text}`) }),
    summarize: (ctx) => {
      const notes = readNotes(ctx.args);
      const draft = notes.map((n) => n.split(": ").slice(1).join(": ").split(/[,;]/)[0] ?? "").join(" ");
      return { draft, words: draft.split(/\s+/).filter(Boolean).length };
    },
  };

  /** Do this level's work, then hand the next level its narrowed artifact and task. */
  const handler =
    (action: Level["action"]): ActionHandler =>
    async (ctx) => {
      const leaf = ctx.chain[ctx.chain.length - 1];
      if (!leaf) throw new Error("task has no artifact");
      const depth = leaf.payload.depth;
      const result = work[action](ctx);
      const here = LEVELS[depth];
      const next = LEVELS[depth + 1];
      // Only the team member at its own level hands work down; anyone else just gets the work.
      if (!here || !next || ctx.agent !== team[here.role].keyId) return { role: here?.role ?? "unknown", depth, result };
      const child = rt.child({
        parent: leaf,
        parentTaskId: ctx.taskId,
        holderKey: team[here.role],
        childAgent: team[next.role],
        delegation: {
          scope: next.scope,
          bindings,
          validity: narrowerWindow(leaf),
          nonce: freshNonce(),
          attribution: { initiator: leaf.payload.attribution.initiator, onBehalfOf: here.role, reason: `${here.role} hands ${next.action} to the ${next.role}` },
          metadata: { role: next.role, project: PROJECT },
        },
        action: next.action,
        resource: next.resource,
        args: childArgs(next, result),
        // The child's task id is in this task's namespace (childTaskId(ctx.taskId, role)): the
        // gateway signs a spawn lineage for no other. One child per level, so the role is unique.
        label: next.role,
      });
      const outcome = await ctx.spawn(child);
      reports.push(
        judge({ agent: next.role, label: `${next.role} runs ${next.action} at depth ${depth + 1}`, action: next.action, resource: next.resource, depth: child.artifact.payload.depth, expected: ALLOW }, outcome),
      );
      // A parent whose sub-task did not run has not done its job: fail, so it shows upstream.
      if (outcome.status !== "succeeded") throw new Error(`${next.role} task ${outcome.taskId} ${outcome.status}: ${outcome.codes.join(",")}`);
      return { role: here.role, depth, result, child: { taskId: outcome.taskId, result: outcome.result ?? null } };
    };

  return {
    team,
    handlers: { plan: handler("plan"), read: handler("read"), summarize: handler("summarize") },
    async run(env) {
      reports.length = 0;
      const root = LEVELS[0];
      if (!root) throw new Error("no levels");
      const taskId = newTaskId();
      const { artifact } = await env.authority.grant({
        taskId,
        holder: team.orchestrator.keyId,
        scope: root.scope,
        bindings,
        validity: windowFromNow(60_000, 10 * 60_000),
        nonce: freshNonce(),
        attribution: { initiator: "alice@example.com", reason: "write the Q3 report" },
        metadata: { role: "orchestrator", project: PROJECT },
      });
      const { outcome } = rt.spawn({ agent: team.orchestrator, action: root.action, resource: root.resource, args: { goal: "Q3 report", tokens: root.tokens }, chain: [artifact], taskId });
      const o = await outcome;
      // The root's report first, then its descendants in the order they finished (deepest first).
      const all = [judge({ agent: "orchestrator", label: "orchestrator plans the report (root)", action: root.action, resource: root.resource, depth: 0, expected: ALLOW }, o), ...reports.reverse()];
      for (const t of all) env.log(`orchestrator: ${t.agent} ${t.taskId} depth ${t.depth} ${t.actual.verdict}/${t.actual.status}`);
      return summarize("orchestrator", all, []);
    },
  };
}

function narrowerWindow(parent: SignedArtifact): { notBefore: number; expiresAt: number } {
  const v = parent.payload.validity;
  return { notBefore: v.notBefore, expiresAt: Math.max(v.notBefore + 1, v.expiresAt - VALIDITY_STEP_MS) };
}

/** The next level works on what this one produced, under its own, smaller budget. */
function childArgs(next: Level, result: JsonValue): JsonValue {
  switch (next.action) {
    case "plan":
      return { goal: "outline the Q3 report", tokens: next.tokens };
    case "read":
      return { topics: isRecord(result) && Array.isArray(result["outline"]) ? result["outline"] : [], tokens: next.tokens };
    case "summarize":
      return { notes: isRecord(result) && Array.isArray(result["notes"]) ? result["notes"] : [], tokens: next.tokens };
  }
}

function readNotes(args: JsonValue): string[] {
  if (!isRecord(args) || !Array.isArray(args["notes"])) return [];
  return args["notes"].filter((n): n is string => typeof n === "string");
}

function isRecord(v: JsonValue): v is { [key: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
