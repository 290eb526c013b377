// A gateway whose log fails the background check of the records before its snapshot cannot
// decide anything (its log is unwritable). It used to go on pulling tasks and deny each one
// GOVERNANCE_UNAVAILABLE: in a two-gateway cluster, about half the valid tasks (found by an
// operator's review, on a tampered copy of a data dir). It now leaves the task queue to the
// other gateways, and says so.
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { bundleKey } from "../../src/audit/keys.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot, transfer, until } from "./client-support.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a gateway whose log is corrupt before its snapshot leaves the queue: every task goes to the sound gateway and runs", async () => {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const dirA = join(hh.dir, "gw-a");
  const first = await hh.startGateway({ id: "gw-a", key: namedKey("gateway-1"), audit: dirA });
  first.registerAction("transfer", () => ({ ok: true }));
  for (let i = 0; i < 8; i++) {
    const t = newTaskId();
    expect(await transfer(hh, t, await grantRoot(hh, t))).toMatchObject({ status: "succeeded" });
  }
  await first.stop(); // writes the fold snapshot
  // One digit of one record in the second bundle: the snapshot still verifies, so the store
  // opens from it; only the background check of the records before it finds this.
  const b = await LevelBackend.open(dirA);
  const bundle = new Uint8Array((await b.get(bundleKey(1)))!);
  const at = Buffer.from(bundle).indexOf('"time":') + 8;
  expect(at).toBeGreaterThan(8);
  bundle[at] = bundle[at] === 0x39 ? 0x38 : bundle[at]! + 1;
  await b.batch([{ type: "put", key: bundleKey(1), value: bundle }], { sync: true });
  await b.close();

  const a = await hh.startGateway({ id: "gw-a", key: namedKey("gateway-1"), audit: dirA });
  a.registerAction("transfer", () => ({ ok: true }));
  expect(await a.ledger.store.prefixCheck).toMatchObject({ ok: false });
  await until(() => hh.warnings.some((w) => w.includes("[gw-a]") && w.includes("leaving the task queue")));
  const sound = await hh.startGateway({ id: "gw-b", key: namedKey("gateway-2") });
  sound.registerAction("transfer", () => ({ ok: true }));
  const outs = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const t = newTaskId();
      return transfer(hh, t, await grantRoot(hh, t));
    }),
  );
  for (const o of outs) expect(o).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-b" });
}, 90_000);
