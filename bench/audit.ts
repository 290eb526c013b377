// Audit store benchmarks (issue "Audit event store"):
//  1. synced group-commit appends/s vs raw LevelDB synced batches of the same size, same run
//     (one put per record), and vs raw LevelDB writing exactly the batches the store wrote;
//  2. replay decisions/s with decision recomputation on worker threads;
//  3. replay when every decision follows a revocation (each at its own trust version): the
//     rate against section 2's, which a cost per trust version that grows with the revocations
//     in force (a snapshot per version, as before the twelfth session) turns quadratic;
//  4. inclusion and consistency proof time at 1M records.
// Figures are medians over rounds. Run alone: npx tsx bench/audit.ts
// (FC_BENCH_SKIP_APPEND / FC_BENCH_SKIP_REPLAY / FC_BENCH_SKIP_INTERLEAVED / FC_BENCH_SKIP_PROOFS=1
// skip a section.)
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { join } from "node:path";
import { Level } from "level";
import { LevelBackend, MemoryBackend } from "../src/audit/backend.ts";
import { backendLogSource } from "../src/audit/log-source.ts";
import { verifyConsistency, verifyInclusion } from "../src/audit/merkle.ts";
import type { AuditEntry } from "../src/audit/records.ts";
import { replay } from "../src/audit/replay.ts";
import { clearSignatureMemo } from "../src/core/decide.ts";
import { AuditStore } from "../src/audit/store.ts";
import { canonicalBytes } from "../src/canonical/jcs.ts";
import { fromB64u } from "../src/crypto/base64url.ts";
import { keyPairFromSeed } from "../src/crypto/keys.ts";
import { makeArtifact, runTask, scenarioTrustRoots, writeScenario, writeTrustSetup } from "../test/audit/scenario.ts";
import { revoke } from "../src/core/artifacts.ts";
import { seededKey } from "../test/audit/support.ts";
import { median, rawVerifyPerSec } from "./util.ts";

const gatewayKey = keyPairFromSeed(new Uint8Array(32).fill(7));
const options = (over: object = {}) => ({ origin: "gw-bench", gatewayKey, clock: () => Date.now(), checkpointEvery: 1000, ...over });
const entry = (i: number): AuditEntry => ({ type: "outcome", taskId: `task-${i}`, status: "succeeded", resultDigest: "q".repeat(43) });

function tmp(): { dir: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "fc-bench-audit-"));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** One synced batch as the store wrote it: its keys and value sizes, in order. */
type BatchShape = { key: string; bytes: number }[];

/**
 * Appends/s with `inflight` concurrent appenders. Also returns the mean batch size formed (in
 * records), one record's byte size, and the shape of every batch the store wrote.
 */
async function groupCommitRound(total: number, inflight: number): Promise<{ rate: number; batch: number; bytes: number; shapes: BatchShape[] }> {
  const t = tmp();
  const backend = await LevelBackend.open(join(t.dir, "db"));
  const shapes: BatchShape[] = [];
  const counting = {
    ...backend,
    kind: backend.kind,
    batch: (ops: Parameters<typeof backend.batch>[0], o: { sync: boolean }) => {
      shapes.push(ops.map((op) => ({ key: op.key, bytes: op.type === "put" ? op.value.length : 0 })));
      return backend.batch(ops, o);
    },
  } as typeof backend;
  for (const k of ["get", "getSync", "getMany", "iterate", "close"] as const) (counting as unknown as Record<string, unknown>)[k] = (backend[k] as (...a: unknown[]) => unknown).bind(backend);
  const store = await AuditStore.open(counting, options());
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < total) await store.append(entry(next++));
    }),
  );
  const secs = (performance.now() - start) / 1000;
  const bytes = (await store.getRecordBytes(5))!.length;
  await store.close();
  t.done();
  return { rate: total / secs, batch: total / shapes.length, bytes, shapes };
}

async function openRaw(): Promise<{ db: Level<string, Uint8Array>; done: () => Promise<void> }> {
  const t = tmp();
  const db = new Level<string, Uint8Array>(join(t.dir, "db"), { keyEncoding: "utf8", valueEncoding: "view" });
  await db.open();
  return {
    db,
    done: async () => {
      await db.close();
      t.done();
    },
  };
}

