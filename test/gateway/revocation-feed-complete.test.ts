// A heartbeat vouches for the revocations before it: each says how many targets its authority
// has revoked on the feed, and a gateway that has seen fewer denies (GOVERNANCE_UNAVAILABLE)
// until they arrive. Without that, anyone with JetStream API rights could delete a revocation
// from FAILCLOSED_GOV (or purge it, before purges were denied), or divert its revocation subject
// into a stream of their own, while heartbeats kept the feed "fresh", and a revoked artifact
// would run.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { artifactId } from "../../src/core/artifacts.ts";
import { heartbeat } from "../../src/core/artifacts.ts";
import { RevocationTally, revocationTargetKey, revokedSetDigest } from "../../src/gateway/governance-feed.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { revoke } from "../../src/core/artifacts.ts";
import { grantRoot, transfer } from "./client-support.ts";

const agent = namedKey("agent-0");
const authorityKey = namedKey("authority");
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function admin(url: string) {
  const nc = await connect({ servers: url });
  return { nc, jsm: await jetstreamManager(nc), close: () => nc.close() };
}

describe("RevocationTally", () => {
  const a = namedKey("authority");
  const b = namedKey("authority-b");
  const ra = revoke(a, { type: "artifact", id: "A".repeat(43) }, "x", 1);
  const rk = revoke(a, { type: "key", keyId: agent.keyId }, "x", 4);
  const announce = (issuedAt: number, targets: string[]) => heartbeat(a, issuedAt, issuedAt, { revocations: targets.length, revokedDigest: revokedSetDigest(targets) }).payload;

  it("counts distinct targets per issuer against what the issuer's latest heartbeat announces", () => {
    const t = new RevocationTally();
    expect(t.missing).toBe(0);
    t.heartbeat(announce(10, [revocationTargetKey(ra.payload.target), revocationTargetKey(rk.payload.target)]));
    expect(t.missing).toBe(2);
    t.revocation(ra);
    t.revocation(revoke(a, ra.payload.target, "again", 2)); // the same target
    expect(t.missing).toBe(1);
    t.revocation(revoke(b, { type: "key", keyId: agent.keyId }, "b's", 3)); // another issuer's does not count for a
    expect(t.missing).toBe(1);
    t.heartbeat(announce(5, [])); // an older heartbeat does not replace the newer announcement
    expect(t.missing).toBe(1);
    t.revocation(rk);
    expect(t.missing).toBe(0);
    t.heartbeat(heartbeat(b, 1, 1).payload); // no count: an older authority, nothing to check
    expect(t.missing).toBe(0);
  });

  it("as many revocations as announced but other ones (one deleted, another in its place) is short", () => {
    const t = new RevocationTally();
    t.heartbeat(announce(10, [revocationTargetKey(ra.payload.target)]));
    t.revocation(rk); // not the one announced
    expect(t.missing).toBe(1);
    t.revocation(ra);
    expect(t.missing).toBe(0); // more than announced: another process of the key revoked rk
  });
});

