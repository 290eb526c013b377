// Draws a state machine as a Mermaid `stateDiagram-v2` by walking its state nodes and
// transition definitions, so the picture in docs/ is derived from the code that runs and a
// stale picture can be detected (test/gateway/task-machine.test.ts regenerates and compares).
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from "xstate";
import { taskMachine } from "./task-machine.ts";

const DONE_ACTOR = "xstate.done.actor.";
const ERROR_ACTOR = "xstate.error.actor.";
const AFTER = "xstate.after.";

/** Mermaid ids may not contain dots; state node ids are dotted paths (`task.collecting`). */
function mermaidId(node: AnyStateNode): string {
  return node.path.length === 0 ? "root" : node.path.join("__");
}

/** Human names for XState's internal event types. */
function eventLabel(eventType: string): string {
  if (eventType.startsWith(DONE_ACTOR)) return `${eventType.slice(DONE_ACTOR.length)} done`;
  if (eventType.startsWith(ERROR_ACTOR)) return `${eventType.slice(ERROR_ACTOR.length)} error`;
  if (eventType.startsWith(AFTER)) {
    // xstate.after.<delay>.<source state id>: the delay name is what a reader needs.
    const delay = eventType.slice(AFTER.length).split(".")[0] ?? "";
    return `after ${delay}`;
  }
  if (eventType === "") return "always";
  return eventType;
}

function nameOf(x: unknown): string | undefined {
  if (typeof x === "string") return x;
  // Builtin action creators (assign, raise, …) are functions carrying `type: "xstate.*"`.
  if ((typeof x === "object" || typeof x === "function") && x !== null && "type" in x && typeof x.type === "string") {
    return x.type;
  }
  if (typeof x === "function" && x.name !== "") return x.name;
  return undefined;
}

/** `not(g)`, `and([...])`, `or([...])` are functions carrying their operands in `guards`. */
function guardLabel(guard: unknown): string {
  if (typeof guard === "function" && "guards" in guard && Array.isArray(guard.guards)) {
    const parts = (guard.guards as unknown[]).map(guardLabel);
    if (guard.name === "not") return `not ${parts.join(" ")}`;
    return parts.join(` ${guard.name} `);
  }
  return nameOf(guard) ?? "guarded";
}

/** Named guards and named (non-builtin) actions make the diagram read like the spec. */
function transitionLabel(t: AnyTransitionDefinition, candidates: number): string {
  let label = eventLabel(String(t.eventType));
  const guard = t.guard === undefined ? undefined : guardLabel(t.guard);
  if (guard !== undefined) label += ` if ${guard}`;
  else if (candidates > 1) label += " else";
  const actions = t.actions
    .map(nameOf)
    .filter((a): a is string => a !== undefined && !a.startsWith("xstate."));
  if (actions.length > 0) label += ` / ${actions.join(", ")}`;
  // `:` separates the label in Mermaid; `;` ends a statement.
  return label.replaceAll(/[:;]/g, " ");
}

function renderNode(node: AnyStateNode, indent: string, lines: string[]): void {
  const children = Object.values(node.states);
  if (children.length > 0) {
    const initial = node.initial.target[0];
    if (initial !== undefined) lines.push(`${indent}[*] --> ${mermaidId(initial)}`);
    for (const child of children) {
      if (Object.keys(child.states).length > 0) {
        lines.push(`${indent}state ${mermaidId(child)} {`);
        renderNode(child, `${indent}  `, lines);
        lines.push(`${indent}}`);
      }
    }
    for (const child of children) renderEdges(child, indent, lines);
  }
}

function renderEdges(node: AnyStateNode, indent: string, lines: string[]): void {
  const id = mermaidId(node);
  for (const inv of node.invoke) {
    const src = typeof inv.src === "string" ? inv.src : inv.id;
    lines.push(`${indent}${id} : invoke ${src}`);
  }
  if (node.tags.length > 0) lines.push(`${indent}${id} : tags ${node.tags.join(", ")}`);
  const groups: AnyTransitionDefinition[][] = [...node.transitions.values()];
  if (node.always) groups.push(node.always);
  for (const group of groups) {
    for (const t of group) {
      const targets = t.target ?? [node];
      for (const target of targets) {
        lines.push(`${indent}${id} --> ${mermaidId(target)} : ${transitionLabel(t, group.length)}`);
      }
    }
  }
  if (node.type === "final") lines.push(`${indent}${id} --> [*]`);
}

export function machineToMermaid(machine: AnyStateMachine): string {
  const lines = ["stateDiagram-v2"];
  renderNode(machine.root, "  ", lines);
  return `${lines.join("\n")}\n`;
}

function describeStates(machine: AnyStateMachine): string {
  const rows = ["| state | tags | invokes | final | description |", "|---|---|---|---|---|"];
  const walk = (node: AnyStateNode): void => {
    for (const child of Object.values(node.states)) {
      const invokes = child.invoke.map((i) => (typeof i.src === "string" ? i.src : i.id)).join(", ");
      const final = child.type === "final" ? "yes" : "";
      rows.push(
        `| \`${child.path.join(".")}\` | ${child.tags.join(", ")} | ${invokes} | ${final} | ${child.description ?? ""} |`,
      );
      walk(child);
    }
  };
  walk(machine.root);
  return rows.join("\n");
}

/** The full docs/task-machine.md, generated; `npx tsx scripts/machine-diagram.ts` writes it. */
export function taskMachineDoc(): string {
  return [
    "# The task machine",
    "",
    "<!-- Generated from src/gateway/task-machine.ts by `npx tsx scripts/machine-diagram.ts`. Do not edit:",
    "     test/gateway/task-machine.test.ts fails when this file is stale. -->",
    "",
    "DESIGN §4: a task reaches `executing` only through `verifying` (an allow decision) and",
    "`committing` (the allow durably written); every other path ends in `denied`.",
    "Events not drawn from a state are ignored there.",
    "",
    "```mermaid",
    machineToMermaid(taskMachine).trimEnd(),
    "```",
    "",
    describeStates(taskMachine),
    "",
  ].join("\n");
}
