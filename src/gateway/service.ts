// The long-running gateway process behind `failclosed gateway` (and the compose service): one
// Gateway on the bus with its LevelDB audit log, action handlers from a module, graceful stop.
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { generateKeyPair, type KeyPair } from "../crypto/keys.ts";
import { keyFileOf, readKeyFile } from "../cli/keys.ts";
import { writeOutFile } from "../cli/io.ts";
import { systemClock } from "../runtime/clock.ts";
import { describeFailure } from "../infra/error-causes.ts";
import { Gateway, type ActionHandler } from "./gateway.ts";

export interface GatewayServiceOptions {
  nats: string;
  dataDir: string;
  gatewayId: string;
  /** Gateway key file; absent: `<dataDir>/gateway-key.json`, created on first start. */
  keyFile?: string;
  /** Trusted authority keyIds; absent: $FAILCLOSED_AUTHORITIES (comma-separated). */
  authorities?: string[];
  /** A module exporting `actions: Record<string, ActionHandler>`. */
  actionsModule?: string;
  /** GatewayOptions.snapshotEveryEntries; default 1,000,000 (0: only at shutdown). */
  snapshotEveryEntries?: number;
  /** GatewayOptions.proofRequestsPerSec; default 100 (0: none). */
  proofRequestsPerSec?: number;
  signal: AbortSignal;
  log: (line: string) => void;
  json: boolean;
}

/** Without a module, the gateway runs only side-effect-free actions that echo their request. */
const BUILTIN_ACTIONS: Record<string, ActionHandler> = Object.fromEntries(
  ["read", "plan", "summarize"].map((name) => [name, ({ action, resource, args }) => ({ action, resource, args })] as [string, ActionHandler]),
);

function loadKey(o: GatewayServiceOptions): KeyPair {
  const path = o.keyFile ?? join(o.dataDir, "gateway-key.json");
  if (existsSync(path)) return readKeyFile(path);
  if (o.keyFile !== undefined) throw new Error(`key file ${path} not found`);
  const key = generateKeyPair();
  writeOutFile(path, JSON.stringify(keyFileOf(key, systemClock()), null, 2), { secret: true });
  return key;
}

export async function runGatewayService(o: GatewayServiceOptions): Promise<void> {
  const say = (msg: string, extra: Record<string, unknown> = {}) => o.log(o.json ? JSON.stringify({ msg, gateway: o.gatewayId, ...extra }) : `[${o.gatewayId}] ${msg}`);
  const authorities = o.authorities ?? (process.env["FAILCLOSED_AUTHORITIES"] ?? "").split(",").filter((s) => s !== "");
  if (authorities.length === 0) throw new Error("no trusted authority: pass --authority KEYID or set FAILCLOSED_AUTHORITIES");
  await mkdir(o.dataDir, { recursive: true });
  const key = loadKey(o);
  let actions = BUILTIN_ACTIONS;
  if (o.actionsModule !== undefined) {
    const mod = (await import(pathToFileURL(resolve(o.actionsModule)).href)) as { actions?: Record<string, ActionHandler> };
    if (!mod.actions) throw new Error(`${o.actionsModule} does not export actions`);
    actions = mod.actions;
    // Before the gateway starts: a handler that is not a function would be refused by
    // registerAction only once the gateway is up and taking work.
    const notHandlers = Object.entries(actions).filter(([, h]) => typeof h !== "function").map(([name]) => name);
    if (notHandlers.length > 0) throw new Error(`${o.actionsModule}: actions ${notHandlers.join(", ")} are not functions`);
  }
  const gw = await Gateway.start({
    natsUrl: o.nats,
    gatewayId: o.gatewayId,
    gatewayKey: key,
    audit: join(o.dataDir, "audit"),
    authorities,
    // The command line's --authority list (or $FAILCLOSED_AUTHORITIES) is the whole trust.
    retireUnconfiguredAuthorities: true,
    checkpointIntervalMs: 10_000,
    snapshotEveryEntries: o.snapshotEveryEntries ?? 1_000_000,
    ...(o.proofRequestsPerSec !== undefined ? { proofRequestsPerSec: o.proofRequestsPerSec } : {}),
    // The gateway names itself in its warnings; said once, not twice.
    onWarning: (w) => say(w.startsWith(`[${o.gatewayId}] `) ? w.slice(o.gatewayId.length + 3) : w, { level: "warn" }),
    onOutcome: (x) => say(`${x.taskId} ${x.verdict}${x.codes.length ? ` ${x.codes.join(",")}` : ""} ${x.status}`, { task: x.taskId, verdict: x.verdict, codes: x.codes, status: x.status }),
  });
  try {
    for (const [name, h] of Object.entries(actions)) gw.registerAction(name, h);
  } catch (e) {
    await gw.stop();
    throw e;
  }
  const opened = gw.ledger.store.openedFrom;
  say(`audit log: ${opened.snapshotSize + opened.recordsFolded} records, ${opened.recordsFolded} folded on open${opened.snapshotSize > 0 ? ` after the snapshot at ${opened.snapshotSize}` : ""}`, { ...opened });
  say(`started on ${o.nats}: key ${key.keyId}, audit log ${join(o.dataDir, "audit")}, actions ${Object.keys(actions).join(",")}`);
  await new Promise<void>((r) => (o.signal.aborted ? r() : o.signal.addEventListener("abort", () => r(), { once: true })));
  say("stopping: no new tasks; pending tasks are denied");
  await gw.stop();
  // A log that failed while it ran (or while it stopped) is not a clean stop: exit 2 (I/O error),
  // so a supervisor or an operator reading the exit code sees it (the warning said so when it happened).
  if (gw.auditFailure !== undefined) throw new GatewayAuditFailedError(`stopped; the audit log stopped taking records (${describeFailure(gw.auditFailure)}): every task after that was denied, and outcomes after it are not known to be recorded`, { cause: gw.auditFailure });
  say("stopped; audit log flushed");
}

/** The gateway stopped, but its audit log had failed while it ran (exit 2 from the CLI). */
export class GatewayAuditFailedError extends Error {
  override readonly name = "GatewayAuditFailedError";
  readonly code = "AUDIT_WRITE_FAILED" as const;
}
