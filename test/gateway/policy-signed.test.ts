// The policy bucket holds signed entries (policy/activation.ts). Someone with rights on the bucket
// and no authority key used to put a retired policy back, and artifacts bound to it ran again.
// Now a gateway takes only a trusted authority's entry, and only a version above the one it
// holds, through its watch, its periodic re-read and a restart from its audit log alike.
import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import { Kvm, type KV } from "@nats-io/kv";
import { KV_BUCKETS, POLICY_KEY } from "../../src/nats/contract.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { MAX_POLICY_VERSION, policyEntryText, readPolicyEntry, signActivation } from "../../src/policy/activation.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { replayGateway, startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantUnder, until } from "./client-support.ts";

const P1 = DEFAULT_POLICY;
const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };
const P3: PolicyDocument = { ...DEFAULT_POLICY, id: "default-3", version: "3" };
const D1 = policyDigest(P1);
const D2 = policyDigest(P2);
const D3 = policyDigest(P3);

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});



/** Run a task under `doc` and give its status and codes. */
async function runUnder(hh: Harness, doc: PolicyDocument): Promise<{ status: string; codes?: string[] }> {
  const t = newTaskId();
  const o = await transfer(hh, t, await grantUnder(hh, t, doc));
  const codes = "codes" in o && o.codes !== undefined ? [...o.codes] : [];
  return { status: o.status, ...(codes.length > 0 ? { codes } : {}) };
}

