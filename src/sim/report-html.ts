// One self-contained HTML page for a RunReport: inline CSS, no external assets and no script.
// Expand/collapse uses <details>, so the page needs no JavaScript, and its Content-Security-Policy
// forbids scripts outright. Task ids, resources and check details come from agents and attackers:
// every string goes through esc() — never concatenate report data into markup unescaped.
import type { Check } from "../core/types.ts";
import {
  deniedText,
  replayVerdict,
  summarizeRun,
  type AuditSummary,
  type LineageEdge,
  type RunReport,
  type ScenarioReport,
  type TaskReport,
  type TimelineEvent,
} from "./report.ts";

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape for both text and double- or single-quoted attribute values. */
export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/** A safe fragment id: report names are data, so only a fixed alphabet reaches id/href. */
function anchor(prefix: string, name: string): string {
  return `${prefix}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

function offset(ms: number, start: number): string {
  const d = ms - start;
  const sign = d < 0 ? "−" : "+";
  const a = Math.abs(d);
  const h = Math.floor(a / 3_600_000);
  const m = Math.floor((a % 3_600_000) / 60_000);
  const s = Math.floor((a % 60_000) / 1000);
  const msPart = a % 1000;
  const pad = (n: number, w = 2): string => String(n).padStart(w, "0");
  return `${sign}${pad(h)}:${pad(m)}:${pad(s)}${msPart !== 0 ? `.${pad(msPart, 3)}` : ""}`;
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

function time(ms: number | undefined, start: number): string {
  return ms === undefined ? "—" : `<time datetime="${esc(iso(ms))}" title="${esc(iso(ms))}">${esc(offset(ms, start))}</time>`;
}

const CSS = `
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#57606a;--line:#d0d7de;--bg-bad:#ffebe9;--bg-ok:#dafbe1;--bg-warn:#fff8c5}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:1.5rem;color:#1f2328}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.25rem;margin:0}h3{font-size:1rem;margin:1.2rem 0 .4rem}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right}
.badge{display:inline-block;padding:0 .45rem;border-radius:1rem;font-weight:600;font-size:.85em;border:1px solid transparent}
.pass,.allow,.executed{color:var(--ok);background:var(--bg-ok)}.fail,.deny,.error{color:var(--bad);background:var(--bg-bad)}.none{color:var(--warn);background:var(--bg-warn)}
.meta{color:var(--muted)}.meta dt{font-weight:600;display:inline}.meta dd{display:inline;margin:0 1rem 0 .3rem}
section.scenario{border:1px solid var(--line);border-radius:8px;padding:1rem;margin:1.2rem 0}
section.scenario>header{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap}
.timeline{list-style:none;padding:0;margin:0;border-left:3px solid var(--line)}
.timeline>li{margin:0 0 .5rem 0;padding-left:.8rem;position:relative}
.timeline>li::before{content:"";position:absolute;left:-8px;top:.55rem;width:11px;height:11px;border-radius:50%;background:var(--line)}
.timeline>li.task-ok::before{background:var(--ok)}.timeline>li.task-unexpected::before{background:var(--bad)}
.timeline>li.event{color:var(--muted)}
details>summary{cursor:pointer}details.task>summary{list-style-position:outside}
.expect{margin-left:.5rem}.mismatch{color:var(--bad);font-weight:600}
tr.check-fail td{background:var(--bg-bad)}tr.check-fail td.code{color:var(--bad);font-weight:700}
.lineage ul{list-style:none;margin:0;padding-left:1.4rem;border-left:1px dashed var(--line)}.lineage>ul{border-left:none;padding-left:0}
.lineage li{margin:.2rem 0}.lineage li.broken>.node{text-decoration:line-through wavy var(--bad)}
.arrow{color:var(--muted)}.replay-ok{color:var(--ok);font-weight:600}.replay-bad{color:var(--bad);font-weight:600}
@media print{details{display:block}details>summary{display:block}}
`;

export function renderReportHtml(report: RunReport): string {
  const rows = summarizeRun(report);
  const allPass = rows.length > 0 && rows.every((r) => r.status === "pass");
  const r = report.run;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>failclosed simulation ${esc(r.id)} — ${allPass ? "PASS" : "FAIL"}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>failclosed simulation <span class="badge ${allPass ? "pass" : "fail"}">${allPass ? "PASS" : "FAIL"}</span></h1>
<dl class="meta">
<dt>run</dt><dd class="mono">${esc(r.id)}</dd>
<dt>started</dt><dd>${esc(r.startedAt)}</dd>
<dt>duration</dt><dd>${esc(r.durationMs)} ms</dd>
<dt>version</dt><dd>${esc(r.version)}</dd>
<dt>NATS</dt><dd class="mono">${esc(r.nats)}</dd>
<dt>gateways</dt><dd class="mono">${esc(r.gateways.join(", "))}</dd>
${r.host !== undefined ? `<dt>host</dt><dd>${esc(r.host)}</dd>` : ""}
</dl>
</header>
<main>
<h2 id="summary">Summary</h2>
<table class="summary">
<thead><tr><th>scenario</th><th>status</th><th>tasks</th><th>allowed</th><th>executed</th><th>denied (by code)</th><th>unexpected</th><th>replay</th></tr></thead>
<tbody>
${rows
  .map(
    (row) => `<tr data-scenario="${esc(row.scenario)}"><td><a href="#${anchor("s", row.scenario)}">${esc(row.scenario)}</a></td>` +
      `<td><span class="badge ${row.status}">${esc(row.status.toUpperCase())}</span></td>` +
      `<td class="num">${row.tasks}</td><td class="num">${row.allowed}</td><td class="num">${row.executed}</td>` +
      `<td class="mono">${esc(deniedText(row))}</td><td class="num${row.unexpected > 0 ? " mismatch" : ""}">${row.unexpected}</td>` +
      `<td>${esc(row.replay)}</td></tr>`,
  )
  .join("\n")}
</tbody>
</table>
${report.scenarios.map(renderScenario).join("\n")}
</main>
</body>
</html>
`;
}

