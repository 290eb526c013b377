// A task message delivered again while this gateway still runs it (the shared consumer deleted
// and made again delivers every message not yet acknowledged) is left to the flight that has it:
// one flight, one outcome, for one submission.
import { afterEach, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { STREAMS, TASK_CONSUMER } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, replayGateway, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot } from "./client-support.ts";

const agent = namedKey("agent-0");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  for (let i = 0; i < ms / 25 && !cond(); i++) await sleep(25);
  return cond();
}
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("a task executing while the consumer is deleted and made again runs as one flight with one outcome", async () => {
  h = await startHarness();
  const gw = h.gateways[0]!;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const ran: string[] = [];
  gw.registerAction("transfer", async ({ taskId }) => {
    ran.push(taskId);
    await gate;
    return { ok: true };
  });
  const t = newTaskId();
  const out = h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [await grantRoot(h, t)], taskId: t }).outcome;
  expect(await until(() => ran.includes(t))).toBe(true);
  await (await jetstreamManager(h.runtime.nc)).consumers.delete(STREAMS.tasks, TASK_CONSUMER);
  expect(await until(() => h!.warnings.some((w) => w.includes("task consumer lost")))).toBe(true);
  await sleep(3_000); // re-made after 1 s; give it time to deliver
  const flightsBeforeRelease = h.outcomes.filter((o) => o.taskId === t).map((o) => `${o.status}${o.duplicate ? "(dup)" : ""}:${o.codes.join(",")}`);
  release();
  const o = await out;
  await sleep(500);
  const all = h.outcomes.filter((x) => x.taskId === t).map((x) => `${x.status}${x.duplicate ? "(dup)" : ""}:${x.codes.join(",")}`);
  expect(flightsBeforeRelease).toEqual([]);
  expect(o.status).toBe("succeeded");
  expect(ran).toEqual([t]);
  expect((await replayGateway(gw)).divergences).toEqual([]);
  expect(all).toEqual(["succeeded:"]);
}, 60_000);
