// Hostile bytes on the evidence stream (failclosed.evidence.<taskId>.artifact|lineage): junk on a
// task's own subjects denies that task MALFORMED (DESIGN §6), evidence signed for another context
// or by the wrong key never passes, evidence for other task ids is not taken, and floods neither
// stop the gateway nor let anything through. Every test ends with a clean replay.
import { describe, expect, it } from "vitest";
import { issueArtifact, originLineage } from "../../src/core/artifacts.ts";
import type { SignedArtifact, SignedLineage } from "../../src/core/types.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { EVIDENCE_LIMITS } from "../../src/gateway/evidence-index.ts";
import { MAX_MESSAGE_BYTES, SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";
import { transferRequest } from "./client-support.ts";
import { agent, authorityKey, expectDenied, expectLogClean, expectValidTaskRuns, grant, hostileWorld, outcomeOf, publishRaw } from "./hostile-ingest-support.ts";

const world = hostileWorld();
let n = 0;

/** A root artifact and its origin lineage, not yet published (the harness authority's key). */
function root(taskId: string, metadata: Record<string, string> = {}, issuer = authorityKey): { artifact: SignedArtifact; lineage: SignedLineage } {
  const now = Date.now();
  const artifact = issueArtifact(issuer, {
    holder: agent.keyId,
    scope: DEFAULT_SCOPE,
    validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 },
    nonce: namedNonce(`hostile-evidence-${n++}-${taskId}`),
    policy: { id: DEFAULT_POLICY.id, digest: policyDigest(DEFAULT_POLICY) },
    attribution: { initiator: "t", reason: "hostile evidence" },
    metadata,
  });
  return { artifact, lineage: originLineage(issuer, { childTaskId: taskId, childArtifact: artifact, emittedAt: now }) };
}

const submit = (taskId: string, artifact: SignedArtifact) => {
  const args = { amount: 1 };
  return JSON.stringify({ request: transferRequest(taskId, artifact, args, agent, 60_000), args });
};