function renderScenario(s: ScenarioReport): string {
  return `<section class="scenario" id="${anchor("s", s.name)}" data-scenario="${esc(s.name)}">
<header><h2>${esc(s.name)}</h2><span class="badge ${s.status}">${esc(s.status.toUpperCase())}</span>
${s.tags.map((t) => `<span class="badge none">${esc(t)}</span>`).join(" ")}
<span class="meta mono">${esc(s.file)} · ${esc(s.durationMs)} ms · t0 = ${esc(iso(s.start))}</span></header>
<p>${esc(s.description)}</p>
${s.error !== undefined ? `<p class="mismatch">Scenario error: ${esc(s.error)}</p>` : ""}
<h3>Timeline</h3>
${renderTimeline(s)}
<h3>Lineage</h3>
${renderLineage(s.lineage, s.tasks)}
${s.invariants.length > 0 ? `<h3>Invariants</h3><ul class="invariants">${s.invariants.map((i) => `<li class="${i.ok ? "pass" : "fail"}">${i.ok ? "✓" : "✗"} ${esc(i.name)}${i.detail !== undefined ? ` — ${esc(i.detail)}` : ""}</li>`).join("")}</ul>` : ""}
<h3>Audit log</h3>
${renderAudit(s.audit)}
</section>`;
}

type Lane = { step: number; at: number; order: number } & ({ task: TaskReport } | { event: TimelineEvent });

function renderTimeline(s: ScenarioReport): string {
  const items: Lane[] = [
    ...s.tasks.map((t, order) => ({ step: t.step, at: t.submittedAt, order, task: t })),
    ...s.events.map((e, order) => ({ step: e.step, at: e.at, order, event: e })),
  ];
  // Step order is the scenario's order; within a step (concurrent tasks) keep report order.
  items.sort((a, b) => a.step - b.step || a.at - b.at || a.order - b.order);
  if (items.length === 0) return `<p class="meta">No steps ran.</p>`;
  return `<ol class="timeline">\n${items.map((i) => ("task" in i ? renderTask(i.task, s.start) : renderEvent(i.event, s.start))).join("\n")}\n</ol>`;
}

function renderEvent(e: TimelineEvent, start: number): string {
  return `<li class="event" data-kind="${esc(e.kind)}">${time(e.at, start)} <strong>${esc(e.kind)}</strong> ${esc(e.summary)}</li>`;
}

function verdictBadge(t: TaskReport): string {
  const v = t.actual.verdict;
  const label = v === "allow" ? (t.actual.executed ? "EXECUTED" : "ALLOWED") : v === "deny" ? "DENIED" : "NO DECISION";
  const cls = v === "allow" ? (t.actual.executed ? "executed" : "allow") : v;
  return `<span class="badge ${cls}">${label}</span>`;
}

function renderTask(t: TaskReport, start: number): string {
  const codes = t.actual.codes.length > 0 ? ` <span class="codes mono">${esc(t.actual.codes.join(", "))}</span>` : "";
  const failed = t.checks.filter((c) => !c.ok).length;
  return `<li class="task ${t.ok ? "task-ok" : "task-unexpected"}" data-task-id="${esc(t.taskId)}">
<details class="task"${t.ok ? "" : " open"}>
<summary>${time(t.submittedAt, start)} <code class="task-id">${esc(t.taskId)}</code> · ${esc(t.agent)} → <code>${esc(t.action)}</code> on <code>${esc(t.resource)}</code> ${verdictBadge(t)}${codes}
<span class="expect${t.ok ? "" : " mismatch"}">expected ${esc(t.expected)}${t.ok ? " ✓" : " ✗ UNEXPECTED"}</span></summary>
<dl class="meta">
${t.parentTaskId !== undefined ? `<dt>parent</dt><dd><code>${esc(t.parentTaskId)}</code></dd>` : ""}
${t.uses !== undefined ? `<dt>uses</dt><dd><code>${esc(t.uses)}</code></dd>` : ""}
${t.gateway !== undefined ? `<dt>gateway</dt><dd><code>${esc(t.gateway)}</code></dd>` : ""}
${t.artifactId !== undefined ? `<dt>artifact</dt><dd><code>${esc(t.artifactId)}</code></dd>` : ""}
<dt>decided</dt><dd>${time(t.decidedAt, start)}</dd>
<dt>executed</dt><dd>${time(t.executedAt, start)}</dd>
${t.tamper.length > 0 ? `<dt>tamper</dt><dd class="mismatch">${esc(t.tamper.join("; "))}</dd>` : ""}
${t.note !== undefined ? `<dt>note</dt><dd>${esc(t.note)}</dd>` : ""}
</dl>
${t.checks.length === 0 ? `<p class="meta">No decision was observed for this task.</p>` : renderChecks(t.checks, failed)}
</details>
</li>`;
}

