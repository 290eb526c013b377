// An authority's revocation log keeps every revocation of its key it sees, whoever published it
// (another process with the key, or before the log was kept), and merges with the file as it
// stands, so two processes on one log lose nothing: a revocation deleted from the feed is
// published again at the next start. (At first only what the process itself published was kept,
// by rewriting the file from memory, and a restart after a deletion let the artifact run.)
import { join } from "node:path";
import { readFile, writeFile } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { artifactId } from "../../src/core/artifacts.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot } from "./client-support.ts";

const agent = namedKey("agent-0");
const key = namedKey("authority");
let h: Harness | undefined;
const extra: Authority[] = [];
afterEach(async () => {
  for (const a of extra.splice(0)) await a.close().catch(() => undefined);
  await h?.close();
  h = undefined;
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function deleteLastRevocation(url: string) {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  const last = await jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
  await jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
  await nc.close();
}

describe("review: revocation log gaps", () => {
  it("a revocation another process of the key published is logged by the running authority, and published again after a deletion and a restart", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const log = join(h.dir, "revocations.json");
    const t = newTaskId();
    const revoked = await grantRoot(h, t);
    await h.authority.close(); // only the daemon below speaks for the key from here
    // (restoreFeed off: the running daemon would put the revocation back at once; this is about the log.)
    const daemon = await Authority.connect({ natsUrl: h.url, key, revocationLog: log, restoreFeed: false });
    extra.push(daemon);
    await daemon.startHeartbeats(200);
    // `failclosed authority --key K --revoke FILE --once` beside the daemon (documented use)
    const once = await Authority.connect({ natsUrl: h.url, key });
    await once.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    await once.close();
    await sleep(400);
    expect(daemon.revocationsPublished).toBe(1); // the daemon follows it...
    // attacker (bus rights, no key) deletes it; the daemon still vouches for it, so gateways deny...
    await deleteLastRevocation(h.url);
    // ...until the daemon restarts with its log (normal ops)
    await daemon.close();
    const again = await Authority.connect({ natsUrl: h.url, key, revocationLog: log, restoreFeed: false });
    extra.push(again);
    await again.startHeartbeats(200);
    const gw = await h.startGateway();
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
    const o = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [revoked], taskId: t }).outcome;
    expect(ran).toEqual([]);
    expect(o).toMatchObject({ status: "denied", codes: expect.arrayContaining(["REVOKED"]) as unknown });
  });

  it("a log damaged under a running authority: a revocation read from the feed that it cannot keep is said, not silently left uncounted", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const log = join(h.dir, "revocations.json");
    const t = newTaskId();
    const revoked = await grantRoot(h, t);
    await h.authority.close();
    const warnings: string[] = [];
    const daemon = await Authority.connect({ natsUrl: h.url, key, revocationLog: log, restoreFeed: false, onWarning: (m) => warnings.push(m) });
    extra.push(daemon);
    await writeFile(log, "{ not a revocation log"); // damaged while it runs
    const once = await Authority.connect({ natsUrl: h.url, key });
    await once.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    await once.close();
    for (let i = 0; i < 100 && warnings.length === 0; i++) await sleep(50);
    expect(warnings).toEqual([expect.stringMatching(/^the revocation log could not keep this key's revocation of artifact:.* read from the feed \(not counted until it can\): .*not a JSON array of signed revocations/)]);
    expect(daemon.revocationsPublished).toBe(0);
  });

  it("two processes with one key and one log: the log keeps both their revocations", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const log = join(h.dir, "revocations.json");
    const t = newTaskId();
    const revoked = await grantRoot(h, t);
    await h.authority.close();
    const daemon = await Authority.connect({ natsUrl: h.url, key, revocationLog: log });
    extra.push(daemon);
    await daemon.startHeartbeats(200);
    const once = await Authority.connect({ natsUrl: h.url, key, revocationLog: log });
    await once.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    await once.close();
    // the daemon revokes something else later: it rewrites the log from its in-memory copy
    await daemon.revoke({ type: "key", keyId: namedKey("agent-9").keyId }, "left");
    const logged = JSON.parse(await readFile(log, "utf8")) as { payload: { target: unknown } }[];
    expect(logged.map((x) => x.payload.target)).toContainEqual({ type: "artifact", id: artifactId(revoked) });
  });
});
