// The `malformed` tamper's bytes, held to the gateway's own readers: each is refused as the
// scenario says (26-denied-malformed runs them end to end), and only for the reason it names.
import { describe, expect, it } from "vitest";
import { tryParseStrict } from "../../src/canonical/strict-parse.ts";
import { issueArtifact, signRequest } from "../../src/core/artifacts.ts";
import { check, signedArtifactSchema, signedRequestSchema } from "../../src/core/schema.ts";
import { verifySigned } from "../../src/crypto/signing.ts";
import { fromB64u } from "../../src/crypto/base64url.ts";
import { EvidenceIndex } from "../../src/gateway/evidence-index.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { duplicateKeyMessage, wrongKindRequest } from "../../src/sim/malformed.ts";

const T0 = Date.parse("2027-01-15T08:00:00Z");
const authority = namedKey("malformed-test/authority");
const agent = namedKey("malformed-test/agent");
const artifact = issueArtifact(authority, {
  holder: agent.keyId,
  scope: { actions: ["read"], resources: ["r/"], constraints: {} },
  bindings: {},
  validity: { notBefore: T0, expiresAt: T0 + 3_600_000 },
  nonce: namedNonce("malformed-test/nonce"),
  policy: { id: DEFAULT_POLICY.id, digest: policyDigest(DEFAULT_POLICY) },
  attribution: { initiator: "test", reason: "malformed tamper" },
  metadata: {},
});
const key = (k: { keyId: string }) => fromB64u(k.keyId, 32)!;

describe("malformed: duplicate-key", () => {
  const msg = duplicateKeyMessage(artifact);
  it("is the genuine artifact to a lenient reader, and refused by the strict one", () => {
    expect(JSON.parse(msg)).toEqual(artifact);
    const r = tryParseStrict(new TextEncoder().encode(msg));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("DUPLICATE_KEY");
  });
  it("leaves the gateway's evidence index an intake error for the task, and no artifact", () => {
    const index = new EvidenceIndex(() => T0);
    index.add(SUBJECTS.artifact("t-1"), new TextEncoder().encode(msg));
    const a = index.assemble("t-1", "anything");
    expect(a.chain).toEqual([]);
    expect(a.intakeErrors).toEqual([expect.stringContaining("DUPLICATE_KEY")]);
  });
});

describe("malformed: wrong-kind", () => {
  const request = signRequest(agent, { taskId: "t-2", action: "read", resource: "r/x", args: {}, artifact, createdAt: T0 });
  const wrong = wrongKindRequest(request, agent);
  it("keeps a valid signature by the agent, and only the kind changes", () => {
    expect(verifySigned("request", wrong, key(agent))).toBe(true);
    expect({ ...wrong.payload, kind: request.payload.kind }).toEqual(request.payload);
  });
  it("is schema-invalid as a request, and is not an artifact either", () => {
    expect(check(signedRequestSchema, request).ok).toBe(true);
    expect(check(signedRequestSchema, wrong).ok).toBe(false);
    expect(check(signedArtifactSchema, wrong).ok).toBe(false);
  });
});
