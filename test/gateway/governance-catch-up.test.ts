// Found by review: a gateway took work once its bounded wait for the governance backlog ran out
// (load, or a flood of forged messages ahead of the real ones, each costing a signature check),
// and retired unconfigured authorities then, read or not: a retired authority's last revocation,
// read after its retirement, was dropped as "not a trusted authority", and once caught up the
// gateway allowed the revoked artifact. And a governance stream deleted and made again ended the
// gateway's read of it for good: every task denied forever. Now decisions deny until the read has
// caught up, retirement waits for it, and the read starts again whenever it ends.
// (governanceWaitMs: 0 stands for a wait that ran out.)
import { afterEach, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { artifactId } from "../../src/core/artifacts.ts";
import { connect } from "@nats-io/transport-node";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot, sleep, transfer, until } from "./client-support.ts";

let h: Harness | undefined;
let x: Authority | undefined;
afterEach(async () => {
  await x?.close();
  x = undefined;
  await h?.close();
  h = undefined;
});


describe("the governance stream read up to date before anything rests on it", () => {
  it("an authority retired at restart: its last revocation, published while the gateway was down, stays in force", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 300 });
    const a = h.authority;
    const xKey = namedKey("authority-x");
    x = await Authority.connect({ natsUrl: h.url, key: xKey });
    await x.startHeartbeats(300);
    const gid = { id: "gw-1", key: namedKey("gateway-1") };
    const g1 = await h.startGateway({ ...gid, authorities: [a.keyId, xKey.keyId] });
    await sleep(500);
    await g1.stop();
    // While the gateway is down, X revokes an artifact A issued, and X is decommissioned.
    const t = newTaskId();
    const art = await grantRoot(h, t);
    await x.revoke({ type: "artifact", id: artifactId(art) }, "compromised");
    await x.close();
    x = undefined;
    // Restarted without X, retiring it; its start does not wait for the backlog at all.
    const g2 = await h.startGateway({ ...gid, authorities: [a.keyId], retireUnconfiguredAuthorities: true, governanceWaitMs: 0 });
    g2.registerAction("transfer", () => ({ ok: true }));
    await until(() => !g2.ledger.state.authorities.has(xKey.keyId)); // retired once the stream is read…
    expect(g2.ledger.state.revokedArtifacts.has(artifactId(art))).toBe(true); // …with its revocation in force
    expect(await transfer(h, t, art)).toMatchObject({ status: "denied", codes: ["REVOKED"] });
  });

  it("the governance stream made again while a gateway starts (its sequence back at 1): tasks run once heartbeats are fresh", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const nc = await connect({ servers: h.url });
    try {
      const jsm = await jetstreamManager(nc);
      // A stream that has been up a while: its sequence is well ahead of 1.
      for (let i = 0; i < 400; i++) await nc.request(SUBJECTS.heartbeat, "{}").catch(() => undefined);
      const config = (await jsm.streams.info(STREAMS.gov)).config;
      // The gateway's ensureBus reads this stream's info twice (ensureStream, guardStream); the
      // third read is the start's own. The stream is made again right after it.
      let n = 0;
      const sub = nc.subscribe(`$JS.API.STREAM.INFO.${STREAMS.gov}`);
      const done = (async () => {
        for await (const _m of sub) {
          if (++n < 3) continue;
          await jsm.streams.delete(STREAMS.gov);
          await jsm.streams.add(config);
          sub.unsubscribe();
        }
      })();
      const gw = await h.startGateway();
      await done;
      gw.registerAction("transfer", () => ({ ok: true }));
      // (Until this read began again from the new stream's first message, it waited there for
      // the old stream's next sequence: every task denied for minutes. Now within seconds.)
      // Up to 30 tries a second apart: a full CI run on two cores once took longer than 15
      // (denied throughout; not reproduced alone, under load, or six at once).
      let last: unknown;
      for (let i = 0; i < 30; i++) {
        const t = newTaskId();
        last = await transfer(h, t, await grantRoot(h, t));
        if ((last as { status?: string }).status === "succeeded") break;
        await sleep(1_000);
      }
      // Why it was denied, should it be: the codes and detail of the last answer.
      expect(last, JSON.stringify({ codes: (last as { codes?: unknown }).codes, detail: (last as { detail?: unknown }).detail })).toMatchObject({ status: "succeeded" });
    } finally {
      await nc.close();
    }
  }, 120_000);
});
