// Holding a decision's clock and limits to what the log itself signs (DESIGN §3, §5).
//
// `decide` judges validity windows on the clock reading the decision records (`input.now`), with
// the skew and ages its `limits` allow: both are the gateway's word. Replay recomputes decide on
// them, so on their own they prove nothing: an operator could backdate `now` into an expired
// artifact's window, or stretch `maxSkewMs`, and the decision would re-derive perfectly. What
// the log does sign is time: every record carries the store's reading of the same clock
// (`time`), and checkpoints sign theirs and go out on NATS, where witnesses keep them. So:
//
// - CLOCK_MISMATCH: an allow whose `now` is further from its own record's `time` than one
//   gateway's two readings of one clock can be. The gateway reads `now` right before it queues
//   the decision (gateway.ts #decideAndRecord), and the store stamps the record when it builds
//   the batch that writes it (store.ts #build): the gap is the wait for the batches before it.
//   An allow whose commit takes longer than the gateway's step timeout (GatewayOptions
//   stepTimeoutMs, 10 s unless configured) is denied before it runs, so an allow that ran was
//   stamped within that of its `now`; the pinned skew, when larger, is slack the auditor has
//   accepted anyway. The bound is never the recorded `maxSkewMs`: that is the gateway's word.
// - CLOCK_BACKWARDS: an allow of what had passed by a time a checkpoint earlier in the log
//   already signed (in the log, or held by a witness), with the slack decide gives it: an
//   artifact's expiry (beyond the recorded skew), the request's own deadline (`notAfter`: no
//   skew, as decide gives none) or its age limit (`createdAt` + the recorded maxRequestAgeMs,
//   the limit decide judged it by; a stretched one is LIMITS_LOOSER's to find) — each beyond
//   that bound and CLOCK_STEP_TOLERANCE_MS. The clock was turned back to let it through, which
//   is how a backdated `now` with a matching `time` looks. Only what a turned-back clock can buy
//   is a finding: a clock that ran fast and was set right (NTP) also makes later times run
//   backwards, and what it allows after is held to the fast checkpoints' times. Within the
//   tolerance nothing honest is reported; a step beyond it cannot be told from a clock turned
//   back, and requests live seconds or minutes (a 30 s deadline, a 5-minute age limit by
//   default) where artifacts live hours: a clock set right by more than about a minute reports
//   the allows of the minutes after (the fault-clock-skew scenario lets time catch up after its
//   ten-minute step). Not caught: a turn-back within the slack, and one made before any
//   checkpoint signed the later time. How far times ran backwards is reported beside the
//   divergences (ReplayReport.clockRegression). Denies are not held to any of this: a wrong
//   clock only ever denies them more, or changes nothing.
// - LIMITS_LOOSER: an allow decided under looser limits than the trust roots pin. A gateway's
//   limits are fixed for its lifetime (gateway.ts: read once in its constructor) but may change
//   at a restart, and the log records no restart, so a change between decisions is not a finding
//   by itself: only the auditor, who knows the gateway's configuration, can pin them.
import type { JsonValue } from "../canonical/jcs.ts";
import type { DecisionLimits } from "../core/types.ts";

/** The gateway's default step timeout (GatewayOptions.stepTimeoutMs): the longest an allow's commit may take. */
export const DEFAULT_COMMIT_TIMEOUT_MS = 10_000;

/**
 * How far a gateway's clock may have run fast before it was set right (NTP) without CLOCK_BACKWARDS:
 * the checkpoint it signed meanwhile is that far ahead of true time, and an artifact allowed just
 * before its expiry, or a request just before its deadline, after the correction is honest (found
 * by review: a clock 20 s fast, then set right, flagged an honest allow). A clock turned back by
 * less than this is not caught.
 */
export const CLOCK_STEP_TOLERANCE_MS = 60_000;

export type ClockProblem = { readonly kind: "CLOCK_MISMATCH" | "CLOCK_BACKWARDS" | "LIMITS_LOOSER"; readonly detail: string };

const isObj = (v: unknown): v is Record<string, JsonValue> => typeof v === "object" && v !== null && !Array.isArray(v);

const LIMIT_NAMES = ["maxSkewMs", "maxDepth", "maxFeedAgeMs", "maxRequestAgeMs"] as const satisfies readonly (keyof DecisionLimits)[];

const num = (v: JsonValue | undefined): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** The request's signed times in a decision input (attacker bytes: anything else is skipped). */
function requestTimes(input: Record<string, JsonValue>): { createdAt: number | undefined; notAfter: number | undefined } {
  const r = input["request"];
  const p = isObj(r) ? r["payload"] : undefined;
  return isObj(p) ? { createdAt: num(p["createdAt"]), notAfter: num(p["notAfter"]) } : { createdAt: undefined, notAfter: undefined };
}

/** The artifacts' expiry times in a decision input's chain (attacker bytes: anything else is skipped). */
function expiries(input: Record<string, JsonValue>): number[] {
  const chain = input["chain"];
  if (!Array.isArray(chain)) return [];
  const out: number[] = [];
  for (const a of chain) {
    const p = isObj(a) ? a["payload"] : undefined;
    const v = isObj(p) ? p["validity"] : undefined;
    if (isObj(v) && typeof v["expiresAt"] === "number") out.push(v["expiresAt"]);
  }
  return out;
}

