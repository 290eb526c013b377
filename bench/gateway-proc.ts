// A gateway in its own process (what a deployment runs), for the end-to-end benchmark.
// argv: natsUrl gatewayId auditDir
import { Gateway } from "../src/gateway/gateway.ts";
import { namedKey } from "../src/testkit/world.ts";

const [natsUrl, gatewayId, audit] = process.argv.slice(2);
if (!natsUrl || !gatewayId || !audit) {
  console.error("usage: gateway-proc natsUrl gatewayId auditDir");
  process.exit(2);
}
const n = Number(gatewayId.split("-")[1] ?? 1);
const gw = await Gateway.start({
  natsUrl,
  gatewayId,
  gatewayKey: namedKey(`gateway-${n}`),
  audit,
  authorities: [namedKey("authority").keyId],
  peerGateways: [1, 2, 3, 4].map((i) => namedKey(`gateway-${i}`).keyId),
  attributes: { name: "staging" },
  evidenceDeadlineMs: 5_000,
  maxInFlight: 512,
  ...(process.env["FC_VERIFY_WORKERS"] !== undefined ? { verifyWorkers: Number(process.env["FC_VERIFY_WORKERS"]) } : {}),
});
gw.registerAction("transfer", () => ({ ok: true }));
// FC_BENCH_PROBE=1: on stop, say how long the event loop was held up and what GC paused it
// (bench/latency-probe.ts reads this, to tell a latency tail of blocked CPU from one of waiting).
const probe = process.env["FC_BENCH_PROBE"] === "1" ? await startProbe() : undefined;
process.stdout.write("ready\n");
const stop = () => {
  probe?.();
  gw.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

async function startProbe(): Promise<() => void> {
  const { monitorEventLoopDelay, PerformanceObserver } = await import("node:perf_hooks");
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const gc: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gc.push(e.duration);
  });
  obs.observe({ entryTypes: ["gc"] });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    h.disable();
    obs.disconnect();
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    const sorted = [...gc].sort((a, b) => a - b);
    const cpu = process.cpuUsage(cpu0);
    process.stderr.write(
      `PROBE ${JSON.stringify({
        loopDelayMs: { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), p999: ms(h.percentile(99.9)), max: ms(h.max) },
        gc: { count: gc.length, totalMs: Math.round(gc.reduce((a, b) => a + b, 0)), p99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0, maxMs: sorted[sorted.length - 1] ?? 0 },
        cpuMs: Math.round((cpu.user + cpu.system) / 1000),
        wallMs: Math.round(performance.now() - t0),
      })}\n`,
    );
  };
}
