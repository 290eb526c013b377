// The witness's watermark only ever covers what was proved: a run with --no-consistency that
// adds a checkpoint below it (here one of another history, signed with the gateway's key) drops
// the watermark below it, so the next run with proofs proves it, and catches it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MemoryBackend } from "../../src/audit/backend.ts";
import { runAudit, type AuditIo } from "../../src/audit/cli.ts";
import type { CheckpointPayload } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { readWitnessFile, WITNESS_FILE_KIND } from "../../src/audit/witness.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload, type Signed } from "../../src/crypto/signing.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { serveConsistencyProofs } from "../../src/nats/proof-service.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { outcomeEntry, steppingClock } from "./support.ts";

const GW_KEY = namedKey("gateway-1");
let h: Harness;
let dir: string;
beforeAll(async () => {
  h = await startHarness({ gateways: 0 });
  await ensureBus(h.runtime.nc);
  dir = mkdtempSync(join(tmpdir(), "rv2-wit-"));
}, 60_000);
afterAll(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

function io(): AuditIo & { stdout: () => string } {
  let out = "";
  return { out: (s) => void (out += s), err: () => undefined, isTTY: false, setExitCode: () => undefined, stdout: () => out };
}

it("a checkpoint added below the watermark by a --no-consistency run is proved by the next run", { timeout: 60_000 }, async () => {
  const origin = "gw-nc";
  const store = await AuditStore.open(new MemoryBackend(), { origin, gatewayKey: GW_KEY, clock: steppingClock(), checkpointEvery: 0 });
  const cps: Signed<CheckpointPayload>[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 4; i++) await store.append(outcomeEntry(round * 10 + i));
    cps.push((await store.checkpoint())!);
  }
  // The witness already proved c0 and c2; the middle size was never seen.
  const file = join(dir, "w.json");
  writeFileSync(file, JSON.stringify({ kind: WITNESS_FILE_KIND, origin, consistentThrough: cps[2]!.payload.size, checkpoints: [cps[0], cps[2]] }));
  // Whoever holds the gateway key publishes a checkpoint of another history at the middle size.
  const forged = signPayload("checkpoint", { ...cps[1]!.payload, root: toB64u(new Uint8Array(32).fill(7)) }, GW_KEY);
  await jetstream(h.runtime.nc).publish(SUBJECTS.checkpoint(origin), JSON.stringify(forged));
  // The honest log answers proof requests, signed with its gateway key.
  const sub = serveConsistencyProofs(h.runtime.nc, origin, store, { perSec: 100, now: () => performance.now(), gatewayKey: GW_KEY });
  const args = (f: string) => ["witness", "--nats", h.url, "--gateway-id", origin, "--gateway-key", GW_KEY.keyId, "--out", f, "--json", "--timeout-ms", "5000"];
  const base = args(file);

  // Control: a run with proofs catches it right away.
  const control = join(dir, "control.json");
  writeFileSync(control, readFileSync(file));
  const c = io();
  const cc = await runAudit(args(control), c);
  expect(cc, c.stdout()).toBe(1);
  expect(c.stdout()).toMatch(/INCONSISTENT/);

  // One run without proofs, then runs with proofs.
  const a = io();
  expect(await runAudit([...base, "--no-consistency"], a)).toBe(0);
  const after = readWitnessFile(JSON.parse(readFileSync(file, "utf8")));
  if ("problem" in after) throw new Error(after.problem);
  const b = io();
  const code = await runAudit(base, b);
  const report = JSON.parse(b.stdout()) as { consistentThrough: number; findings: unknown[]; proofsVerified: number };
  sub.unsubscribe();
  // The forged middle checkpoint is held, under the watermark, and never proved or reported.
  expect(after.held.length).toBe(3);
  expect(after.consistentThrough, "watermark after --no-consistency covers an unproved checkpoint").toBeLessThan(forged.payload.size);
  expect(code, `next run with proofs: ${JSON.stringify(report)}`).toBe(1);
  expect(report.findings).toHaveLength(1);
});
