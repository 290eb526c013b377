// Signed policy entries (policy/activation.ts): what a gateway reads from the policy bucket, what
// it takes, and what an auditor's replay holds the log's activations to.
import { describe, expect, it } from "vitest";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { MemoryBackend, LevelBackend } from "../../src/audit/backend.ts";
import { fold } from "../../src/audit/fold.ts";
import { decodeState, encodeState, sealState } from "../../src/audit/fold-snapshot.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { MAX_POLICY_VERSION, judgeActivation, nextPolicyVersion, policyEntryText, readPolicyEntry, signActivation, type SignedPolicyActivation } from "../../src/policy/activation.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest, type PolicyDocument } from "../../src/policy/policy-document.ts";
import { readRecords } from "../audit/tamper.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, ROGUE_KEY, storeOptions, tempDir } from "../audit/support.ts";
import { scenarioTrustRoots } from "../audit/scenario.ts";

const P1 = DEFAULT_POLICY;
const P2: PolicyDocument = { ...DEFAULT_POLICY, version: "2" };
const D1 = policyDigest(P1);
const D2 = policyDigest(P2);
const T = 1_700_000_000_000;
const trustAll = { isAuthority: (k: string) => k === AUTHORITY_KEY.keyId, isRevokedKey: () => false };

describe("readPolicyEntry: only an exact, self-consistent, signed entry", () => {
  const good = policyEntryText(P1, signActivation(AUTHORITY_KEY, P1, 5, T));

  it("reads what an authority writes", () => {
    const r = readPolicyEntry(good);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.entry.digest).toBe(D1);
    expect(r.entry.activation.payload).toMatchObject({ issuer: AUTHORITY_KEY.keyId, policyDigest: D1, policyId: P1.id, version: 5, issuedAt: T });
  });

  const refused: [string, string | Uint8Array, RegExp][] = [
    ["an unsigned entry (an older authority's, or forged)", JSON.stringify({ digest: D1, document: P1 }), /not signed/],
    ["an extra member", JSON.stringify({ ...(JSON.parse(good) as object), note: 1 }), /unexpected members/],
    ["a duplicate key", good.replace('{"activation"', `{"digest":"${D1}","activation"`), /not strict JSON \(DUPLICATE_KEY\)/],
    ["not JSON", "{", /not strict JSON/],
    ["an array", "[]", /not a JSON object/],
    ["a digest that is not the document's", JSON.stringify({ ...(JSON.parse(good) as object), digest: D2 }), /not the document's/],
    ["a document that is not a policy document", JSON.stringify({ ...(JSON.parse(good) as object), document: { ...P1, extra: 1 } }), /not a policy document/],
    ["an activation for another document", JSON.stringify({ activation: signActivation(AUTHORITY_KEY, P2, 5, T), digest: D1, document: P1 }), /names another document/],
    ["a version beyond the bound", JSON.stringify({ activation: signPayload("policy", { ...signActivation(AUTHORITY_KEY, P1, 5, T).payload, version: MAX_POLICY_VERSION + 1 }, AUTHORITY_KEY), digest: D1, document: P1 }), /activation malformed/],
    ["a version of 0", JSON.stringify({ activation: signPayload("policy", { ...signActivation(AUTHORITY_KEY, P1, 5, T).payload, version: 0 }, AUTHORITY_KEY), digest: D1, document: P1 }), /activation malformed/],
    ["a signature by a key other than the issuer's", JSON.stringify({ activation: signPayload("policy", signActivation(AUTHORITY_KEY, P1, 5, T).payload, ROGUE_KEY), digest: D1, document: P1 }), /does not verify/],
    ["a signature of another kind (a heartbeat tag)", JSON.stringify({ activation: signPayload("heartbeat", signActivation(AUTHORITY_KEY, P1, 5, T).payload, AUTHORITY_KEY), digest: D1, document: P1 }), /does not verify/],
    ["a version edited after signing", good.replace('"version":5', '"version":6'), /does not verify/],
  ];
  it.each(refused)("refuses %s", (_what, text, why) => {
    const r = readPolicyEntry(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.why).toMatch(why);
  });

  it("signActivation refuses a version a gateway would refuse", () => {
    for (const v of [0, -1, 1.5, MAX_POLICY_VERSION + 1, Number.NaN]) expect(() => signActivation(AUTHORITY_KEY, P1, v, T)).toThrow(RangeError);
  });
});