/** Raw LevelDB: synced batches of `batch` puts of `bytes`-sized values (one put per record). */
async function rawRound(total: number, batch: number, bytes: number): Promise<number> {
  const { db, done } = await openRaw();
  const value = new Uint8Array(bytes).fill(97);
  const start = performance.now();
  for (let i = 0; i < total; ) {
    const ops = [];
    for (let j = 0; j < batch && i < total; j++, i++) ops.push({ type: "put" as const, key: `r/${i.toString(16).padStart(14, "0")}`, value });
    await db.batch(ops, { sync: true });
  }
  const rate = total / ((performance.now() - start) / 1000);
  await done();
  return rate;
}

/**
 * Raw LevelDB writing exactly the batches the store wrote (same keys, same value sizes, same
 * number of synced batches): the floor for the bundled layout. Returns records/s, counting
 * the `total` records those batches carried.
 */
async function rawSameOpsRound(total: number, shapes: readonly BatchShape[]): Promise<number> {
  const { db, done } = await openRaw();
  const largest = Math.max(...shapes.flat().map((o) => o.bytes));
  const value = new Uint8Array(largest).fill(97);
  const start = performance.now();
  for (const shape of shapes) {
    const ops = [];
    for (const o of shape) ops.push({ type: "put" as const, key: o.key, value: value.subarray(0, o.bytes) });
    await db.batch(ops, { sync: true });
  }
  const rate = total / ((performance.now() - start) / 1000);
  await done();
  return rate;
}