function renderChecks(checks: Check[], failed: number): string {
  return `<table class="checks"><caption class="meta">${checks.length} checks, ${failed} failed</caption>
<thead><tr><th>check</th><th>result</th><th>code</th><th>detail</th></tr></thead><tbody>
${checks
  .map(
    (c) =>
      `<tr class="${c.ok ? "check-ok" : "check-fail"}"><td><code>${esc(c.check)}</code></td><td>${c.ok ? "✓ ok" : "✗ failed"}</td>` +
      `<td class="code mono">${c.code !== undefined ? esc(c.code) : ""}</td><td class="detail">${c.detail !== undefined ? esc(c.detail) : ""}</td></tr>`,
  )
  .join("\n")}
</tbody></table>`;
}

function renderLineage(edges: LineageEdge[], tasks: TaskReport[]): string {
  if (edges.length === 0) return `<p class="meta">No spawned tasks: every task started its own lineage.</p>`;
  const byTask = new Map(tasks.map((t) => [t.taskId, t]));
  const children = new Map<string, LineageEdge[]>();
  const isChild = new Set<string>();
  for (const e of edges) {
    const list = children.get(e.parentTaskId) ?? [];
    list.push(e);
    children.set(e.parentTaskId, list);
    isChild.add(e.childTaskId);
  }
  const roots = [...new Set(edges.map((e) => e.parentTaskId))].filter((p) => !isChild.has(p));
  // A cycle has no root; start from its first parent so it still shows (and stops, below).
  if (roots.length === 0 && edges[0] !== undefined) roots.push(edges[0].parentTaskId);
  const seen = new Set<string>();
  const node = (taskId: string, edge: LineageEdge | undefined): string => {
    const t = byTask.get(taskId);
    const badge = t ? ` ${verdictBadge(t)}` : "";
    const label = `<span class="node"><code>${esc(taskId)}</code>${t ? ` <span class="meta">${esc(t.agent)}</span>` : ""}${badge}${edge && !edge.ok ? ' <span class="mismatch">broken link</span>' : ""}</span>`;
    if (seen.has(taskId)) return `<li class="cycle">${label} <span class="mismatch">(cycle)</span></li>`;
    seen.add(taskId);
    const kids = children.get(taskId) ?? [];
    const attrs = `data-task-id="${esc(taskId)}"${edge ? ` data-parent-id="${esc(edge.parentTaskId)}"` : ""}${edge && !edge.ok ? ' class="broken"' : ""}`;
    return `<li ${attrs}>${edge ? '<span class="arrow">↳ </span>' : ""}${label}${kids.length > 0 ? `<ul>${kids.map((k) => node(k.childTaskId, k)).join("")}</ul>` : ""}</li>`;
  };
  return `<div class="lineage"><ul>${roots.map((r) => node(r, undefined)).join("")}</ul></div>`;
}

function renderAudit(a: AuditSummary): string {
  const clean = a.replay.ok && a.replay.divergences.length === 0;
  return `<div class="audit">
<p>Records: <strong>${esc(a.records)}</strong> · Checkpoints verified: <strong>${esc(a.checkpoints)}</strong>${a.witnessed !== undefined ? ` (${esc(a.witnessed)} of them published on NATS and held as a witness would${a.proved !== undefined ? `; ${esc(a.proved)} consistency proofs from the live gateway verified` : ""})` : ""}${a.lastCheckpointRoot !== undefined ? ` · last root <code>${esc(a.lastCheckpointRoot)}</code>` : ""}</p>
<p class="replay ${clean ? "replay-ok" : "replay-bad"}">Replay: ${clean ? "clean" : "DIVERGED"} — ${esc(a.replay.decisions)} decisions re-derived, ${esc(a.replay.divergences.length)} divergences (${esc(replayVerdict(a))})</p>
${
  a.replay.divergences.length > 0
    ? `<table class="divergences"><thead><tr><th>seq</th><th>kind</th><th>detail</th></tr></thead><tbody>${a.replay.divergences
        .map((d) => `<tr class="check-fail"><td class="num">${esc(d.seq)}</td><td class="code mono">${esc(d.kind)}</td><td>${esc(d.detail)}</td></tr>`)
        .join("")}</tbody></table>`
    : ""
}
</div>`;
}