describe("judgeActivation: a trusted authority's, and only upwards", () => {
  const act = (key = AUTHORITY_KEY, doc = P1, v = 5): SignedPolicyActivation => signActivation(key, doc, v, T);
  it("takes the first, and higher versions after it", () => {
    expect(judgeActivation(act().payload, undefined, undefined, trustAll)).toEqual({ take: true });
    expect(judgeActivation(act(AUTHORITY_KEY, P2, 6).payload, { version: 5, digest: D1 }, D1, trustAll)).toEqual({ take: true });
  });
  it("refuses an untrusted or revoked signer, whatever the version", () => {
    expect(judgeActivation(act(ROGUE_KEY, P2, 99).payload, { version: 5, digest: D1 }, D1, trustAll)).toMatchObject({ take: false, same: false, why: expect.stringMatching(/not a trusted authority/) as unknown });
    expect(judgeActivation(act(AUTHORITY_KEY, P2, 99).payload, { version: 5, digest: D1 }, D1, { ...trustAll, isRevokedKey: () => true })).toMatchObject({ take: false, why: expect.stringMatching(/revoked key/) as unknown });
  });
  it("refuses a rollback and an equivocation; the activation in force again is a no-op, and is taken again after a withdrawal", () => {
    expect(judgeActivation(act(AUTHORITY_KEY, P1, 4).payload, { version: 5, digest: D2 }, D2, trustAll)).toMatchObject({ take: false, why: expect.stringMatching(/retired policy put back/) as unknown });
    expect(judgeActivation(act(AUTHORITY_KEY, P1, 5).payload, { version: 5, digest: D2 }, D2, trustAll)).toMatchObject({ take: false, why: expect.stringMatching(/two policies under one version/) as unknown });
    expect(judgeActivation(act(AUTHORITY_KEY, P1, 5).payload, { version: 5, digest: D1 }, D1, trustAll)).toEqual({ take: false, same: true });
    expect(judgeActivation(act(AUTHORITY_KEY, P1, 5).payload, { version: 5, digest: D1 }, undefined, trustAll)).toEqual({ take: true });
    // After a withdrawal, an older one still is not.
    expect(judgeActivation(act(AUTHORITY_KEY, P2, 4).payload, { version: 5, digest: D1 }, undefined, trustAll)).toMatchObject({ take: false });
  });
  it("nextPolicyVersion counts past what it saw and at least to the time", () => {
    expect(nextPolicyVersion(0, T)).toBe(T);
    expect(nextPolicyVersion(T + 10, T)).toBe(T + 11);
    expect(nextPolicyVersion(3, 0)).toBe(4);
    expect(() => nextPolicyVersion(MAX_POLICY_VERSION, T)).toThrow(RangeError);
  });
});

describe("the log keeps the newest activation; replay holds activations to it", () => {
  const activate = (doc: PolicyDocument, activation?: SignedPolicyActivation) =>
    ({ type: "trust", change: { op: "policy.activate", policyDigest: policyDigest(doc), document: doc as unknown as JsonValue, ...(activation ? { activation } : {}) } }) as const;

  it("a genuine sequence (legacy, signed, withdrawn, signed again) replays clean and folds to the newest; a snapshot carries it", async () => {
    const { dir, cleanup } = tempDir();
    try {
      const store = await AuditStore.open(await LevelBackend.open(dir), storeOptions({ checkpointEvery: 4 }));
      await store.append({ type: "trust", change: { op: "authority.add", keyId: AUTHORITY_KEY.keyId } });
      await store.append({ type: "trust", change: { op: "gateway.add", keyId: GATEWAY_KEY.keyId } });
      await store.append(activate(P1)); // a log from before signed entries
      await store.append(activate(P1, signActivation(AUTHORITY_KEY, P1, 7, T)));
      await store.append({ type: "trust", change: { op: "policy.withdraw" } });
      await store.append(activate(P1, signActivation(AUTHORITY_KEY, P1, 7, T))); // the same again after a withdrawal
      await store.append(activate(P2, signActivation(AUTHORITY_KEY, P2, 9, T)));
      await store.checkpoint();
      const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots());
      expect(rep.divergences).toEqual([]);
      const state = fold(await readRecords(store.backend));
      expect(state.policyHigh).toEqual({ version: 9, digest: D2, issuer: AUTHORITY_KEY.keyId });
      expect(state.policy?.digest).toBe(D2);
      const back = decodeState(sealState(encodeState(state), state.size, undefined), state.window);
      expect(back.policyHigh).toEqual({ version: 9, digest: D2, issuer: AUTHORITY_KEY.keyId });
      await store.close();
    } finally {
      cleanup();
    }
  });

  const forged: [string, (typeof activate extends (...a: never[]) => infer R ? R : never)[], RegExp][] = [
    ["a rollback", [activate(P2, signActivation(AUTHORITY_KEY, P2, 9, T)), activate(P1, signActivation(AUTHORITY_KEY, P1, 8, T))], /retired policy put back/],
    ["an equivocation", [activate(P2, signActivation(AUTHORITY_KEY, P2, 9, T)), activate(P1, signActivation(AUTHORITY_KEY, P1, 9, T))], /two policies under one version/],
    ["an activation by a key the log does not trust", [activate(P2, signActivation(ROGUE_KEY, P2, 9, T))], /not a trusted authority/],
    ["an unsigned activation after signed ones", [activate(P2, signActivation(AUTHORITY_KEY, P2, 9, T)), activate(P1)], /unsigned policy activation after signed ones/],
    ["a forged signature", [activate(P2, { ...signActivation(AUTHORITY_KEY, P2, 9, T), sig: signActivation(AUTHORITY_KEY, P2, 10, T).sig })], /signature does not verify/],
  ];
  it.each(forged)("replay reports %s as POLICY_UNVERIFIED at its seq", async (_what, entries, why) => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions({ checkpointEvery: 4 }));
    await store.append({ type: "trust", change: { op: "authority.add", keyId: AUTHORITY_KEY.keyId } });
    await store.append({ type: "trust", change: { op: "gateway.add", keyId: GATEWAY_KEY.keyId } });
    let last = -1;
    for (const e of entries) last = (await store.append(e)).seq;
    await store.checkpoint();
    const rep = await replay(backendLogSource(store.backend), scenarioTrustRoots());
    await store.close();
    expect(rep.ok).toBe(false);
    expect(rep.divergences.map((d) => [d.seq, d.kind])).toEqual([[last, "POLICY_UNVERIFIED"]]);
    expect(rep.divergences[0]!.detail).toMatch(why);
  });

  it("the store refuses an activation record whose activation names another policy", async () => {
    const store = await AuditStore.open(new MemoryBackend(), storeOptions());
    await expect(store.append({ type: "trust", change: { op: "policy.activate", policyDigest: D1, document: P1 as unknown as JsonValue, activation: signActivation(AUTHORITY_KEY, P2, 3, T) } })).rejects.toThrow(/trust\.activation/);
    await store.close();
  });
});