describe("a gateway takes only a trusted authority's policy entries, and only upwards", () => {
  it("a retired policy put back, an unsigned entry, an entry signed by another key: all refused, by the watch, the re-read and a restart", async () => {
    h = await startHarness({ gateway: { policyRecheckMs: 150 } });
    const gw = h.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value;
    expect(readPolicyEntry(e1).ok).toBe(true);

    await h.authority.publishPolicy(P2);
    await until(() => gw.ledger.state.policy?.digest === D2);
    const e2 = (await kv.get(POLICY_KEY))!.value;
    const v2 = gw.ledger.state.policyHigh!.version;
    expect(gw.ledger.state.policyHigh).toEqual({ version: v2, digest: D2, issuer: h.authority.keyId });
    expect(await runUnder(h, P2)).toEqual({ status: "succeeded" });

    // P1's own signed entry, put back: the version is older than the one in force.
    const warned = (re: RegExp): number => h!.warnings.filter((w) => re.test(w)).length;
    await kv.put(POLICY_KEY, e1);
    await until(() => warned(/retired policy put back/) > 0);
    await sleep(500); // several re-reads: still P2, and one warning, not one per re-read
    expect(gw.ledger.state.policy?.digest).toBe(D2);
    expect(warned(/retired policy put back/)).toBe(1);
    expect(await runUnder(h, P1)).toEqual({ status: "denied", codes: ["POLICY_MISMATCH"] });
    expect(await runUnder(h, P2)).toEqual({ status: "succeeded" });

    // An entry as older authorities wrote it (unsigned), and one signed by a key no gateway trusts.
    await kv.put(POLICY_KEY, JSON.stringify({ digest: D1, document: P1 }));
    await until(() => warned(/not signed/) > 0);
    const mallory = namedKey("mallory");
    await kv.put(POLICY_KEY, policyEntryText(P3, signActivation(mallory, P3, v2 + 1_000, Date.now())));
    await until(() => warned(/not a trusted authority/) > 0);
    expect(gw.ledger.state.policy?.digest).toBe(D2);
    expect(await runUnder(h, P3)).toEqual({ status: "denied", codes: ["POLICY_MISMATCH"] });

    // A delete withdraws (unsigned, it can only deny); the old entry after it is still refused,
    // and P2's own entry is taken again.
    await kv.delete(POLICY_KEY);
    await until(() => gw.ledger.state.policy === undefined);
    expect(await runUnder(h, P2)).toEqual({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    await kv.put(POLICY_KEY, e1);
    await sleep(400);
    expect(gw.ledger.state.policy).toBeUndefined();
    await kv.put(POLICY_KEY, e2);
    await until(() => gw.ledger.state.policy?.digest === D2);
    expect(await runUnder(h, P2)).toEqual({ status: "succeeded" });

    // Restarted on its log with P1's entry in the bucket: still P2.
    await kv.put(POLICY_KEY, e1);
    await sleep(300);
    await gw.stop();
    const again = await h.startGateway({ id: gw.id, key: namedKey("gateway-1"), audit: join(h.dir, gw.id) });
    again.registerAction("transfer", () => ({ ok: true }));
    expect(again.ledger.state.policy?.digest).toBe(D2);
    expect(again.ledger.state.policyHigh).toEqual({ version: v2, digest: D2, issuer: h.authority.keyId });
    expect(await runUnder(h, P1)).toEqual({ status: "denied", codes: ["POLICY_MISMATCH"] });
    expect(await runUnder(h, P2)).toEqual({ status: "succeeded" });

    // The authority publishing P1 again signs it anew, above P2: gateways take it.
    await h.authority.publishPolicy(P1);
    await until(() => again.ledger.state.policy?.digest === D1);
    expect(again.ledger.state.policyHigh!.version).toBeGreaterThan(v2);
    expect(await runUnder(h, P1)).toEqual({ status: "succeeded" });

    const rep = await replayGateway(again);
    expect(rep.divergences).toEqual([]);
    expect(rep.decisionsRederived).toBeGreaterThan(8);
  });
});

describe("the authority signs versions above what the bucket has seen", () => {
  const revisionOf = async (kv: KV): Promise<number> => (await kv.get(POLICY_KEY))!.revision;
  const versionOf = async (kv: KV): Promise<number> => {
    const r = readPolicyEntry((await kv.get(POLICY_KEY))!.value);
    if (!r.ok) throw new Error(r.why);
    return r.entry.activation.payload.version;
  };

  it("publishing the policy in force writes nothing; an older own entry put back is signed anew", async () => {
    h = await startHarness({ gateways: 0 });
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const rev = await revisionOf(kv);
    expect(await h.authority.publishPolicy(P1)).toBe(D1);
    expect(await revisionOf(kv)).toBe(rev);
    const e1 = (await kv.get(POLICY_KEY))!.value;
    const v1 = await versionOf(kv);
    await h.authority.publishPolicy(P2);
    const v2 = await versionOf(kv);
    expect(v2).toBeGreaterThan(v1);
    await kv.put(POLICY_KEY, e1);
    await h.authority.publishPolicy(P1);
    expect(await versionOf(kv)).toBeGreaterThan(v2);
  });

  it("entries some other key signed at or near the last version neither stop the authority nor raise its versions", async () => {
    h = await startHarness({ gateway: { policyRecheckMs: 150 } });
    const gw = h.gateways[0]!;
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const mallory = namedKey("mallory");
    await kv.put(POLICY_KEY, policyEntryText(P3, signActivation(mallory, P3, MAX_POLICY_VERSION, Date.now())));
    await kv.put(POLICY_KEY, policyEntryText(P3, signActivation(mallory, P3, MAX_POLICY_VERSION - 1, Date.now())));
    await expect(h.authority.publishPolicy(P2)).resolves.toBe(D2);
    await until(() => gw.ledger.state.policy?.digest === D2);
    // Counted from this authority's own versions and its clock: far below the bound, so it (and
    // the gateways' floor) can go on counting.
    expect(h.authority.policyVersion).toBeLessThan(Date.now() + 60_000);
    expect(gw.ledger.state.policyHigh!.version).toBe(h.authority.policyVersion);
    await h.authority.publishPolicy(P3);
    await until(() => gw.ledger.state.policy?.digest === D3);
  });

  it("two authorities publishing at once both land, with distinct, increasing versions; the gateway follows the last", async () => {
    h = await startHarness({ gateways: 0 });
    const other = await Authority.connect({ natsUrl: h.url, key: namedKey("authority-2"), clock: () => 1, peers: [h.authority.keyId] });
    try {
      const gw = await h.startGateway({ authorities: [h.authority.keyId, other.keyId] });
      const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
      // `other`'s clock reads 1 ms: only counting past its peer's versions keeps it above.
      await Promise.all([h.authority.publishPolicy(P2), other.publishPolicy(P3)]);
      const versions: number[] = [];
      for await (const e of await kv.history({ key: POLICY_KEY })) {
        const r = e.operation === "PUT" ? readPolicyEntry(e.value) : undefined;
        if (r?.ok === true) versions.push(r.entry.activation.payload.version);
      }
      expect(versions.length).toBeGreaterThanOrEqual(3);
      for (let i = 1; i < versions.length; i++) expect(versions[i]).toBeGreaterThan(versions[i - 1]!);
      const last = readPolicyEntry((await kv.get(POLICY_KEY))!.value);
      if (!last.ok) throw new Error(last.why);
      await until(() => gw.ledger.state.policy?.digest === last.entry.digest);
      expect([D2, D3]).toContain(last.entry.digest);
    } finally {
      await other.close();
    }
  });

  it("after the bucket is re-made, a fresh authority counts from its clock and is taken; one whose clock is behind is refused, and the newer policy stays", async () => {
    h = await startHarness({ gateway: { policyRecheckMs: 150 } });
    const gw = h.gateways[0]!;
    const held = gw.ledger.state.policyHigh!;
    const jsm = await jetstreamManager(h.runtime.nc);
    await jsm.streams.delete(`KV_${KV_BUCKETS.policy}`);
    await new Kvm(h.runtime.nc).create(KV_BUCKETS.policy, { history: 5 });
    const behind = await Authority.connect({ natsUrl: h.url, key: namedKey("authority"), clock: () => held.version - 60_000 });
    try {
      await behind.publishPolicy(P3);
      await until(() => h!.warnings.some((w) => /retired policy put back/.test(w)));
      // Never P3. Still P1, or withdrawn if a re-read found the new bucket still empty.
      expect([D1, undefined]).toContain(gw.ledger.state.policy?.digest);
      expect(gw.ledger.state.policyHigh).toEqual(held);
    } finally {
      await behind.close();
    }
    const fresh = await Authority.connect({ natsUrl: h.url, key: namedKey("authority") });
    try {
      await fresh.publishPolicy(P2);
      await until(() => gw.ledger.state.policy?.digest === D2);
      expect(gw.ledger.state.policyHigh!.version).toBeGreaterThan(held.version);
    } finally {
      await fresh.close();
    }
  });
});

describe("heartbeats announce the newest policy version: a gateway behind it denies", () => {
  it("a fresh gateway that finds a retired entry in the bucket denies until the authority publishes again", async () => {
    h = await startHarness({ gateways: 0 });
    const kv = await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value;
    await h.authority.publishPolicy(P2);
    await h.authority.heartbeat(); // announces P2's version
    await kv.put(POLICY_KEY, e1); // P1's entry put back before any gateway read the bucket

    const gw = await h.startGateway();
    gw.registerAction("transfer", () => ({ ok: true }));
    // The governance backlog is read before work is taken: the withdrawal is in place by then.
    expect(gw.ledger.state.policy).toBeUndefined();
    // The feed is read before the policy: P1's entry is refused outright, never in force.
    expect(h.warnings.some((w) => /policy entry refused: version \d+ is older than the version \d+ an authority's heartbeat announces/.test(w))).toBe(true);
    expect(await runUnder(h, P1)).toEqual({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
    await sleep(300);
    expect(gw.ledger.state.policy).toBeUndefined(); // re-reads find only the retired entry

    // The authority publishing P2 again (the bucket no longer holds it) signs it anew.
    await h.authority.publishPolicy(P2);
    await until(() => gw.ledger.state.policy?.digest === D2);
    expect(await runUnder(h, P2)).toEqual({ status: "succeeded" });
    expect(await runUnder(h, P1)).toEqual({ status: "denied", codes: ["POLICY_MISMATCH"] });
    expect((await replayGateway(gw)).divergences).toEqual([]);
  });

  it("in normal operation (policies published back to back, heartbeats every 20 ms) a gateway never withdraws", async () => {
    h = await startHarness({ heartbeatMs: 20 });
    const gw = h.gateways[0]!;
    gw.registerAction("transfer", () => ({ ok: true }));
    const docs = [P2, P3, P1, P2, P3, P1, P2, P3];
    for (const doc of docs) {
      await h.authority.publishPolicy(doc);
      await until(() => gw.ledger.state.policy?.digest === policyDigest(doc));
      expect(await runUnder(h, doc)).toEqual({ status: "succeeded" });
    }
    await sleep(200);
    expect(h.warnings.filter((w) => /withdraw|refused/.test(w))).toEqual([]);
    expect(gw.ledger.state.policyHigh?.digest).toBe(D3);
  });
});