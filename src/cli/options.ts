// Parsing of the option values people type: lists, name=value pairs, durations and instants.
import { parseDuration, parseOffset } from "../sim/scenario-format.ts";
import type { NumericConstraint } from "../core/types.ts";
import { CliError } from "./io.ts";

export function list(value: string): string[] {
  const items = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new CliError("USAGE", `expected a comma-separated list, got "${value}"`);
  return items;
}

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function pairs(values: readonly string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const i = v.indexOf("=");
    if (i <= 0) throw new CliError("USAGE", `${what}: expected name=value, got "${v}"`);
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

/** --max amount=5000 --min amount=1 → {amount: {min: 1, max: 5000}} */
export function constraints(max: readonly string[] | undefined, min: readonly string[] | undefined): Record<string, NumericConstraint> {
  const out: Record<string, NumericConstraint> = {};
  const add = (entries: Record<string, string>, bound: "min" | "max"): void => {
    for (const [name, text] of Object.entries(entries)) {
      const n = Number(text);
      if (text.trim() === "" || !Number.isFinite(n)) throw new CliError("USAGE", `--${bound} ${name}=${text}: not a number`);
      out[name] = { ...out[name], [bound]: n };
    }
  };
  add(pairs(max, "--max"), "max");
  add(pairs(min, "--min"), "min");
  return out;
}

export function durationMs(text: string, option: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new CliError("USAGE", `${option}: expected a duration like 30s, 10m, 1h or 1h30m, got "${text}"`);
  return ms;
}

/** An ISO instant, or an offset from `now` like +10m / -1h. */
export function instant(text: string, now: number, option: string): number {
  const off = /^[+-]/.test(text) ? parseOffset(text) : undefined;
  if (off !== undefined) return now + off;
  const ms = Date.parse(text);
  if (!Number.isFinite(ms)) throw new CliError("USAGE", `${option}: expected an ISO instant or an offset like +10m, got "${text}"`);
  return ms;
}
