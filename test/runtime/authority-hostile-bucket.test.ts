// Hostile entries in the policy bucket an authority follows (failclosed_policy, key `active`): junk,
// entries signed by other keys (within the clock lead, far ahead, at the highest version), the
// authority's own past entries replayed, floods that push its entries out of the 5-entry history,
// delete and purge markers. The authority must announce only what its key activated, keep
// heartbeating, sign its next version within the clock lead, and leave gateways serving except
// where the README's threat table says they deny.
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { MAX_POLICY_VERSION } from "../../src/core/schema.ts";
import { POLICY_ACTIVATION_KIND } from "../../src/core/types.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { KV_BUCKETS, POLICY_KEY } from "../../src/nats/contract.ts";
import { policyEntryText, signActivation } from "../../src/policy/activation.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { grantFrom, grantRoot, transfer } from "../gateway/client-support.ts";
import { authorityKey, eventually, expectAuthorityHonest, expectValidTaskRuns, publishRaw, rogue, sleep, worldPerTest } from "./authority-hostile-support.ts";

const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };
const P3: PolicyDocument = { ...DEFAULT_POLICY, id: "default-3", version: "3" };
const D1 = policyDigest(DEFAULT_POLICY);
const world = worldPerTest();
const subject = `$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`;

describe("hostile entries in the policy bucket", () => {
  it("junk, other keys' entries, its own past entries and a flood out of the history raise nothing it announces; its next version stays within the clock lead", async () => {
    const w = await world();
    const kv = await new Kvm(w.h.runtime.nc).open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.string(); // its own, about to be retired
    await w.h.authority.publishPolicy(P2);
    const v2 = w.h.authority.policyVersion;
    const now = Date.now();
    const forgedOwn = { kind: POLICY_ACTIVATION_KIND, issuer: authorityKey.keyId, policyId: DEFAULT_POLICY.id, policyDigest: D1, version: MAX_POLICY_VERSION, issuedAt: now };
    const entries: [string, string][] = [
      ["not JSON", "{"],
      ["empty", ""],
      ["duplicate keys", `{"digest":"${D1}","digest":"x"}`],
      ["over 64 KiB", JSON.stringify({ pad: "x".repeat(70 * 1024) })],
      ["unsigned", JSON.stringify({ digest: D1, document: DEFAULT_POLICY })],
      ["the authority named, an untrusted key's signature, at the highest version", JSON.stringify({ activation: signPayload("policy", forgedOwn, rogue), digest: D1, document: DEFAULT_POLICY })],
      ["the authority's key over it, signed as a heartbeat", JSON.stringify({ activation: signPayload("heartbeat", forgedOwn, authorityKey), digest: D1, document: DEFAULT_POLICY })],
      ["an untrusted key's, at the highest version", policyEntryText(DEFAULT_POLICY, signActivation(rogue, DEFAULT_POLICY, MAX_POLICY_VERSION, now))],
      ["an untrusted key's, a day ahead", policyEntryText(DEFAULT_POLICY, signActivation(rogue, DEFAULT_POLICY, now + 86_400_000, now))],
      ["an untrusted key's, within the clock lead", policyEntryText(P3, signActivation(rogue, P3, now + 3_000, now))],
      ["its own retired entry, replayed", e1],
    ];
    for (const [what, bytes] of entries) expect(await publishRaw(w, subject, bytes), what).not.toBeInstanceOf(Error);
    // And a flood that leaves none of its entries in the 5-entry history.
    for (let i = 0; i < 6; i++) await publishRaw(w, subject, policyEntryText(DEFAULT_POLICY, signActivation(rogue, DEFAULT_POLICY, MAX_POLICY_VERSION - i, now)));
    await sleep(600);
    expect(w.gw.ledger.state.policy?.digest).toBe(policyDigest(P2));
    await expectAuthorityHonest(w, { policyVersion: v2, revocations: 0 });
    await expectValidTaskRuns(w, "after the hostile entries");
    // Its next publish counts past its own and the lead, not past any untrusted key's far version.
    await w.h.authority.publishPolicy(P3);
    const v3 = w.h.authority.policyVersion;
    expect(v3).toBeGreaterThan(v2);
    expect(v3).toBeLessThanOrEqual(Date.now() + 5_000 + 1);
    expect(await eventually(() => w.gw.ledger.state.policyHigh?.version === v3)).toBe(true);
    await expectAuthorityHonest(w, { policyVersion: v3, revocations: 0 });
    await expectValidTaskRuns(w, "under the next policy");
  });

  it("a restart after the history was flooded: the authority announces no version it cannot vouch for, and running gateways keep serving", async () => {
    const w = await world();
    const v1 = w.h.authority.policyVersion;
    for (let i = 0; i < 6; i++) await publishRaw(w, subject, `junk ${i}`);
    await w.h.authority.close();
    const again = await Authority.connect({ natsUrl: w.h.url, key: authorityKey });
    try {
      await again.startHeartbeats(200);
      // ⚠ in the README: it announces only what it publishes again.
      expect(again.policyVersion).toBe(0);
      await sleep(600);
      const taskId = newTaskId();
      const o = await transfer(w.h, taskId, await grantFrom(again, taskId, DEFAULT_POLICY));
      expect(o).toMatchObject({ verdict: "allow", status: "succeeded" });
      await again.publishPolicy(P2);
      expect(again.policyVersion).toBeGreaterThan(v1);
      expect(await eventually(() => w.gw.ledger.state.policy?.digest === policyDigest(P2))).toBe(true);
    } finally {
      await again.close();
    }
  });

  it("a delete or purge marker on the entry: the authority's announcements and heartbeats are unchanged, and the threat table names what gateways do", async () => {
    const w = await world();
    for (const hdrs of [{ "KV-Operation": "DEL" }, { "KV-Operation": "PURGE", "Nats-Rollup": "sub" }]) {
      const v = w.h.authority.policyVersion;
      expect(await publishRaw(w, subject, "", hdrs)).not.toBeInstanceOf(Error);
      await sleep(300);
      await expectAuthorityHonest(w, { policyVersion: v, revocations: 0 });
      // Every running gateway withdraws its policy (a delete is unsigned), says so, and denies every task...
      expect(await eventually(() => w.gw.ledger.state.policy === undefined)).toBe(true);
      const said = hdrs["KV-Operation"] === "DEL" ? "deleted" : "purged";
      expect(w.h.warnings.some((m) => m.includes(`the policy bucket's entry was ${said}: withdrawing the policy`))).toBe(true);
      const taskId = newTaskId();
      expect(await transfer(w.h, taskId, await grantRoot(w.h, taskId))).toMatchObject({ verdict: "deny", codes: ["GOVERNANCE_UNAVAILABLE"] });
      // ...and the running authority does not put its entry back on its own: only a publish does.
      expect(w.gw.ledger.state.policy).toBeUndefined();
      await w.h.authority.publishPolicy(DEFAULT_POLICY);
      expect(await eventually(() => w.gw.ledger.state.policy?.digest === D1)).toBe(true);
      await expectValidTaskRuns(w, "after the authority published again");
    }
    // That denial of service (every running gateway, not only one starting) must be in the README's
    // threat table, as the bucket's deletion and junk on top are. (Failed before: no row named a
    // delete or purge of the policy entry.)
    const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
    const rows = readme.split("\n").filter((l) => l.startsWith("| ") && /failclosed_policy|policy (bucket|entry)/.test(l));
    expect(rows.some((r) => /(delete|purge)[^|]*(policy entry|`active`)|(policy entry|`active`)[^|]*(delete|purge)/i.test(r)), "a threat-table row for a delete or purge of the policy entry").toBe(true);
  });
});
