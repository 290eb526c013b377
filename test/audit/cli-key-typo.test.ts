// Found by an operator's review: verify and replay took a --gateway-key (or a trust file's
// gatewayKeys / peerGateways entry) that is no key at all, then reported every checkpoint
// "untrusted" and the log as tampered with (exit 1). A mistyped key is the auditor's error: exit 2,
// naming it, as --authority already was. And a read-only tool given a path with no log there
// (a typo, or a gateway's data dir instead of its audit/ folder) left LevelDB's files behind.
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAudit } from "../../src/audit/cli.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, captureIo, outcomeEntry, storeOptions, tempDir } from "./support.ts";

describe("audit verify and replay with a key that is not one, or a path with no log", () => {
  const t = tempDir("fc-keytypo-");
  const data = join(t.dir, "gw");
  const db = join(data, "audit");
  beforeAll(async () => {
    const store = await AuditStore.open(db, storeOptions({ checkpointEvery: 4 }));
    for (let i = 0; i < 10; i++) await store.append(outcomeEntry(i));
    await store.close();
  });
  afterAll(() => t.cleanup());

  it("the right key verifies (exit 0)", async () => {
    const io = captureIo();
    expect(await runAudit(["verify", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId], io), io.stdout() + io.stderr()).toBe(0);
  });

  it.each(["verify", "replay"])("%s --gateway-key notakey is a usage error (exit 2) naming it, not tampering (exit 1)", async (cmd) => {
    const io = captureIo();
    expect(await runAudit([cmd, "--db", db, "--gateway-key", "notakey", "--authority", AUTHORITY_KEY.keyId], io)).toBe(2);
    expect(io.stderr()).toContain('--gateway-key "notakey" is not a base64url Ed25519 public key');
    expect(io.stdout()).not.toContain("DIVERGENCE");
  });

  it.each([
    ["gatewayKeys", { gatewayKeys: ["notakey"], authorities: [AUTHORITY_KEY.keyId] }],
    ["peerGateways", { gatewayKeys: [GATEWAY_KEY.keyId], peerGateways: ["notakey"], authorities: [AUTHORITY_KEY.keyId] }],
  ])("a trust file whose %s names no key is a usage error (exit 2)", async (_, trust) => {
    const file = join(t.dir, `trust-${_}.json`);
    writeFileSync(file, JSON.stringify(trust));
    const io = captureIo();
    expect(await runAudit(["verify", "--db", db, "--trust", file], io)).toBe(2);
    expect(io.stderr()).toContain('"notakey" is not a base64url Ed25519 public key');
  });

  it("a path with no log is exit 2 and leaves nothing; a gateway's data dir is pointed to its audit/ folder", async () => {
    const missing = join(t.dir, "nonexist");
    const io = captureIo();
    expect(await runAudit(["verify", "--db", missing, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId], io)).toBe(2);
    expect(existsSync(missing)).toBe(false);
    const io2 = captureIo();
    expect(await runAudit(["replay", "--db", data, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId], io2)).toBe(2);
    expect(io2.stderr()).toContain(db);
    expect(readdirSync(data)).toEqual(["audit"]);
  });

  it("witness --cycles without --follow is a usage error (exit 2), not ignored", async () => {
    const io = captureIo();
    expect(await runAudit(["witness", "--nats", "nats://127.0.0.1:1", "--gateway-id", "gw-1", "--gateway-key", GATEWAY_KEY.keyId, "--cycles", "2"], io)).toBe(2);
    expect(io.stderr()).toContain("--cycles goes with --follow");
  });
});