/** How far the log's times ran backwards, at most: where, and by how many ms past the bound's slack. */
export interface ClockRegression {
  readonly seq: number;
  readonly ms: number;
}

export class ClockAudit {
  /** How far apart one gateway's readings may be and still be honest (see above). */
  readonly boundMs: number;
  readonly #limits: Partial<DecisionLimits> | undefined;
  /** The latest time signed so far by a trusted checkpoint, and where. */
  #signed: { time: number; seq: number } | undefined;
  #regression: ClockRegression | undefined;

  constructor(o: { limits?: Partial<DecisionLimits>; commitTimeoutMs?: number }) {
    const commit = o.commitTimeoutMs ?? DEFAULT_COMMIT_TIMEOUT_MS;
    if (!Number.isSafeInteger(commit) || commit < 0) throw new RangeError(`commitTimeoutMs must be a whole number of ms ≥ 0, got ${String(o.commitTimeoutMs)}`);
    for (const k of LIMIT_NAMES) {
      const v = o.limits?.[k];
      if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) throw new RangeError(`limits.${k} must be a number ≥ 0, got ${String(v)}`);
    }
    this.#limits = o.limits;
    this.boundMs = Math.max(commit, o.limits?.maxSkewMs ?? 0);
  }

  /** A trusted checkpoint signed `time` for the records before `seq`: it is past for every later one. */
  signed(time: number, seq: number): void {
    if (this.#signed === undefined || time > this.#signed.time) this.#signed = { time, seq };
  }

  /** The largest step backwards seen (beyond the bound), if any. */
  get regression(): ClockRegression | undefined {
    return this.#regression;
  }

  /** A time read at `seq` (a checkpoint's, a decision's): noted if well before a time already signed. */
  observe(seq: number, time: number): void {
    const s = this.#signed;
    if (s === undefined) return;
    const back = s.time - time;
    if (back > this.boundMs && (this.#regression === undefined || back > this.#regression.ms)) this.#regression = { seq, ms: back };
  }

  /** Findings for an allow at `seq` recorded at `time` with this input. */
  allow(seq: number, time: number, input: JsonValue): ClockProblem[] {
    if (!isObj(input)) return [];
    const out: ClockProblem[] = [];
    const now = input["now"];
    this.observe(seq, time);
    if (typeof now === "number") {
      this.observe(seq, now);
      if (Math.abs(time - now) > this.boundMs) {
        out.push({ kind: "CLOCK_MISMATCH", detail: `decided at clock ${now}, recorded at ${time}: ${Math.abs(time - now)} ms apart, beyond the ${this.boundMs} ms one gateway's readings allow` });
      }
    }
    const recorded = input["limits"];
    const s = this.#signed;
    if (s !== undefined) {
      // The earliest an honest gateway's clock can have read at this allow, after signing s.time:
      // one gateway's clock noise (the bound) and a fast clock set right (the step tolerance) back.
      const earliest = s.time - this.boundMs - CLOCK_STEP_TOLERANCE_MS;
      /** What the request was past. */
      const late: string[] = [];
      const { createdAt, notAfter } = requestTimes(input);
      // decide: past its deadline when now > notAfter, with no skew allowance (decide.ts
      // validityProblem). Policy: so none here either; the recorded skew, the gateway's word,
      // must not widen it.
      if (notAfter !== undefined && earliest > notAfter) late.push(`its deadline ${notAfter}`);
      // decide: too old when now − createdAt > maxRequestAgeMs. Policy: the recorded limit, the one
      // decide judged it by, so an honest gateway is never flagged; a limit stretched beyond the
      // pinned one is LIMITS_LOOSER below, not a clock that went back.
      const maxAge = isObj(recorded) ? num(recorded["maxRequestAgeMs"]) : undefined;
      if (createdAt !== undefined && maxAge !== undefined && earliest - createdAt > maxAge) late.push(`its age limit (created at ${createdAt}, ${maxAge} ms)`);
      // decide: expired when now − skew ≥ expiresAt, with the recorded skew.
      const skew = (isObj(recorded) ? num(recorded["maxSkewMs"]) : undefined) ?? 0;
      const expired = expiries(input).filter((e) => earliest - skew >= e);
      const what = [...(late.length > 0 ? [`a request past ${late.join(" and ")}`] : []), ...(expired.length > 0 ? [`on an artifact that expired at ${Math.min(...expired)}`] : [])];
      if (what.length > 0) {
        out.push({ kind: "CLOCK_BACKWARDS", detail: `allowed ${what.join(", ")}, before the time the checkpoint at ${s.seq} signed (${s.time}); decided at clock ${typeof now === "number" ? now : "(none)"}` });
      }
    }
    const pinned = this.#limits;
    if (pinned !== undefined && isObj(recorded)) {
      for (const k of LIMIT_NAMES) {
        const want = pinned[k];
        const got = recorded[k];
        if (want !== undefined && typeof got === "number" && got > want) out.push({ kind: "LIMITS_LOOSER", detail: `limits.${k} ${got} is looser than the pinned ${want}` });
      }
    }
    return out;
  }
}
