// Where a latency tail comes from: one gateway process at a fixed offered rate, the submit →
// decision latencies by percentile and over time (the slowest task in each 250 ms bucket, to
// show whether slow tasks bunch up, e.g. at a checkpoint or snapshot), and from the gateway
// itself how long its event loop was held up and what garbage collection paused it.
// Not part of `npm run bench`: a diagnostic.
//   npx tsx bench/latency-probe.ts [ratePerSec=350] [seconds=10]
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNatsServer } from "../src/infra/nats-launcher.ts";
import { DEFAULT_POLICY } from "../src/policy/default-policy.ts";
import { Authority } from "../src/runtime/authority.ts";
import { namedKey } from "../src/testkit/world.ts";
import { drive, prepare, startGatewayProc } from "./e2e.ts";
import { fmt, percentile } from "./util.ts";

const rate = Number(process.argv[2] ?? 350); // 0: all at once (peak)
const secs = Number(process.argv[3] ?? 10);
process.env["FC_BENCH_PROBE"] = "1";
const server = await startNatsServer();
const dir = await mkdtemp(join(tmpdir(), "failclosed-probe-"));
const authority = await Authority.connect({ natsUrl: server.url, key: namedKey("authority") });
await authority.publishPolicy(DEFAULT_POLICY);
await authority.startHeartbeats(1_000);
const gw = await startGatewayProc(server.url, "gw-1", dir);
try {
  // Warm up (JIT, LevelDB, the consumer) at the same rate.
  await drive(server.url, await prepare(server.url, Math.min(2000, Math.max(rate, 300) * 3), "warm"), rate > 0 ? rate : undefined);
  const c0 = cpuMsOf(gw.pid!);
  const tasks = await prepare(server.url, (rate > 0 ? rate : 300) * secs, "probe");
  const c1 = cpuMsOf(gw.pid!);
  const t1 = threadCpu(gw.pid!);
  const r = await drive(server.url, tasks, rate > 0 ? rate : undefined);
  const c2 = cpuMsOf(gw.pid!);
  const t2 = threadCpu(gw.pid!);
  const byName = new Map<string, { user: number; sys: number; n: number }>();
  for (const [tid, b] of t2) {
    const a = t1.get(tid) ?? { name: b.name, user: 0, sys: 0 };
    const key = `${b.name}#${tid === String(gw.pid) ? "main" : tid}`;
    const e = byName.get(key) ?? { user: 0, sys: 0, n: 0 };
    e.user += b.user - a.user;
    e.sys += b.sys - a.sys;
    e.n++;
    byName.set(key, e);
  }
  console.log(`gateway threads over the run (user/sys ms per task): ${[...byName].filter(([, e]) => e.user + e.sys > 0).map(([n, e]) => `${n}×${e.n} ${fmt(e.user / tasks.length, 2)}/${fmt(e.sys / tasks.length, 2)}`).join("; ")}`);
  console.log(`gateway CPU per task: ${fmt((c1 - c0) / tasks.length, 2)} ms taking in its evidence (while prepared), ${fmt((c2 - c1) / tasks.length, 2)} ms deciding and running it`);
  const l = r.latencies;
  console.log(`offered ${fmt(rate)}/s for ${secs} s: ${fmt(r.perSec)}/s decided, ${r.denied} denied`);
  console.log(`latency ms: p50 ${fmt(percentile(l, 50), 1)} p90 ${fmt(percentile(l, 90), 1)} p99 ${fmt(percentile(l, 99), 1)} p99.9 ${fmt(percentile(l, 99.9), 1)} max ${fmt(Math.max(...l), 1)}`);
  // In submit order (latencies are pushed in decision order, close enough for bunching).
  const per = Math.max(1, Math.round(rate / 4));
  const buckets: string[] = [];
  for (let i = 0; i < l.length; i += per) buckets.push(fmt(Math.max(...l.slice(i, i + per)), 0));
  console.log(`slowest per 250 ms: ${buckets.join(" ")}`);
} finally {
  const exited = new Promise((res) => gw.once("exit", res));
  gw.kill("SIGTERM");
  await exited;
  await authority.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}

/** utime + stime of a process, ms (all its threads). */
function cpuMsOf(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").slice(readFileSync(`/proc/${pid}/stat`, "utf8").lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** Per thread: name, user and system CPU ms. */
function threadCpu(pid: number): Map<string, { name: string; user: number; sys: number }> {
  const out = new Map<string, { name: string; user: number; sys: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      out.set(tid, { name, user: Number(f[11]) * 10, sys: Number(f[12]) * 10 });
    } catch {
      // the thread ended
    }
  }
  return out;
}
