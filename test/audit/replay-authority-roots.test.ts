// Trust records are the gateway's own and unsigned: an operator can append `authority.add <its
// own key>`, issue itself a root artifact and an origin lineage, and the allow re-derives
// perfectly. So the auditor names the authorities: `audit replay`/`verify` refuse to run
// without them (exit 2) unless told to take them from the log (--trust-log-authorities, with a
// warning), and the report says whether they were pinned. Gateway keys the log adds (the
// signers decide accepts for spawn lineage) are held to the checkpoint keys and the named peers.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { writeTrustSetup } from "./scenario.ts";
import { T0, artifact, runTask } from "./operator.ts";
import { AUTHORITY_KEY, GATEWAY_KEY, ROGUE_KEY, captureIo, seededKey, storeOptions, tempDir } from "./support.ts";

const PEER_KEY = seededKey(41);
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A log whose operator trusts itself as an authority (and, with `rogueGateway`, a gateway key of its own). */
async function forgedLog(o: { rogueAuthority?: boolean; rogueGateway?: boolean; peer?: boolean } = {}): Promise<{ db: string; dir: string; allowSeq: number; addSeq: number }> {
  const t = tempDir("fc-auth-roots-");
  cleanups.push(t.cleanup);
  const db = join(t.dir, "db");
  const store = await AuditStore.open(await LevelBackend.open(db), storeOptions({ origin: "gw-test", checkpointEvery: 4 }));
  try {
    await writeTrustSetup(store, true);
    if (o.peer === true) await store.append({ type: "trust", change: { op: "gateway.add", keyId: PEER_KEY.keyId } });
    let { seq: allowSeq } = await runTask(store, "t-honest", artifact({ nonce: "honest", now: T0 }), { now: T0 });
    let addSeq = -1;
    if (o.rogueGateway === true) addSeq = (await store.append({ type: "trust", change: { op: "gateway.add", keyId: ROGUE_KEY.keyId } })).seq;
    if (o.rogueAuthority === true) {
      // The operator trusts itself as a policy authority: one unsigned trust record.
      addSeq = (await store.append({ type: "trust", change: { op: "authority.add", keyId: ROGUE_KEY.keyId } })).seq;
      const rogueArt = artifact({ nonce: "rogue", now: T0, issuer: ROGUE_KEY });
      const r = await runTask(store, "t-rogue", rogueArt, { now: T0 + 1, lineageSigner: ROGUE_KEY });
      expect(r.decision.verdict).toBe("allow");
      allowSeq = r.seq;
    }
    await store.checkpoint();
    return { db, dir: t.dir, allowSeq, addSeq };
  } finally {
    await store.close();
  }
}

