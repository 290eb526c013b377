// `audit prove` hands out bundles a third party can check: records nest deeper in the log than
// on the wire, and verifyProofBundle reads them with the log's own limits.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runAudit } from "../../src/audit/cli.ts";
import { verifyProofBundle } from "../../src/audit/proof-bundle.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { canonicalBytes, type JsonValue } from "../../src/canonical/jcs.ts";
import { tryParseStrict } from "../../src/canonical/strict-parse.ts";
import { MAX_MESSAGE_BYTES } from "../../src/nats/contract.ts";
import { captureIo, GATEWAY_KEY, storeOptions, tempDir } from "./support.ts";
import { makeArtifact } from "./scenario.ts";
import { issueArtifact } from "../../src/core/artifacts.ts";
import { AUTHORITY_KEY } from "./support.ts";


describe("prove bundles a third party can check", () => {
  const t = tempDir("fc-prove-");
  afterAll(() => t.cleanup());

  it("an artifact the gateway's intake accepts (depth 64) is recorded as evidence; its proof bundle verifies", async () => {
    const now = 1_700_000_000_000;
    const base = makeArtifact(0, now);
    // metadata nested as deep as the wire limit lets the whole message be.
    let deep: JsonValue = 1;
    for (let i = 0; i < 61; i++) deep = { d: deep };
    const artifact = issueArtifact(AUTHORITY_KEY, {
      holder: base.payload.holder,
      scope: base.payload.scope,
      validity: base.payload.validity,
      nonce: base.payload.nonce,
      policy: base.payload.policy,
      attribution: base.payload.attribution,
      metadata: { m: deep },
    });
    // The gateway's evidence intake (evidence-index.ts) parses with these options: accepted.
    expect(tryParseStrict(canonicalBytes(artifact), { maxBytes: MAX_MESSAGE_BYTES }).ok).toBe(true);
    const db = join(t.dir, "db");
    const store = await AuditStore.open(db, storeOptions());
    const r = await store.append({ type: "evidence", taskId: "task-0", kind: "artifact", signed: artifact as never });
    await store.checkpoint();
    await store.close();
    const io = captureIo();
    expect(await runAudit(["prove", "--db", db, "--seq", String(r.seq)], io)).toBe(0);
    expect(verifyProofBundle(JSON.parse(io.stdout()), [GATEWAY_KEY.keyId])).toEqual({ ok: true });
  });
});
