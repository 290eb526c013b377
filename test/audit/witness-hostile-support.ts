// Shared by the hostile-witness suites: a real nats-server with the failclosed streams, gateway
// logs in LevelDB (AuditStore, as a gateway writes them) whose checkpoints are published on the
// gateway's subject, the gateway's own proof service over them, and `audit witness` / `audit
// replay` run as an auditor runs them. Nothing here is mocked: the attacker is another client on
// the same bus.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import type { CheckpointPayload } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { readWitnessFile } from "../../src/audit/witness.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import type { Signed } from "../../src/crypto/signing.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { serveConsistencyProofs } from "../../src/nats/proof-service.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { captureIo, evidenceEntry, steppingClock } from "./support.ts";
import type { WitnessReport } from "./witness-support.ts";

export const GW_KEY = namedKey("hostile-gateway");
export const ROGUE = namedKey("hostile-rogue");
export const AUTHORITY = namedKey("authority");

export interface Bus {
  readonly url: string;
  /** The server's monitoring endpoint (http://…), where connections' message counts show. */
  readonly monitor: string;
  readonly server: NatsServerHandle;
  /** The attacker's (and the test's) own connection. */
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  close(): Promise<void>;
}

export async function startBus(): Promise<Bus> {
  // Monitoring on a random port: the ports file the launcher reads names it too.
  const server = await startNatsServer({ config: "http_port: -1\n" });
  const portsDir = join(dirname(server.storeDir), "ports");
  const ports = readdirSync(portsDir).map((f) => JSON.parse(readFileSync(join(portsDir, f), "utf8")) as { monitoring?: string[] });
  const monitor = ports.flatMap((p) => p.monitoring ?? [])[0];
  if (monitor === undefined) throw new Error("nats-server wrote no monitoring port");
  const nc = await connect({ servers: server.url });
  await ensureBus(nc);
  return {
    url: server.url,
    monitor,
    server,
    nc,
    js: jetstream(nc),
    close: async () => {
      await nc.close().catch(() => undefined);
      await server.stop();
    },
  };
}

/** A gateway's log on disk (LevelDB), its checkpoints, and the gateway's proof service over it. */
export class GatewayLog {
  readonly checkpoints: Signed<CheckpointPayload>[] = [];
  #proofs: Subscription | undefined;
  private constructor(
    readonly origin: string,
    readonly dir: string,
    readonly store: AuditStore,
  ) {}

  static async open(origin: string, dir: string, key: KeyPair = GW_KEY): Promise<GatewayLog> {
    const store = await AuditStore.open(await LevelBackend.open(dir), { origin, gatewayKey: key, clock: steppingClock(), checkpointEvery: 0 });
    return new GatewayLog(origin, dir, store);
  }

  /** Append `n` evidence records (named by `tag`) and checkpoint them; returns the checkpoint. */
  async grow(n: number, tag: string): Promise<Signed<CheckpointPayload>> {
    for (let i = 0; i < n; i++) await this.store.append(evidenceEntry(`${tag}-${i}`));
    const cp = await this.store.checkpoint();
    if (cp === undefined) throw new Error("no checkpoint");
    this.checkpoints.push(cp);
    return cp;
  }

  /** Answer proof requests as the gateway does (signed with its key). */
  serveProofs(nc: NatsConnection, key: KeyPair = GW_KEY): void {
    this.#proofs = serveConsistencyProofs(nc, this.origin, this.store, { perSec: 10_000, now: () => performance.now(), gatewayKey: key });
  }

  stopProofs(): void {
    this.#proofs?.unsubscribe();
    this.#proofs = undefined;
  }

  async close(): Promise<void> {
    this.stopProofs();
    await this.store.close();
  }
}

/** Publish bytes on a gateway's checkpoint subject (JetStream, as the gateway and anyone may). */
export async function publishCheckpoint(bus: Bus, gatewayId: string, body: string | Uint8Array): Promise<void> {
  await bus.js.publish(SUBJECTS.checkpoint(gatewayId), body);
}

export interface WitnessRun {
  readonly code: number;
  readonly report: WitnessReport & { read?: number };
  readonly stdout: string;
  readonly stderr: string;
}

/** `audit witness --json --out file` for `gatewayId`, trusting GW_KEY (and `more`). */
export async function witnessRun(bus: Bus, gatewayId: string, file: string, ...more: string[]): Promise<WitnessRun> {
  const io = captureIo();
  const code = await runAudit(["witness", "--nats", bus.url, "--gateway-id", gatewayId, "--gateway-key", GW_KEY.keyId, "--out", file, "--json", "--timeout-ms", "4000", ...more], io);
  let report: WitnessRun["report"];
  try {
    report = JSON.parse(io.stdout().trim().split("\n").at(-1) ?? "") as WitnessRun["report"];
  } catch {
    report = { ok: false, held: -1, largestSize: -1, consistency: "unparsed", consistentThrough: -1, proofsVerified: -1, unproven: -1, findings: [] };
  }
  return { code, report, stdout: io.stdout(), stderr: io.stderr() };
}

/** `audit replay --checkpoints file` of the log in `dir` (the store must be closed). */
export async function replayRun(dir: string, file: string): Promise<{ code: number; kinds: string[]; stdout: string; stderr: string }> {
  const io = captureIo();
  const code = await runAudit(["replay", "--db", dir, "--gateway-key", GW_KEY.keyId, "--authority", AUTHORITY.keyId, "--checkpoints", file, "--workers", "0", "--json"], io);
  let kinds: string[] = [];
  try {
    kinds = (JSON.parse(io.stdout()) as { divergences: { kind: string }[] }).divergences.map((d) => d.kind);
  } catch {
    kinds = ["<no report>"];
  }
  return { code, kinds, stdout: io.stdout(), stderr: io.stderr() };
}

/** The witness file's checkpoints and watermark (throws when it is not one). */
export function readWitness(file: string): { checkpoints: Signed<CheckpointPayload>[]; consistentThrough: number; origin?: string } {
  const w = readWitnessFile(JSON.parse(readFileSync(file, "utf8")));
  if ("problem" in w) throw new Error(w.problem);
  return { checkpoints: w.held as Signed<CheckpointPayload>[], consistentThrough: w.consistentThrough, ...(w.origin !== undefined ? { origin: w.origin } : {}) };
}

/** Temp files left beside a witness file (a rewrite must never leave one). */
export const tempLeftovers = (dir: string): string[] => readdirSync(dir).filter((f) => f.includes(".tmp-"));

export const sizesOf = (cps: readonly Signed<CheckpointPayload>[]): number[] => cps.map((c) => c.payload.size);

export const logDir = (root: string, name: string): string => join(root, name);

/** Messages the server delivered to each closed connection of this name, oldest first (from /connz). */
export async function deliveredTo(bus: Bus, name: string): Promise<number[]> {
  const r = await fetch(`${bus.monitor}/connz?state=closed&limit=1024&sort=cid`);
  const z = (await r.json()) as { connections?: { cid: number; name?: string; out_msgs: number }[] };
  return (z.connections ?? []).filter((c) => c.name === name).sort((a, b) => a.cid - b.cid).map((c) => c.out_msgs);
}
