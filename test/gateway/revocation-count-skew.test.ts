// A gateway holds each authority to the largest revocation count its heartbeats ever announced:
// a heartbeat of another process with the same key, its clock ahead within the allowed skew,
// cannot lower it. (At first the latest heartbeat by issuedAt stood alone, and a revocation
// counted after it could be deleted unnoticed.)
import { afterEach, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { artifactId } from "../../src/core/artifacts.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const agent = namedKey("agent-0");
const key = namedKey("authority");
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("review: latest-by-issuedAt announcement", () => {
  it("a one-shot of the same key with a clock 4.5 s ahead does not lower the count: a later revocation deleted still denies", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    // `failclosed authority --once` on a host whose clock is 60 s ahead (no revocations)
    const once = await Authority.connect({ natsUrl: h.url, key, clock: () => Date.now() + 4_500 });
    await once.heartbeat();
    await once.close();
    const t = newTaskId();
    const now = Date.now();
    const revoked = (await h.authority.grant({ taskId: t, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`sk-${t}`), attribution: { initiator: "t", reason: "r" } })).artifact;
    await h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "compromised");
    await sleep(300); // daemon heartbeats now announce 1
    const nc = await connect({ servers: h.url });
    const jsm = await jetstreamManager(nc);
    const last = await jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.revocation });
    await jsm.streams.deleteMessage(STREAMS.gov, last!.seq);
    await nc.close();
    await sleep(300);
    const gw = await h.startGateway();
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
    await sleep(300);
    const o = await h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [revoked], taskId: t }).outcome;
    expect(ran).toEqual([]);
    expect(o.status).toBe("denied");
  });
});
