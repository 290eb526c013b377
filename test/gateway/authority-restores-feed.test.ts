// A running authority puts back on the governance feed the revocations of its key that the feed
// lost: a message deleted, the stream deleted and made again, the stream deleted and left so.
// Gateways deny every task while the feed holds fewer revocations than the heartbeats announce
// (revocation-feed-complete.test.ts); before this, they denied until someone restarted the
// authority with its revocation log. (Its revocation follower, an ordered consumer, also went
// on at the old stream's next sequence on a stream made again, and read nothing more.)
import { afterEach, expect, it } from "vitest";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { artifactId, revoke } from "../../src/core/artifacts.ts";
import { revocationTargetKey } from "../../src/gateway/governance-feed.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot, transfer, until } from "./client-support.ts";

let h: Harness | undefined;
let admin: { nc: NatsConnection; jsm: JetStreamManager } | undefined;
afterEach(async () => {
  await admin?.nc.close();
  admin = undefined;
  await h?.close();
  h = undefined;
});

async function adminOf(url: string): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const nc = await connect({ servers: url });
  return { nc, jsm: await jetstreamManager(nc) };
}

/** The revocation targets of the harness's authority the feed holds now (read from the stream). */
async function targetsOnFeed(jsm: JetStreamManager): Promise<Set<string>> {
  const out = new Set<string>();
  const info = await jsm.streams.info(STREAMS.gov, { subjects_filter: SUBJECTS.revocation }).catch(() => undefined);
  const last = info?.state.last_seq ?? 0;
  for (let seq = info?.state.first_seq ?? 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.gov, { seq }).catch(() => null);
    if (m === null || m.subject !== SUBJECTS.revocation) continue;
    const r = m.json<{ payload: { issuer: string; target: Parameters<typeof revocationTargetKey>[0] } }>();
    if (r.payload.issuer === namedKey("authority").keyId) out.add(revocationTargetKey(r.payload.target));
  }
  return out;
}

/**
 * The feed's targets once `ok` holds of them, or as they are after 30 s. (Usually well under a
 * second; on a loaded CI machine a restore whose read began on the old stream waits out its
 * fetch, and the next heartbeat's check restores.)
 */
async function feedWithin(jsm: JetStreamManager, ok: (targets: Set<string>) => boolean): Promise<Set<string>> {
  for (let i = 0; ; i++) {
    const t = await targetsOnFeed(jsm);
    if (ok(t) || i >= 300) return t;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A revoked artifact and a granted one; after the feed recovered, a new gateway denies the first REVOKED and runs the second. */
async function expectGatewayAgrees(hh: Harness, revokedTask: string, revoked: Awaited<ReturnType<typeof grantRoot>>): Promise<void> {
  const gw = await hh.startGateway();
  const ran: string[] = [];
  gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  expect(await transfer(hh, revokedTask, revoked)).toMatchObject({ status: "denied", codes: ["REVOKED"] });
  const t = newTaskId();
  expect(await transfer(hh, t, await grantRoot(hh, t))).toMatchObject({ status: "succeeded" });
  expect(ran).toEqual([t]);
}

it("a revocation deleted from the feed under a running authority is published again; a gateway starting after finds it", { timeout: 120_000 }, async () => {
  h = await startHarness({ gateways: 0, heartbeatMs: 200 });
  admin = await adminOf(h.url);
  const revokedTask = newTaskId();
  const revoked = await grantRoot(h, revokedTask);
  const signed = await h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
  const target = revocationTargetKey(signed.payload.target);
  const last = await admin.jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
  await admin.jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
  // (Not looked for on the feed now: the authority checks it after each 200 ms heartbeat and may
  // have put it back already. Its warning says it saw the loss.)
  await until(() => h!.warnings.some((w) => w.includes("lost 1 revocation")), 30_000);
  expect((await feedWithin(admin.jsm, (t) => t.has(target))).has(target)).toBe(true);
  await expectGatewayAgrees(h, revokedTask, revoked);
});

it("the governance stream deleted and made again, empty: the authority publishes all its revocations again, and a running gateway recovers", { timeout: 120_000 }, async () => {
  h = await startHarness({ gateways: 1, heartbeatMs: 200 });
  admin = await adminOf(h.url);
  h.gateways[0]!.registerAction("transfer", () => ({ ok: true }));
  const revokedTask = newTaskId();
  const revoked = await grantRoot(h, revokedTask);
  await h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
  // One published by another process of the key (`failclosed authority --revoke F --once`): the
  // running authority knows it only from the feed, and puts it back too.
  const other = revoke(namedKey("authority"), { type: "key", keyId: namedKey("agent-9").keyId }, "left", Date.now());
  await jetstream(admin.nc).publish(SUBJECTS.revocation, JSON.stringify(other));
  await until(() => h!.authority.revocationsPublished === 2);
  const config = (await admin.jsm.streams.info(STREAMS.gov)).config;
  await admin.jsm.streams.delete(STREAMS.gov);
  await admin.jsm.streams.add(config);
  expect((await feedWithin(admin.jsm, (t) => t.size >= 2)).size).toBe(2);
  expect(h.warnings.some((w) => w.includes("lost 2 revocation"))).toBe(true);
  // The gateway that ran through it: a new task runs again once it has read the new stream.
  let last: unknown;
  for (let i = 0; i < 15; i++) {
    const t = newTaskId();
    last = await transfer(h, t, await grantRoot(h, t));
    if ((last as { status?: string }).status === "succeeded") break;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  expect(last).toMatchObject({ status: "succeeded" });
  expect(await transfer(h, revokedTask, revoked)).toMatchObject({ status: "denied", codes: ["REVOKED"] });
  // And a gateway that starts now, alone on the queue.
  await h.gateways[0]!.stop();
  await expectGatewayAgrees(h, revokedTask, revoked);
});

it("the governance stream deleted and left so: the authority makes it again, guarded, with its revocations", { timeout: 120_000 }, async () => {
  h = await startHarness({ gateways: 0, heartbeatMs: 200 });
  admin = await adminOf(h.url);
  const revokedTask = newTaskId();
  const revoked = await grantRoot(h, revokedTask);
  const signed = await h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
  await admin.jsm.streams.delete(STREAMS.gov);
  const target = revocationTargetKey(signed.payload.target);
  expect((await feedWithin(admin.jsm, (t) => t.has(target))).has(target)).toBe(true);
  const { config } = await admin.jsm.streams.info(STREAMS.gov);
  expect(config.deny_purge).toBe(true);
  expect(config.allow_rollup_hdrs).toBe(false);
  expect(h.warnings.some((w) => w.includes("making it again"))).toBe(true);
  await expectGatewayAgrees(h, revokedTask, revoked);
});

it("restoreFeed off: a deleted revocation stays deleted (what revocation-feed-complete.test.ts relies on)", { timeout: 120_000 }, async () => {
  h = await startHarness({ gateways: 0, heartbeatMs: 100, restoreFeed: false });
  admin = await adminOf(h.url);
  const t = newTaskId();
  const signed = await h.authority.revoke({ type: "artifact", id: artifactId(await grantRoot(h, t)) }, "compromised");
  const last = await admin.jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
  await admin.jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
  await new Promise((r) => setTimeout(r, 1_000)); // ten heartbeats
  expect((await targetsOnFeed(admin.jsm)).has(revocationTargetKey(signed.payload.target))).toBe(false);
});
