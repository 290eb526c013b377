// Hostile input on the governance stream an authority follows (FAILCLOSED_GOV): junk and forged
// revocations and heartbeats, other keys' revocations, a copy of its own old heartbeat, messages on
// the revocation subject deleted again so that its count check thinks revocations went missing, and
// a flood on the revocation subject before it starts. The authority must count and announce exactly
// the revocations its key published, republish only those, keep heartbeating, and start.
import { describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { artifactId, revoke } from "../../src/core/artifacts.ts";
import { HEARTBEAT_KIND, REVOCATION_KIND } from "../../src/core/types.ts";
import { signPayload, verifySigned } from "../../src/crypto/signing.ts";
import { startNatsServer } from "../../src/infra/nats-launcher.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot, transfer } from "../gateway/client-support.ts";
import { authorityKey, expectAuthorityHonest, expectValidTaskRuns, heldOn, publishRaw, rogue, sleep, worldPerTest, type World } from "./authority-hostile-support.ts";

const world = worldPerTest();

/** The messages on the revocation subject that the authority's key signed, as their texts. */
async function ownOnFeed(w: World): Promise<string[]> {
  const jsm = await jetstreamManager(w.h.runtime.nc);
  const info = await jsm.streams.info(STREAMS.gov);
  const out: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.gov, { seq }).catch(() => null);
    if (m === null || m.subject !== SUBJECTS.revocation) continue;
    const text = new TextDecoder().decode(m.data);
    try {
      const r = JSON.parse(text) as { payload: { issuer?: string }; sig: string };
      if (r.payload.issuer === authorityKey.keyId && verifySigned("revocation", r, authorityKey.publicKey)) out.push(text);
    } catch {
      // junk
    }
  }
  return out;
}

describe("hostile governance stream, as the authority reads it", () => {
  it("junk, forgeries, other keys' revocations, its own old heartbeat and messages deleted under its count: it counts, announces and republishes only its own", async () => {
    const w = await world();
    const v = w.h.authority.policyVersion;
    const t = newTaskId();
    const revoked = await grantRoot(w.h, t);
    await w.h.authority.revoke({ type: "artifact", id: artifactId(revoked) }, "leaked");
    const oldHeartbeat = (await (await jetstreamManager(w.h.runtime.nc)).streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.heartbeat }))!.data;
    const target = { type: "key" as const, keyId: namedKey("agent-7").keyId };
    const forgedRevocation = { kind: REVOCATION_KIND, issuer: authorityKey.keyId, target, reason: "forged", issuedAt: Date.now() };
    const junk: [string, string | Uint8Array][] = [
      [SUBJECTS.revocation, "{"],
      [SUBJECTS.revocation, `{"payload":{"issuer":"${authorityKey.keyId}","issuer":"x"},"sig":"x"}`],
      [SUBJECTS.revocation, JSON.stringify({ payload: forgedRevocation, sig: "A".repeat(86) })],
      [SUBJECTS.revocation, JSON.stringify(signPayload("revocation", forgedRevocation, rogue))],
      [SUBJECTS.revocation, JSON.stringify(signPayload("heartbeat", forgedRevocation, authorityKey))],
      [SUBJECTS.revocation, JSON.stringify(revoke(rogue, target, "another key's", Date.now()))],
      [SUBJECTS.revocation, JSON.stringify({ ...revoke(authorityKey, target, "x", Date.now()), extra: 1 })],
      [SUBJECTS.revocation, oldHeartbeat],
      [SUBJECTS.heartbeat, "{"],
      [SUBJECTS.heartbeat, JSON.stringify({ payload: { kind: HEARTBEAT_KIND, issuer: authorityKey.keyId, seq: 1e9, issuedAt: Date.now() + 60_000, revocations: 1_000 }, sig: "A".repeat(86) })],
      [SUBJECTS.heartbeat, JSON.stringify(signPayload("heartbeat", { kind: HEARTBEAT_KIND, issuer: rogue.keyId, seq: 1, issuedAt: Date.now(), revocations: 50 }, rogue))],
      [SUBJECTS.heartbeat, oldHeartbeat],
    ];
    const seqs: number[] = [];
    for (const [subject, bytes] of junk) {
      const ack = await publishRaw(w, subject, bytes);
      if (ack instanceof Error) throw ack;
      if (subject === SUBJECTS.revocation) seqs.push(ack.seq);
    }
    await sleep(600);
    // The attacker deletes its own messages again: the feed holds fewer than the authority read.
    const jsm = await jetstreamManager(w.h.runtime.nc);
    for (const seq of seqs) await jsm.streams.deleteMessage(STREAMS.gov, seq, false);
    await sleep(800);
    await expectAuthorityHonest(w, { policyVersion: v, revocations: 1 });
    // Its one revocation is on the feed once: nothing of anyone else's, nothing twice.
    expect(await ownOnFeed(w)).toHaveLength(1);
    expect(await heldOn(w, SUBJECTS.revocation)).toBe(1);
    expect(w.h.warnings.filter((m) => /lost \d+ revocation/.test(m))).toEqual([]);
    expect(await transfer(w.h, t, revoked)).toMatchObject({ verdict: "deny", codes: expect.arrayContaining(["REVOKED"]) as unknown });
    await expectValidTaskRuns(w, "after the hostile governance messages");
  });

  it("a flood of forged revocations on the feed before it starts: the authority still starts (its first read is slow, not stalled)", async () => {
    const server = await startNatsServer();
    const nc = await connect({ servers: server.url });
    let a: Authority | undefined;
    try {
      await ensureBus(nc);
      const js = jetstream(nc);
      const real = revoke(authorityKey, { type: "key", keyId: namedKey("agent-9").keyId }, "left", Date.now());
      // Signed by no one: each must still be parsed and verified against the authority's key.
      const forged = JSON.stringify({ ...real, sig: `${real.sig.slice(0, -4)}AAAA` });
      const acks: Promise<unknown>[] = [];
      for (let i = 0; i < 90_000; i++) {
        acks.push(js.publish(SUBJECTS.revocation, forged));
        if (acks.length >= 2_000) await Promise.all(acks.splice(0));
      }
      await Promise.all(acks);
      await js.publish(SUBJECTS.revocation, JSON.stringify(real));
      // (Failed before the fix: start() gave its first read 10 s in all, however much it had read by then.)
      a = await Authority.connect({ natsUrl: server.url, key: authorityKey });
      expect(a.revocationsPublished).toBe(1);
      await a.heartbeat();
    } finally {
      await a?.close();
      await nc.close();
      await server.stop();
    }
  }, 120_000);
});
