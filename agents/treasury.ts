// A treasury agent that moves money. Two limits stand between it and a large transfer: the
// numeric constraint in its artifact (what this grant allows) and the Cedar policy (what the
// organisation allows at all: at most 10000 per transfer). Either one alone denies.
import { generateKeyPair, newTaskId, type ActionHandler, type ArtifactScope, type JsonValue, type KeyPair } from "../src/index.ts";
import { ALLOW, deny, freshNonce, judge, sideCheck, summarize, windowFromNow, type AgentEnv, type AgentReport, type Expectation, type TaskReport } from "./report.ts";

/** Balances in minor units. Only the transfer handler moves money, and only after an allow. */
export class TreasuryLedger {
  readonly #balances = new Map<string, number>();
  readonly transfers: { taskId: string; from: string; to: string; amount: number }[] = [];

  constructor(opening: Record<string, number>) {
    for (const [account, amount] of Object.entries(opening)) this.#balances.set(account, amount);
  }

  balance(account: string): number {
    return this.#balances.get(account) ?? 0;
  }

  transfer(taskId: string, from: string, to: string, amount: number): void {
    // Policy: the gateway has already checked the amount; the ledger still refuses an
    // overdraft, because authorization is not the same as having the money.
    if (!Number.isSafeInteger(amount) || amount <= 0) throw new RangeError(`transfer: bad amount ${amount}`);
    if (this.balance(from) < amount) throw new RangeError(`transfer: ${from} has ${this.balance(from)}, needs ${amount}`);
    this.#balances.set(from, this.balance(from) - amount);
    this.#balances.set(to, this.balance(to) + amount);
    this.transfers.push({ taskId, from, to, amount });
  }
}

/** The `transfer` action: args {from, to, amount}. */
export function transferHandler(ledger: TreasuryLedger): ActionHandler {
  return ({ taskId, args }) => {
    const a = args as { from?: JsonValue; to?: JsonValue; amount?: JsonValue } | null;
    if (typeof a?.from !== "string" || typeof a.to !== "string" || typeof a.amount !== "number") throw new TypeError("transfer: args must be {from, to, amount}");
    ledger.transfer(taskId, a.from, a.to, a.amount);
    return { from: a.from, to: a.to, amount: a.amount, balance: ledger.balance(a.from) };
  };
}

export const TREASURY_ACCOUNT = "treasury";
const VENDOR = "vendor-acme";

/** The everyday grant: transfers of 1 to 5000 out of payments/. */
const EVERYDAY: ArtifactScope = { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { min: 1, max: 5000 } } };
/** A board-approved grant with a looser limit than Cedar's: Cedar must still stop a big one. */
const BOARD_APPROVED: ArtifactScope = { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { min: 1, max: 50_000 } } };

export function createTreasuryAgent(): { key: KeyPair; run(env: AgentEnv, ledger: TreasuryLedger): Promise<AgentReport> } {
  const key = generateKeyPair();
  return {
    key,
    async run(env, ledger) {
      const before = ledger.balance(TREASURY_ACCOUNT);
      const attempts: { label: string; scope: ArtifactScope; amount: number; expected: Expectation }[] = [
        { label: "pays an invoice within its grant", scope: EVERYDAY, amount: 1200, expected: ALLOW },
        { label: "pays above its artifact's amount constraint", scope: EVERYDAY, amount: 7500, expected: deny("POLICY_MISMATCH") },
        { label: "within a board-approved grant but above Cedar's 10000 limit", scope: BOARD_APPROVED, amount: 25_000, expected: deny("POLICY_MISMATCH") },
      ];
      const tasks: TaskReport[] = [];
      for (const a of attempts) {
        // One artifact per transfer: its nonce is single-use.
        const taskId = newTaskId();
        const { artifact } = await env.authority.grant({
          taskId,
          holder: key.keyId,
          scope: a.scope,
          validity: windowFromNow(60_000, 10 * 60_000),
          nonce: freshNonce(),
          attribution: { initiator: "cfo@example.com", onBehalfOf: "finance", reason: `invoice payment: ${a.label}` },
        });
        const resource = "payments/transfer";
        const o = await env.rt.spawn({ agent: key, action: "transfer", resource, args: { from: TREASURY_ACCOUNT, to: VENDOR, amount: a.amount }, chain: [artifact], taskId }).outcome;
        const t = judge({ agent: "treasury", label: `${a.label} (amount ${a.amount})`, action: "transfer", resource, depth: 0, expected: a.expected }, o);
        env.log(`treasury: ${t.label}: ${t.actual.verdict} ${t.actual.codes.join(",")}`);
        tasks.push(t);
      }
      // Only the allowed transfer moved money.
      const checks = [sideCheck("treasury", "treasury balance fell by exactly the allowed transfer", String(before - 1200), String(ledger.balance(TREASURY_ACCOUNT)))];
      return summarize("treasury", tasks, checks);
    },
  };
}
