// Child process for the crash test: appends under concurrent load and prints one line per
// acknowledged (durable) append: "<seq> <leafHash>", and one per fold snapshot written:
// "snapshot <size>". The parent kill -9s it at random.
import { AuditStore } from "../../src/audit/store.ts";
import { keyPairFromSeed } from "../../src/crypto/keys.ts";

const dir = process.argv[2];
if (dir === undefined) throw new Error("usage: crash-child <dir>");
const store = await AuditStore.open(dir, {
  origin: "gw-crash",
  gatewayKey: keyPairFromSeed(new Uint8Array(32).fill(7)),
  clock: () => Date.now(),
  checkpointEvery: 25,
  foldWindow: Number(process.argv[3] ?? 40),
  // Every snapshot part in a batch of its own, so that kills land between them too.
  snapshotBatchBytes: 1,
});
process.stdout.write(`ready ${store.size}\n`);
const WRITERS = 16;
let n = 0;
async function writer(w: number): Promise<void> {
  for (;;) {
    const i = n++;
    // Tasks with spent nonces (some reused: denies) and task claims, so the fold forgets
    // through its window and snapshots carry retire queues; some allows never get an outcome.
    const taskId = `w${w}-t${i}-${process.pid}`;
    const allow = i % 4 !== 0;
    const d = await store.append({
      type: "decision",
      taskId,
      input: { nonce: { key: `n${i % 97}`, local: "fresh", cluster: allow ? "claimed" : "taken" }, taskClaim: { taskId, local: "fresh", cluster: allow ? "claimed" : "not-attempted" } },
      decision: { verdict: allow ? "allow" : "deny", checks: [], reasons: allow ? [] : ["REPLAYED"] },
    });
    process.stdout.write(`${d.seq} ${d.leafHash}\n`);
    if (!allow || i % 7 === 0) continue;
    const r = await store.append({ type: "outcome", taskId, status: "succeeded", resultDigest: "x".repeat(i % 300) });
    process.stdout.write(`${r.seq} ${r.leafHash}\n`);
  }
}
// Fold snapshots are written between the appends, so some kills land in the middle of one.
async function snapshots(): Promise<void> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 3 + Math.floor(Math.random() * 12)));
    const s = await store.writeSnapshot();
    process.stdout.write(`snapshot ${s.size}\n`);
  }
}
await Promise.all([...Array.from({ length: WRITERS }, (_, w) => writer(w)), snapshots()]);
