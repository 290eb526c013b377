import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { verifyProofBundle } from "../../src/audit/proof-bundle.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { scenarioTrustRoots, writeScenario } from "./scenario.ts";
import { AUTHORITY_KEY, captureIo, GATEWAY_KEY, ROGUE_KEY, storeOptions, tempDir } from "./support.ts";
import { flipBit } from "./tamper.ts";


describe("failclosed audit CLI", () => {
  const t = tempDir("fc-cli-");
  const db = join(t.dir, "db");
  const trustFile = join(t.dir, "trust.json");
  beforeAll(async () => {
    const store = await AuditStore.open(db, storeOptions({ checkpointEvery: 16 }));
    await writeScenario(store, 12);
    await store.checkpoint();
    await store.close();
    writeFileSync(trustFile, JSON.stringify(scenarioTrustRoots()));
  });
  afterAll(() => t.cleanup());

  it("verify and replay exit 0 on a good log, with plain and JSON output", async () => {
    let io = captureIo();
    expect(await runAudit(["verify", "--db", db, "--trust", trustFile], io)).toBe(0);
    expect(io.stdout()).toContain("verify: OK");
    io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--json"], io)).toBe(0);
    const rep = JSON.parse(io.stdout()) as { ok: boolean; decisionsRederived: number };
    expect(rep).toMatchObject({ ok: true, decisionsRederived: 12 });
    // Worker threads give the same report.
    io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--json", "--workers", "1"], io)).toBe(0);
    expect(JSON.parse(io.stdout())).toEqual(rep);
  });

  it("prove prints a bundle a third party verifies with only the gateway key", async () => {
    const io = captureIo();
    expect(await runAudit(["prove", "--db", db, "--seq", "9"], io)).toBe(0);
    const bundle = JSON.parse(io.stdout()) as Record<string, unknown>;
    expect(verifyProofBundle(bundle, [GATEWAY_KEY.keyId])).toEqual({ ok: true });
    expect(verifyProofBundle(bundle, [ROGUE_KEY.keyId])).toEqual({ ok: false, reason: "CHECKPOINT_SIGNATURE" });
    const edited = { ...bundle, record: (bundle["record"] as string).replace('"seq":9', '"seq":8') };
    expect(verifyProofBundle(edited, [GATEWAY_KEY.keyId]).ok).toBe(false);
    expect(verifyProofBundle({ ...bundle, seq: 10 }, [GATEWAY_KEY.keyId])).toEqual({ ok: false, reason: "PROOF" });
    expect(verifyProofBundle("garbage", [GATEWAY_KEY.keyId])).toEqual({ ok: false, reason: "MALFORMED" });
  });

  it("checkpoints lists signed checkpoints and flags a wrong key", async () => {
    let io = captureIo();
    expect(await runAudit(["checkpoints", "--db", db, "--gateway-key", GATEWAY_KEY.keyId], io)).toBe(0);
    expect(io.stdout()).toMatch(/seq 16 size 16 root \S+ time \d+ origin gw-test sig OK/);
    io = captureIo();
    expect(await runAudit(["checkpoints", "--db", db, "--gateway-key", ROGUE_KEY.keyId], io)).toBe(1);
  });

  it("exit 2 on usage and I/O errors", async () => {
    expect(await runAudit(["verify"], captureIo())).toBe(2); // no --db
    expect(await runAudit(["frobnicate", "--db", db], captureIo())).toBe(2);
    const io = captureIo();
    expect(await runAudit(["verify", "--db", db], io)).toBe(2); // no trust roots
    expect(io.stderr()).toContain("trust roots required");
    expect(await runAudit(["verify", "--db", join(t.dir, "missing"), "--trust", trustFile], captureIo())).toBe(2);
    expect(await runAudit(["prove", "--db", db, "--seq", "-1"], captureIo())).toBe(2);
    for (const w of ["x", "-1", "1.5", "100"]) expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--workers", w], captureIo()), w).toBe(2);
    expect(await runAudit(["prove", "--db", db, "--seq", "100000"], captureIo())).toBe(2);
  });

  it("exit 2 with AUDIT_FORMAT on a log in a layout this version does not read", async () => {
    const old = join(t.dir, "old-layout");
    const backend = await LevelBackend.open(old);
    await backend.batch(
      [
        { type: "put", key: "r/00000000000000", value: new TextEncoder().encode("{}") },
        { type: "put", key: "m/head", value: new TextEncoder().encode('{"last":"x","size":1}') },
      ],
      { sync: true },
    );
    await backend.close();
    for (const argv of [
      ["verify", "--db", old, "--trust", trustFile],
      ["prove", "--db", old, "--seq", "0"],
      ["checkpoints", "--db", old],
    ]) {
      const io = captureIo();
      expect(await runAudit(argv, io), argv[0]).toBe(2);
      expect(io.stderr()).toContain("AUDIT_FORMAT");
    }
  });

  it("exit 1 with the seq when the log was tampered with", async () => {
    const backend = await LevelBackend.open(db);
    await flipBit(backend, 7, 60);
    await backend.close();
    const io = captureIo();
    expect(await runAudit(["verify", "--db", db, "--trust", trustFile], io)).toBe(1);
    expect(io.stdout()).toContain("verify: DIVERGENCE");
    expect(io.stdout()).toMatch(/^seq 7: /m);
  });
});