describe("gateway: a revocation feed with revocations missing denies", () => {
  // (The harness's authority does not restore its feed in these two: what a gateway does with a
  // short feed is the subject. authority-restores-feed.test.ts has the authority put it back.)
  it("a revocation deleted from FAILCLOSED_GOV: a gateway starting afterwards denies until the revocation is published again", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200, restoreFeed: false });
    const revokedTask = newTaskId();
    const revoked = await grantRoot(h, revokedTask);
    const signed = await h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    expect(h.authority.revocationsPublished).toBe(1);
    const a = await admin(h.url);
    const last = await a.jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
    await a.jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
    await a.close();
    await h.authority.heartbeat(); // announces 1 revocation the stream no longer holds
    const gw = await h.startGateway();
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
    const o = await transfer(h, revokedTask, revoked);
    expect(o).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    // Every task is denied, not only the revoked one: the gateway cannot know what it is missing.
    const otherTask = newTaskId();
    const other = await grantRoot(h, otherTask);
    expect(await transfer(h, otherTask, other)).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    expect(h.warnings.some((w) => w.includes("revocation feed incomplete"))).toBe(true);
    // The authority publishes its revocation again: the feed is complete, the revoked artifact
    // is REVOKED and a new one runs.
    await h.authority.publishRevocation(signed);
    await h.authority.heartbeat();
    await new Promise((r) => setTimeout(r, 300));
    expect(await transfer(h, revokedTask, revoked)).toMatchObject({ status: "denied", codes: expect.arrayContaining(["REVOKED"]) as unknown });
    const third = newTaskId();
    expect(await transfer(h, third, await grantRoot(h, third))).toMatchObject({ status: "succeeded" });
    expect(ran).toEqual([third]);
    expect(h.warnings.some((w) => w.includes("revocation feed complete again"))).toBe(true);
  });

  it("a revocation deleted and another of the same key published in its place: still denied", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200, restoreFeed: false });
    const revokedTask = newTaskId();
    const revoked = await grantRoot(h, revokedTask);
    await h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    const a = await admin(h.url);
    const last = await a.jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
    await a.jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
    // A revocation signed earlier by the same key, never published: someone publishes it now.
    const other = revoke(authorityKey, { type: "key", keyId: namedKey("agent-9").keyId }, "signed offline", Date.now());
    await jetstream(a.nc).publish(SUBJECTS.revocation, JSON.stringify(other));
    await a.close();
    await new Promise((r) => setTimeout(r, 400)); // the authority sees it and heartbeats
    const gw = await h.startGateway();
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
    expect(await transfer(h, revokedTask, revoked)).toMatchObject({ status: "denied", codes: expect.arrayContaining(["GOVERNANCE_UNAVAILABLE"]) as unknown });
    expect(ran).toEqual([]);
  });

  it("a revocation gateways would refuse (a reason over the schema's limit) is refused by revoke(), and not counted", async () => {
    h = await startHarness({ gateways: 0 });
    await expect(h.authority.revoke({ type: "key", keyId: namedKey("agent-9").keyId }, "x".repeat(5_000))).rejects.toThrow(TypeError);
    expect(h.authority.revocationsPublished).toBe(0);
  });

  it("an authority trusted at runtime brings its earlier revocations into force, and nothing is denied for want of them", async () => {
    h = await startHarness({ heartbeatMs: 200 });
    const gw = h.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const b = await Authority.connect({ natsUrl: h.url, key: namedKey("authority-b") });
    try {
      const gone = namedKey("agent-9").keyId;
      await b.revoke({ type: "key", keyId: gone }, "left"); // dropped by the gateway: B is not trusted yet
      await b.startHeartbeats(200);
      await new Promise((r) => setTimeout(r, 300));
      expect(gw.ledger.state.revokedKeys.has(gone)).toBe(false);
      await gw.addAuthority(b.keyId); // the operator trusts B here too (a staggered rotation)
      expect(gw.ledger.state.revokedKeys.has(gone)).toBe(true);
      await new Promise((r) => setTimeout(r, 400)); // B's heartbeats, counting 1, come by
      const t = newTaskId();
      expect(await transfer(h, t, await grantRoot(h, t))).toMatchObject({ status: "succeeded" });
    } finally {
      await b.close();
    }
  });

  it("the revocation subject diverted into another stream: revoke() fails instead of counting as published", async () => {
    h = await startHarness({ gateways: 0 });
    const a = await admin(h.url);
    const info = await a.jsm.streams.info(STREAMS.gov);
    await a.jsm.streams.update(STREAMS.gov, { ...info.config, subjects: [SUBJECTS.heartbeat] });
    await a.jsm.streams.add({ name: "DIVERTED", subjects: [SUBJECTS.revocation], retention: RetentionPolicy.Limits, storage: StorageType.Memory });
    await a.close();
    const taskId = newTaskId();
    const artifact = await grantRoot(h, taskId);
    await expect(h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "compromised")).rejects.toThrow();
    expect(h.authority.revocationsPublished).toBe(0);
  });

  it("an authority that restarts counts the revocations its key already has on the feed", async () => {
    h = await startHarness({ gateways: 0 });
    await h.authority.revoke({ type: "key", keyId: namedKey("agent-9").keyId }, "left");
    await h.authority.revoke({ type: "artifact", id: "B".repeat(43) }, "x");
    await h.authority.revoke({ type: "artifact", id: "B".repeat(43) }, "same target again");
    const again = await Authority.connect({ natsUrl: h.url, key: authorityKey });
    try {
      expect(again.revocationsPublished).toBe(2);
      const other = await Authority.connect({ natsUrl: h.url, key: namedKey("authority-b") });
      expect(other.revocationsPublished).toBe(0);
      await other.close();
    } finally {
      await again.close();
    }
  });
});

describe("authority: a revocation log", () => {
  it("a revocation deleted from the feed while its authority is down is published again when it restarts with its log", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const log = join(h.dir, "revocations.json");
    const first = await Authority.connect({ natsUrl: h.url, key: namedKey("authority"), revocationLog: log });
    const revokedTask = newTaskId();
    const revoked = await grantRoot(h, revokedTask);
    await first.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    await first.close();
    // While it is down, the revocation goes from the feed.
    const a = await admin(h.url);
    const last = await a.jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
    await a.jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
    await a.close();
    // Without its log, the authority would count 0 and a new gateway run the artifact.
    const again = await Authority.connect({ natsUrl: h.url, key: namedKey("authority"), revocationLog: log });
    try {
      expect(again.revocationsPublished).toBe(1);
      const gw = await h.startGateway();
      const ran: string[] = [];
      gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
      expect(gw.ledger.state.revokedArtifacts.has(artifactId(revoked))).toBe(true);
      expect(await transfer(h, revokedTask, revoked)).toMatchObject({ status: "denied", codes: expect.arrayContaining(["REVOKED"]) as unknown });
      expect(ran).toEqual([]);
    } finally {
      await again.close();
    }
  });

  it("a log that is not one, or holds another key's revocation, is refused at connect", async () => {
    h = await startHarness({ gateways: 0 });
    const bad = join(h.dir, "bad.json");
    await writeFile(bad, "{}");
    await expect(Authority.connect({ natsUrl: h.url, key: namedKey("authority"), revocationLog: bad })).rejects.toThrow(TypeError);
    const foreign = join(h.dir, "foreign.json");
    await writeFile(foreign, JSON.stringify([revoke(namedKey("authority-b"), { type: "key", keyId: agent.keyId }, "x", 1)]));
    await expect(Authority.connect({ natsUrl: h.url, key: namedKey("authority"), revocationLog: foreign })).rejects.toThrow(/not signed by this authority/);
  });
});
