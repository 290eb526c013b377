// A governed world on a real bus: nats-server from PATH (or a given URL), an authority that
// publishes the policy and heartbeats, and gateways with LevelDB audit logs in temp dirs.
// Used by the gateway tests, the benchmark and the simulator.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuditBackend } from "../audit/backend.ts";
import { backendLogSource } from "../audit/log-source.ts";
import { replay, type ReplayOptions, type ReplayReport } from "../audit/replay.ts";
import type { KeyPair } from "../crypto/keys.ts";
import { Gateway, type GatewayOptions } from "../gateway/gateway.ts";
import type { TaskOutcome } from "../gateway/outcome.ts";
import { startNatsServer, type NatsServerHandle } from "../infra/nats-launcher.ts";
import { DEFAULT_POLICY } from "../policy/default-policy.ts";
import { Authority } from "../runtime/authority.ts";
import { Runtime } from "../runtime/runtime.ts";
import { connect } from "@nats-io/transport-node";
import { ensureBus } from "../nats/setup.ts";
import type { Clock } from "../runtime/clock.ts";
import { namedKey } from "./world.ts";

export interface Harness {
  server: NatsServerHandle | undefined;
  url: string;
  authority: Authority;
  runtime: Runtime;
  gateways: Gateway[];
  outcomes: TaskOutcome[];
  warnings: string[];
  dir: string;
  startGateway(o?: Partial<GatewayOptions> & { id?: string; key?: KeyPair; audit?: string | AuditBackend }): Promise<Gateway>;
  close(): Promise<void>;
}

/** `restoreFeed`: the authority's (Authority.connect); its warnings land in `warnings` as "authority: …". */
export async function startHarness(o: { natsUrl?: string; gateways?: number; clock?: Clock; gateway?: Partial<GatewayOptions>; heartbeatMs?: number; restoreFeed?: boolean } = {}): Promise<Harness> {
  const server = o.natsUrl ? undefined : await startNatsServer();
  const url = o.natsUrl ?? server!.url;
  const dir = await mkdtemp(join(tmpdir(), "failclosed-harness-"));
  const warnings: string[] = [];
  if (o.gateway?.taskAckWaitMs !== undefined) {
    // The shared task consumer takes the ack wait of whoever makes it first (ensureBus never
    // changes it), and the authority below would make it with the default: make it now.
    const nc = await connect({ servers: url });
    try {
      await ensureBus(nc, { taskAckWaitMs: o.gateway.taskAckWaitMs });
    } finally {
      await nc.close();
    }
  }
  const authority = await Authority.connect({
    natsUrl: url,
    key: namedKey("authority"),
    ...(o.clock ? { clock: o.clock } : {}),
    ...(o.restoreFeed !== undefined ? { restoreFeed: o.restoreFeed } : {}),
    onWarning: (w) => warnings.push(`authority: ${w}`),
  });
  await authority.publishPolicy(DEFAULT_POLICY);
  await authority.startHeartbeats(o.heartbeatMs ?? 1_000);
  // The client takes only outcomes signed by a gateway key it knows: those startGateway hands out.
  const gatewayKeys = Array.from({ length: 8 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId);
  const runtime = await Runtime.connect({ natsUrl: url, ...(o.clock ? { clock: o.clock } : {}), outcomeTimeoutMs: 20_000, gatewayKeys });
  const outcomes: TaskOutcome[] = [];
  const gateways: Gateway[] = [];
  const peerKeys = Array.from({ length: 4 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId);
  const h: Harness = {
    server,
    url,
    authority,
    runtime,
    gateways,
    outcomes,
    warnings,
    dir,
    async startGateway(g = {}) {
      const n = gateways.length + 1;
      const id = g.id ?? `gw-${n}`;
      const gw = await Gateway.start({
        natsUrl: url,
        gatewayId: id,
        gatewayKey: g.key ?? namedKey(`gateway-${n}`),
        audit: g.audit ?? join(dir, id),
        authorities: [authority.keyId],
        peerGateways: peerKeys,
        evidenceDeadlineMs: 1_500,
        attributes: { name: "staging" },
        ...(o.clock ? { clock: o.clock } : {}),
        onOutcome: (x) => outcomes.push(x),
        onWarning: (w) => warnings.push(w),
        ...o.gateway,
        ...g,
      });
      gateways.push(gw);
      return gw;
    },
    async close() {
      for (const g of gateways) await g.stop().catch(() => undefined);
      await runtime.close().catch(() => undefined);
      await authority.close().catch(() => undefined);
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < (o.gateways ?? 1); i++) await h.startGateway();
  return h;
}


/** Replay a gateway's own log as an auditor would (trusting only the harness's keys). */
export async function replayGateway(g: Gateway, opts: ReplayOptions = {}): Promise<ReplayReport> {
  await g.ledger.store.checkpoint().catch(() => undefined);
  const peerKeys = Array.from({ length: 4 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId);
  return replay(backendLogSource(g.ledger.store.backend), { gatewayKeys: peerKeys, authorities: [namedKey("authority").keyId], origin: g.id }, opts);
}
