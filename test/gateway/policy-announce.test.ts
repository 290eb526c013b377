// Heartbeats announce the newest policy version an authority knows of (its own key's, whichever
// process wrote it, and its peers'), and every trusted authority must heartbeat for the feed to be
// fresh. Found by review: a one-shot `failclosed authority --once` with the daemon's key retired P1
// and exited; with its one heartbeat deleted and P1's entry put back, a fresh gateway took P1 (the
// daemon announced only its own writes). The same with a second authority that retired P1 and went
// down: the first one's heartbeats kept the feed fresh. And back-to-back publishes made a gateway
// withdraw its policy when a heartbeat overtook the KV watch.
import { afterEach, describe, expect, it } from "vitest";
import { Kvm, type KV } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { KV_BUCKETS, POLICY_KEY, STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { readPolicyEntry } from "../../src/policy/activation.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantUnder, until } from "./client-support.ts";

const P1 = DEFAULT_POLICY;
const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };
const D1 = policyDigest(P1);
const D2 = policyDigest(P2);

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});



/** Delete from FAILCLOSED_GOV every heartbeat `pick` selects; returns how many. */
async function deleteHeartbeats(hh: Harness, pick: (payload: { issuer: string; policyVersion?: number }) => boolean): Promise<number> {
  const jsm = await jetstreamManager(hh.runtime.nc);
  const info = await jsm.streams.info(STREAMS.gov);
  let deleted = 0;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.gov, { seq }).catch(() => null);
    if (m === null || m.subject !== SUBJECTS.heartbeat) continue;
    const hb = JSON.parse(new TextDecoder().decode(m.data)) as { payload: { issuer: string; policyVersion?: number } };
    if (pick(hb.payload)) {
      await jsm.streams.deleteMessage(STREAMS.gov, seq, false);
      deleted++;
    }
  }
  return deleted;
}

const versionIn = async (kv: KV): Promise<number> => {
  const r = readPolicyEntry((await kv.get(POLICY_KEY))!.value);
  if (!r.ok) throw new Error(r.why);
  return r.entry.activation.payload.version;
};

describe("a retired policy put back, with the heartbeat that announced its successor deleted", () => {
  it("same key: the daemon follows the bucket and announces the one-shot's version; a fresh gateway denies", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value;
    const t1 = newTaskId();
    const underP1 = await grantUnder(h, t1, P1);
    // The operator retires P1: `failclosed authority --once --policy P2` with the daemon's key.
    const once = await Authority.connect({ natsUrl: h.url, key: namedKey("authority") });
    await once.publishPolicy(P2);
    await once.heartbeat();
    await once.close();
    const v2 = await versionIn(kv);
    await until(() => h!.authority.policyVersion === v2); // the daemon saw it in the bucket
    await sleep(300); // and has heartbeated since
    // Keep the daemon's heartbeats; delete only the one-shot's (its last one names v2 too, but the
    // daemon's stream of heartbeats goes on announcing v2).
    h.authority.stopHeartbeats();
    expect(await deleteHeartbeats(h, (p) => (p.policyVersion ?? 0) >= v2)).toBeGreaterThan(0);
    await h.authority.startHeartbeats(200);
    await kv.put(POLICY_KEY, e1);

    const gw = await h.startGateway();
    gw.registerAction("transfer", () => ({ ok: true }));
    expect(gw.ledger.state.policy).toBeUndefined();
    const o = await transfer(h, t1, underP1);
    expect(o).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    await h.authority.publishPolicy(P2); // signed anew, above v2: taken
    await until(() => gw.ledger.state.policy?.digest === D2);
    expect((await replayGateway(gw)).divergences).toEqual([]);
  });

  it("two authorities: while the one that retired P1 is down, the feed is not fresh; once it is back, its heartbeats say P1 is retired", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value; // P1, signed by "authority"
    const t1 = newTaskId();
    const underP1 = await grantUnder(h, t1, P1);
    const a2key = namedKey("authority-2");
    let a2 = await Authority.connect({ natsUrl: h.url, key: a2key });
    await a2.publishPolicy(P2);
    await a2.heartbeat();
    await a2.close(); // authority-2 goes down
    expect(await deleteHeartbeats(h, (p) => p.issuer === a2key.keyId)).toBe(1);
    await kv.put(POLICY_KEY, e1);

    const gw = await h.startGateway({ authorities: [h.authority.keyId, a2key.keyId], limits: { maxFeedAgeMs: 2_000 } });
    gw.registerAction("transfer", () => ({ ok: true }));
    expect(gw.ledger.state.policy?.digest).toBe(D1); // nothing says otherwise yet…
    expect(await transfer(h, t1, underP1)).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] }); // …but authority-2 has not vouched
    // Said (once) on the first decision after maxFeedAgeMs has passed without it.
    await sleep(2_100);
    const t0 = newTaskId();
    expect(await transfer(h, t0, await grantUnder(h, t0, P1))).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    expect(h.warnings.some((w) => w.includes(`has no heartbeat from authority ${a2key.keyId}`))).toBe(true);

    a2 = await Authority.connect({ natsUrl: h.url, key: a2key }); // back: it finds its own P2 in the bucket's history
    try {
      await a2.startHeartbeats(200);
      await until(() => gw.ledger.state.policy === undefined);
      const t2 = newTaskId();
      expect(await transfer(h, t2, await grantUnder(h, t2, P1))).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
      await a2.publishPolicy(P2);
      await until(() => gw.ledger.state.policy?.digest === D2);
    } finally {
      await a2.close();
    }
  });

  it("two authorities configured as peers: the one still up announces the other's version", async () => {
    const a2key = namedKey("authority-2");
    h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value;
    const a1 = await Authority.connect({ natsUrl: h.url, key: namedKey("authority"), peers: [a2key.keyId] });
    try {
      await a1.startHeartbeats(200);
      const a2 = await Authority.connect({ natsUrl: h.url, key: a2key, peers: [a1.keyId] });
      await a2.publishPolicy(P2);
      await a2.close();
      const v2 = await versionIn(kv);
      await until(() => a1.policyVersion === v2);
      // The harness's own authority (same key as a1, no peers) announces only its own versions.
      expect(h.authority.policyVersion).toBeLessThan(v2);
      await kv.put(POLICY_KEY, e1);
      const gw = await h.startGateway(); // trusts only "authority"
      expect(gw.ledger.state.policy).toBeUndefined();
      expect(h.warnings.some((w) => w.includes(`is older than the version ${v2} an authority's heartbeat announces`))).toBe(true);
    } finally {
      await a1.close();
    }
  });
});

describe("honest operation", () => {
  it("80 policies published back to back with heartbeats every 20 ms: no withdrawal, and a task under the last one runs", async () => {
    h = await startHarness({ heartbeatMs: 20 });
    const gw = h.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const docs: PolicyDocument[] = Array.from({ length: 80 }, (_, i) => ({ ...DEFAULT_POLICY, id: `p-${i}`, version: String(i) }));
    for (const doc of docs) {
      await h.authority.publishPolicy(doc);
      await sleep(3);
    }
    const last = docs[docs.length - 1]!;
    await until(() => gw.ledger.state.policy?.digest === policyDigest(last));
    await sleep(200);
    expect(h.warnings.filter((w) => /withdraw/.test(w))).toEqual([]);
    const t = newTaskId();
    const o = await transfer(h, t, await grantUnder(h, t, last));
    expect(o, JSON.stringify(o.checks?.filter((c) => !c.ok))).toMatchObject({ status: "succeeded" });
  });
});