describe("hostile evidence", () => {
  it("junk on a task's own artifact or lineage subject denies that task MALFORMED", async () => {
    const w = world();
    const sample = root("sample");
    const junk: [string, string][] = [
      ["not JSON", "{"],
      ["duplicate keys", '{"payload":{"a":1,"a":2},"sig":"x"}'],
      ["lone surrogate", '{"payload":{"kind":"\\ud800"},"sig":"x"}'],
      ["huge number", '{"payload":{"depth":1e400},"sig":"x"}'],
      ["unsafe integer", '{"payload":{"depth":9007199254740993},"sig":"x"}'],
      ["deep nesting", `{"payload":${"[".repeat(70)}${"]".repeat(70)},"sig":"x"}`],
      ["__proto__", '{"payload":{"__proto__":{}},"sig":"x"}'],
      ["an array", "[]"],
      ["wrong types", '{"payload":"x","sig":1}'],
      ["no signature", JSON.stringify({ payload: sample.artifact.payload })],
      ["an extra member in a signed payload", JSON.stringify({ payload: { ...sample.artifact.payload, extra: 1 }, sig: sample.artifact.sig })],
      ["an extra member beside it", JSON.stringify({ ...sample.artifact, extra: 1 })],
      ["another kind label", JSON.stringify({ payload: { ...sample.artifact.payload, kind: "failclosed/lineage/v1" }, sig: sample.artifact.sig })],
    ];
    for (const kind of ["artifact", "lineage"] as const) {
      for (const [what, bytes] of junk) {
        const taskId = newTaskId();
        const { artifact, lineage } = root(taskId);
        await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(lineage));
        await publishRaw(w, kind === "artifact" ? SUBJECTS.artifact(taskId) : SUBJECTS.lineage(taskId), bytes);
        await publishRaw(w, SUBJECTS.artifact(taskId), JSON.stringify(artifact));
        await publishRaw(w, SUBJECTS.taskSubmit, submit(taskId, artifact));
        const o = await expectDenied(w, taskId, "MALFORMED");
        expect(o.codes, `${kind}: ${what}`).toContain("MALFORMED");
      }
    }
    // The wrong kind of evidence on a subject: a lineage event as an artifact, an artifact as lineage.
    for (const swap of ["lineage-as-artifact", "artifact-as-lineage"] as const) {
      const taskId = newTaskId();
      const { artifact, lineage } = root(taskId);
      await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(lineage));
      if (swap === "lineage-as-artifact") await publishRaw(w, SUBJECTS.artifact(taskId), JSON.stringify(lineage));
      else await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(artifact));
      await publishRaw(w, SUBJECTS.artifact(taskId), JSON.stringify(artifact));
      await publishRaw(w, SUBJECTS.taskSubmit, submit(taskId, artifact));
      await expectDenied(w, taskId, "MALFORMED");
    }
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("size: an artifact just under and at 64 KiB is read (canonical or not); one byte over is refused by the stream and the task is NO_ARTIFACT", async () => {
    const w = world();
    /** An artifact whose JSON is exactly `size` bytes (padded in its signed metadata). */
    const sized = (taskId: string, size: number) => {
      const base = root(taskId, { pad: "" });
      const grow = size - JSON.stringify(base.artifact).length;
      return root(taskId, { pad: "x".repeat(grow) });
    };
    for (const size of [MAX_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES]) {
      const taskId = newTaskId();
      const { artifact, lineage } = sized(taskId, size);
      expect(JSON.stringify(artifact).length).toBe(size);
      await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(lineage));
      expect(await publishRaw(w, SUBJECTS.artifact(taskId), JSON.stringify(artifact))).not.toBeInstanceOf(Error);
      await publishRaw(w, SUBJECTS.taskSubmit, submit(taskId, artifact));
      expect(await outcomeOf(w, taskId), `artifact of ${size} bytes`).toMatchObject({ verdict: "allow", status: "succeeded" });
      w.expected.set(taskId, { verdict: "allow" });
    }
    // Not canonical: members reversed and whitespace, to the limit. The signature is over the
    // canonical form of the payload, so it is the same artifact.
    {
      const taskId = newTaskId();
      const { artifact, lineage } = root(taskId);
      const text = JSON.stringify({ sig: artifact.sig, payload: Object.fromEntries(Object.entries(artifact.payload).reverse()) }, null, 2);
      const padded = `${text.slice(0, -1)}${" ".repeat(MAX_MESSAGE_BYTES - Buffer.byteLength(text))}}`;
      await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(lineage));
      expect(await publishRaw(w, SUBJECTS.artifact(taskId), padded)).not.toBeInstanceOf(Error);
      await publishRaw(w, SUBJECTS.taskSubmit, submit(taskId, artifact));
      expect(await outcomeOf(w, taskId)).toMatchObject({ verdict: "allow", status: "succeeded" });
      w.expected.set(taskId, { verdict: "allow" });
    }
    const taskId = newTaskId();
    const { artifact, lineage } = sized(taskId, MAX_MESSAGE_BYTES + 1);
    await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(lineage));
    expect(await publishRaw(w, SUBJECTS.artifact(taskId), JSON.stringify(artifact))).toBeInstanceOf(Error);
    await publishRaw(w, SUBJECTS.taskSubmit, submit(taskId, artifact));
    await expectDenied(w, taskId, "NO_ARTIFACT");
    await expectLogClean(w);
  });

  it("evidence signed for another context, or by the wrong key, never passes", async () => {
    const w = world();
    const cases: [string, (taskId: string) => { artifact: SignedArtifact; lineage: unknown }, string][] = [
      // The authority's signature over the artifact payload, under the lineage domain tag.
      ["artifact signed as lineage", (t) => {
        const r = root(t);
        return { artifact: signPayload("lineage", r.artifact.payload, authorityKey), lineage: originLineage(authorityKey, { childTaskId: t, childArtifact: r.artifact, emittedAt: Date.now() }) };
      }, "BAD_SIGNATURE"],
      ["artifact signed as a revocation", (t) => {
        const r = root(t);
        return { artifact: signPayload("revocation", r.artifact.payload, authorityKey), lineage: r.lineage };
      }, "BAD_SIGNATURE"],
      // The origin lineage payload signed under the artifact domain tag.
      ["lineage signed as artifact", (t) => {
        const r = root(t);
        return { artifact: r.artifact, lineage: signPayload("artifact", r.lineage.payload, authorityKey) };
      }, "LINEAGE_BROKEN"],
      ["artifact by an untrusted issuer", (t) => root(t, {}, namedKey("rogue-authority")), "UNTRUSTED_ISSUER"],
      ["origin lineage signed by the holder", (t) => {
        const r = root(t);
        return { artifact: r.artifact, lineage: originLineage(agent, { childTaskId: t, childArtifact: r.artifact, emittedAt: Date.now() }) };
      }, "LINEAGE_BROKEN"],
    ];
    for (const [what, make, code] of cases) {
      const taskId = newTaskId();
      const { artifact, lineage } = make(taskId);
      await publishRaw(w, SUBJECTS.lineage(taskId), JSON.stringify(lineage));
      await publishRaw(w, SUBJECTS.artifact(taskId), JSON.stringify(artifact));
      await publishRaw(w, SUBJECTS.taskSubmit, submit(taskId, artifact));
      const o = await outcomeOf(w, taskId);
      expect(o?.verdict, what).toBe("deny");
      expect(o?.codes.includes(code as never) || o?.codes.includes("BAD_SIGNATURE"), `${what}: ${JSON.stringify(o?.codes)}`).toBe(true);
      expect(w.ran).not.toContain(taskId);
      w.expected.set(taskId, { verdict: "deny" });
    }
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("floods: over a task's item limit is MALFORMED; thousands of junk messages across task ids and stray subjects leave valid tasks running", async () => {
    const w = world();
    // One task buried in distinct, schema-valid artifacts.
    const buried = newTaskId();
    const { artifact } = await grant(w, buried);
    const pubs: Promise<unknown>[] = [];
    for (let i = 0; i <= EVIDENCE_LIMITS.perTaskItems; i++) pubs.push(publishRaw(w, SUBJECTS.artifact(buried), JSON.stringify(root(buried).artifact)));
    await Promise.all(pubs);
    await publishRaw(w, SUBJECTS.artifact(buried), JSON.stringify(artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, submit(buried, artifact));
    await expectDenied(w, buried, "MALFORMED");
    // Thousands of small junk messages: each its own task id, and subjects that name no task.
    const subjects = (i: number): string =>
      i % 4 === 0 ? `failclosed.evidence.flood-${i}.artifact` : i % 4 === 1 ? `failclosed.evidence.flood-${i}.lineage` : i % 4 === 2 ? `failclosed.evidence.a.b.artifact` : `failclosed.evidence.flood-${i}.other`;
    for (let batch = 0; batch < 20; batch++) {
      const b: Promise<unknown>[] = [];
      for (let i = batch * 250; i < (batch + 1) * 250; i++) b.push(publishRaw(w, subjects(i), i % 3 === 0 ? "{" : '{"payload":{},"sig":"x"}'));
      await Promise.all(b);
    }
    await expectValidTaskRuns(w);
    // A task whose id a flood message named is still denied only for what it has: the junk.
    const flooded = "flood-4";
    const r = root(flooded);
    await publishRaw(w, SUBJECTS.lineage(flooded), JSON.stringify(r.lineage));
    await publishRaw(w, SUBJECTS.artifact(flooded), JSON.stringify(r.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, submit(flooded, r.artifact));
    await expectDenied(w, flooded, "MALFORMED");
    await expectLogClean(w);
  }, 60_000);
});