export async function runAuditBench(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const print = (k: string, v: number, unit: string): void => {
    out[k] = v;
    console.log(`audit ${k}: ${v.toFixed(unit === "ms" ? 4 : unit === "x" ? 2 : 1)} ${unit}`);
  };

  // 1. Group commit vs raw batches, interleaved rounds in the same run. Two baselines:
  //    raw     — one synced put per record, batches of the record count the store formed
  //              (the figure: what a one-key-per-record log would cost at best);
  //    sameOps — the very batches the store wrote (puts, keys, value bytes): the floor for
  //              the bundled layout, so the ratio to it is the store's own CPU overhead.
  for (const inflight of process.env["FC_BENCH_SKIP_APPEND"] === "1" ? [] : [64, 1024]) {
    const total = 20_000;
    const gc: number[] = [];
    const raw: number[] = [];
    const sameOps: number[] = [];
    const sizes: number[] = [];
    const puts: number[] = [];
    const bytesPerRecord: number[] = [];
    for (let round = 0; round < 5; round++) {
      const g = await groupCommitRound(total, inflight);
      gc.push(g.rate);
      sizes.push(g.batch);
      puts.push(g.shapes.reduce((a, b) => a + b.length, 0) / g.shapes.length);
      bytesPerRecord.push(g.shapes.flat().reduce((a, o) => a + o.bytes, 0) / total);
      raw.push(await rawRound(total, Math.max(1, Math.round(g.batch)), g.bytes));
      sameOps.push(await rawSameOpsRound(total, g.shapes));
    }
    print(`append_synced_per_s_inflight${inflight}`, median(gc), "appends/s");
    print(`store_records_per_batch_inflight${inflight}`, median(sizes), "records");
    print(`store_puts_per_batch_inflight${inflight}`, median(puts), "puts");
    print(`store_written_bytes_per_record_inflight${inflight}`, median(bytesPerRecord), "bytes");
    print(`raw_level_synced_per_s_batch${Math.round(median(sizes))}`, median(raw), "puts/s");
    print(`append_vs_raw_ratio_inflight${inflight}`, median(gc) / median(raw), "x");
    print(`raw_level_same_ops_records_per_s_inflight${inflight}`, median(sameOps), "records/s");
    print(`append_vs_raw_same_ops_ratio_inflight${inflight}`, median(gc) / median(sameOps), "x");
  }

  // 2. Replay decisions/s (signature verification + Cedar on worker threads). Cold: the
  // signature memo is cleared before every round (an auditor replays a log once, in a fresh
  // process), and pool workers start fresh each round. Reported against the signature-bound
  // ceiling measured in the same run: each decision re-verifies 3 signatures (request,
  // artifact, origin lineage), so one core cannot re-derive more than raw/3 per second.
  if (process.env["FC_BENCH_SKIP_REPLAY"] !== "1") {
    const t = tmp();
    const tasks = Number(process.env["FC_BENCH_REPLAY_TASKS"] ?? 6000);
    // The store's clock is the scenario's (writeScenario decides at 1_700_000_000_000): replay
    // holds each decision's clock reading to its record's time (CLOCK_MISMATCH).
    const store = await AuditStore.open(join(t.dir, "db"), options({ checkpointEvery: 500, origin: "gw-test", clock: () => 1_700_000_000_000 }));
    await writeScenario(store, tasks);
    await store.close();
    const backend = await LevelBackend.open(join(t.dir, "db"));
    const cores = Math.max(1, availableParallelism());
    const raw = rawVerifyPerSec();
    const rates = new Map<number, number[]>();
    let structural: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (const workers of [0, 1, cores]) {
        clearSignatureMemo();
        const s = performance.now();
        const rep = await replay(backendLogSource(backend), scenarioTrustRoots(), workers > 0 ? { workers } : {});
        if (!rep.ok) throw new Error(`bench log does not replay: ${JSON.stringify(rep.divergences[0])}`);
        rates.set(workers, [...(rates.get(workers) ?? []), rep.decisionsRederived / ((performance.now() - s) / 1000)]);
      }
      const s = performance.now();
      const rep = await replay(backendLogSource(backend), scenarioTrustRoots(), { rederive: false });
      structural = [...structural, rep.recordsChecked / ((performance.now() - s) / 1000)];
    }
    print("replay_log_decisions", tasks, "decisions");
    print("raw_verify_per_s", raw, "verifies/s");
    print("replay_signature_ceiling_per_core", raw / 3, "decisions/s");
    print("replay_decisions_per_s_inline", median(rates.get(0)!), "decisions/s");
    print("replay_inline_ratio_to_one_core_ceiling", median(rates.get(0)!) / (raw / 3), "x");
    print("replay_decisions_per_s_workers1", median(rates.get(1)!), "decisions/s");
    print(`replay_decisions_per_s_workers${cores}`, median(rates.get(cores)!), "decisions/s");
    print(`replay_workers${cores}_ratio_to_${cores}_core_ceiling`, median(rates.get(cores)!) / ((cores * raw) / 3), "x");
    print("replay_structure_only_records_per_s", median(structural), "records/s");
    await backend.close();
    t.done();
  }

  // 3. Replay with revocations and decisions interleaved: a revocation of an unrelated artifact
  // before every task, so no two decisions share a trust version. Written to an in-memory
  // backend (what is measured is replay, not the disk). Rate against section 2's log.
  if (process.env["FC_BENCH_SKIP_INTERLEAVED"] !== "1") {
    const pairs = Number(process.env["FC_BENCH_INTERLEAVED_PAIRS"] ?? 20_000);
    const now = 1_700_000_000_000;
    const store = await AuditStore.open(new MemoryBackend(), options({ checkpointEvery: 500, origin: "gw-test", gatewayKey: seededKey(7), clock: () => now }));
    await writeTrustSetup(store);
    const authority = seededKey(9);
    const w0 = performance.now();
    for (let i = 0; i < pairs; i++) {
      await store.append({ type: "revocation", revocation: revoke(authority, { type: "artifact", id: `unrelated-${i}` }, "bench", now) });
      // One clock reading for every decision, as the store's: replay holds them together (CLOCK_MISMATCH).
      await runTask(store, `task-${i}`, makeArtifact(i, now), now);
    }
    await store.checkpoint();
    const writeS = (performance.now() - w0) / 1000;
    const cores = Math.max(1, availableParallelism());
    const raw = rawVerifyPerSec();
    const rates = new Map<number, number[]>();
    for (let round = 0; round < 3; round++) {
      for (const workers of [0, cores]) {
        clearSignatureMemo();
        const s = performance.now();
        const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots(), workers > 0 ? { workers } : {});
        if (!rep.ok) throw new Error(`interleaved bench log does not replay: ${JSON.stringify(rep.divergences[0])}`);
        rates.set(workers, [...(rates.get(workers) ?? []), rep.decisionsRederived / ((performance.now() - s) / 1000)]);
      }
    }
    print("interleaved_pairs", pairs, "revocations, each followed by a decision");
    print("interleaved_write_s", writeS, "s");
    print("raw_verify_per_s", raw, "verifies/s");
    print("interleaved_replay_decisions_per_s_inline", median(rates.get(0)!), "decisions/s");
    print("interleaved_replay_inline_ratio_to_one_core_ceiling", median(rates.get(0)!) / (raw / 3), "x");
    print(`interleaved_replay_decisions_per_s_workers${cores}`, median(rates.get(cores)!), "decisions/s");
    print(`interleaved_replay_workers${cores}_ratio_to_${cores}_core_ceiling`, median(rates.get(cores)!) / ((cores * raw) / 3), "x");
    await store.close();
  }

  // 4. Proofs at 1M records, generated from the stored tree in LevelDB.
  if (process.env["FC_BENCH_SKIP_PROOFS"] !== "1") {
    const t = tmp();
    const store = await AuditStore.open(join(t.dir, "db"), options({ checkpointEvery: 10_000, maxBatch: 16_384 }));
    const N = 1_000_000;
    let next = 0;
    const s = performance.now();
    await Promise.all(
      Array.from({ length: 8192 }, async () => {
        while (store.size + 0 < N && next < N) {
          next++;
          await store.append(entry(next));
        }
      }),
    );
    print("build_1m_seconds", (performance.now() - s) / 1000, "s");
    const size = store.size;
    const root = store.rootAt(size);
    const inc: number[] = [];
    const cons: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const seq = Math.floor((i * 7919 * 104729) % size);
      let a = performance.now();
      const p = store.proveInclusion(seq, size);
      inc.push(performance.now() - a);
      if (i % 100 === 0 && !verifyInclusion(seq, size, fromB64u(p.leafHash, 32)!, p.proof.map((x) => fromB64u(x, 32)!), root).ok) throw new Error("bad inclusion proof");
      const m = 1 + ((i * 104729) % (size - 1));
      a = performance.now();
      const c = store.proveConsistency(m, size);
      cons.push(performance.now() - a);
      if (i % 100 === 0 && !verifyConsistency(m, size, c.proof.map((x) => fromB64u(x, 32)!), store.rootAt(m), root).ok) throw new Error("bad consistency proof");
    }
    print("records", size, "records");
    print("inclusion_proof_ms_at_1m", median(inc), "ms");
    print("consistency_proof_ms_at_1m", median(cons), "ms");
    void canonicalBytes;
    await store.close();

    // 4. Restart: opening that log folds every record from genesis; after a fold snapshot it
    // folds only what follows it (here: nothing, and then 10,000 records). Every task of this
    // log is still in the fold (a million tasks, none forgotten): the largest snapshot a log of
    // this size makes.
    const reopen = async (): Promise<{ secs: number; store: AuditStore }> => {
      const a = performance.now();
      const st = await AuditStore.open(join(t.dir, "db"), options({ checkpointEvery: 10_000, maxBatch: 16_384 }));
      return { secs: (performance.now() - a) / 1000, store: st };
    };
    const genesis = await reopen();
    print("open_from_genesis_seconds_at_1m", genesis.secs, "s");
    let a = performance.now();
    const snap = await genesis.store.writeSnapshot();
    print("snapshot_write_seconds_at_1m", (performance.now() - a) / 1000, "s");
    print("snapshot_megabytes_at_1m", snap.bytes / 1e6, "MB");
    await genesis.store.close();
    const fromSnap = await reopen();
    print("open_from_snapshot_seconds_at_1m", fromSnap.secs, "s");
    a = performance.now();
    await Promise.all(Array.from({ length: 1000 }, async (_, i) => { for (let j = 0; j < 10; j++) await fromSnap.store.append(entry(N + i * 10 + j)); }));
    await fromSnap.store.close();
    const after = await reopen();
    print("open_from_snapshot_plus_10k_records_seconds", after.secs, "s");
    print("open_speedup_from_snapshot_at_1m", genesis.secs / fromSnap.secs, "x");

    // 5. A snapshot taken while appends go on (32 appenders, each waiting for its last append):
    // the gateway's thread pauses only to capture the state, and group commits continue while
    // it is encoded and written, so appends see a longer tail rather than a stop.
    const st = after.store;
    const lat: [number, number][] = [];
    let stop = false;
    let k = 0;
    const appenders = Array.from({ length: 32 }, async () => {
      while (!stop) {
        const t0 = performance.now();
        await st.append(entry(2 * N + k++));
        lat.push([t0, performance.now() - t0]);
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    const quiet = lat.map(([, d]) => d);
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const s0 = performance.now();
    await st.writeSnapshot();
    const s1 = performance.now();
    loop.disable();
    await new Promise((r) => setTimeout(r, 100));
    stop = true;
    await Promise.all(appenders);
    const during = lat.filter(([t0]) => t0 >= s0 && t0 < s1).map(([, d]) => d);
    const pct = (xs: number[], p: number): number => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
    print("snapshot_under_load_seconds_at_1m", (s1 - s0) / 1000, "s");
    print("snapshot_under_load_appends_committed_meanwhile", during.length, "appends");
    print("append_p99_ms_before_snapshot", pct(quiet, 0.99), "ms");
    print("append_p99_ms_during_snapshot", pct(during, 0.99), "ms");
    print("append_max_ms_during_snapshot", pct(during, 1), "ms");
    print("event_loop_max_delay_ms_during_snapshot", loop.max / 1e6, "ms");
    await after.store.close();
    t.done();
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runAuditBench();
}
