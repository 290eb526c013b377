// A gateway started with another id on a data dir whose log is another gateway's (an operator's
// slip: a copied dir, a changed --id) used to come up and write a checkpoint naming its own id
// into that log, after which every audit of it failed. It now refuses to start, writing nothing.
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a gateway refuses to start on another gateway's log (AUDIT_ORIGIN_MISMATCH), and that gateway starts on it again", async () => {
  h = await startHarness({ gateways: 0 });
  const hh = h;
  const dir = join(hh.dir, "gw-a-data");
  const a = await hh.startGateway({ id: "gw-a", audit: dir });
  await a.ledger.store.checkpoint();
  await a.stop();
  await expect(hh.startGateway({ id: "gw-b", key: namedKey("gateway-2"), audit: dir })).rejects.toMatchObject({ name: "AuditStoreError", code: "AUDIT_ORIGIN_MISMATCH" });
  const again = await hh.startGateway({ id: "gw-a", key: namedKey("gateway-1"), audit: dir });
  expect(again.ledger.store.size).toBeGreaterThan(0);
}, 60_000);