describe("audit replay and verify: authority roots", () => {
  it("refuse to run without authority roots (exit 2), as the README's `--gateway-key` alone used to", async () => {
    const { db } = await forgedLog({ rogueAuthority: true });
    for (const cmd of ["replay", "verify"]) {
      const io = captureIo();
      expect(await runAudit([cmd, "--db", db, "--gateway-key", GATEWAY_KEY.keyId], io), cmd).toBe(2);
      expect(io.stderr()).toMatch(/authority roots required: --authority KEYID/);
      expect(io.stdout()).toBe("");
    }
  });

  it("with --authority, an authority the log adds for itself is UNTRUSTED_AUTHORITY (exit 1)", async () => {
    const { db, addSeq } = await forgedLog({ rogueAuthority: true });
    const io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--workers", "0", "--json"], io)).toBe(1);
    const rep = JSON.parse(io.stdout()) as { authoritiesPinned: boolean; divergences: { seq: number; kind: string }[] };
    expect(rep.authoritiesPinned).toBe(true);
    expect(rep.divergences).toContainEqual({ seq: addSeq, kind: "UNTRUSTED_AUTHORITY", detail: `authority ${ROGUE_KEY.keyId} is not in the trust roots` });
    // verify checks the trust records too.
    expect(await runAudit(["verify", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId], captureIo())).toBe(1);
  });

  it("the same authorities from a --trust file; --authority adds to them", async () => {
    const { db, dir } = await forgedLog({ rogueAuthority: true });
    const trust = join(dir, "trust.json");
    writeFileSync(trust, JSON.stringify({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], origin: "gw-test" }));
    let io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--trust", trust, "--workers", "0"], io)).toBe(1);
    expect(io.stdout()).toMatch(/UNTRUSTED_AUTHORITY/);
    expect(io.stdout()).toContain("authorities: pinned by the trust roots");
    io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--trust", trust, "--authority", ROGUE_KEY.keyId, "--workers", "0"], io)).toBe(0);
  });

  it("--trust-log-authorities runs, says so on stderr and in the report, and reports no authority", async () => {
    const { db } = await forgedLog({ rogueAuthority: true });
    const io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--trust-log-authorities", "--workers", "0", "--json"], io)).toBe(0);
    expect(io.stderr()).toContain("warning: authorities taken from the log (--trust-log-authorities)");
    expect(JSON.parse(io.stdout())).toMatchObject({ ok: true, authoritiesPinned: false });
    const text = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--trust-log-authorities", "--workers", "0"], text)).toBe(0);
    expect(text.stdout()).toContain("authorities: taken from the log (not pinned)");
  });

  it("usage errors: --trust-log-authorities with authorities given, a key id that is not a key", async () => {
    const { db } = await forgedLog();
    let io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--trust-log-authorities"], io)).toBe(2);
    expect(io.stderr()).toContain("--trust-log-authorities contradicts");
    io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", "not-a-key"], io)).toBe(2);
    expect(io.stderr()).toContain('--authority "not-a-key" is not a base64url Ed25519 public key');
    io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--peer-gateway", "x"], io)).toBe(2);
  });

  it("the library reports whether authorities and gateway keys were pinned", async () => {
    const { db } = await forgedLog({ rogueAuthority: true });
    const b = await LevelBackend.open(db, { createIfMissing: false });
    try {
      const open = await replay(backendLogSource(b), { gatewayKeys: [GATEWAY_KEY.keyId] });
      expect(open).toMatchObject({ ok: true, authoritiesPinned: false, gatewaysPinned: false });
      const pinned = await replay(backendLogSource(b), { gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], peerGateways: [] });
      expect(pinned).toMatchObject({ ok: false, authoritiesPinned: true, gatewaysPinned: true });
    } finally {
      await b.close();
    }
  });
});

describe("audit replay: gateway keys the log adds", () => {
  it("a gateway key that is neither a checkpoint key nor a named peer is UNTRUSTED_GATEWAY", async () => {
    const { db, addSeq } = await forgedLog({ rogueGateway: true });
    const io = captureIo();
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--workers", "0", "--json"], io)).toBe(1);
    const rep = JSON.parse(io.stdout()) as { gatewaysPinned: boolean; divergences: { seq: number; kind: string }[] };
    expect(rep.gatewaysPinned).toBe(true);
    expect(rep.divergences.map((d) => `${d.seq}:${d.kind}`)).toEqual([`${addSeq}:UNTRUSTED_GATEWAY`]);
  });

  it("a peer the auditor names (--peer-gateway, or peerGateways in --trust) is accepted", async () => {
    const { db, dir } = await forgedLog({ peer: true });
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--workers", "0"], captureIo())).toBe(1);
    expect(await runAudit(["replay", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--authority", AUTHORITY_KEY.keyId, "--peer-gateway", PEER_KEY.keyId, "--workers", "0"], captureIo())).toBe(0);
    const trust = join(dir, "trust.json");
    writeFileSync(trust, JSON.stringify({ gatewayKeys: [GATEWAY_KEY.keyId], authorities: [AUTHORITY_KEY.keyId], peerGateways: [PEER_KEY.keyId] }));
    expect(await runAudit(["verify", "--db", db, "--trust", trust], captureIo())).toBe(0);
  });
});
