// The subtree hashes stored beside each record (proofs are served from them, new ones built on
// them) are checked against the records: by replay (TREE_NODE_MISMATCH at the record that
// stores the node), by the store when it opens (AUDIT_CORRUPT rather than signing checkpoints
// over a wrong root), and by `audit prove` before it prints a proof.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LevelBackend, type AuditBackend } from "../../src/audit/backend.ts";
import { runAudit } from "../../src/audit/cli.ts";
import { bundleCount, slotBytes } from "../../src/audit/entry-bundle.ts";
import { BUNDLE_SIZE, bundleKeyFor } from "../../src/audit/keys.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { MerkleFrontier } from "../../src/audit/merkle.ts";
import { verifyProofBundle } from "../../src/audit/proof-bundle.ts";
import { replay } from "../../src/audit/replay.ts";
import { recordLeafHash } from "../../src/audit/records.ts";
import { AuditStore } from "../../src/audit/store.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { captureIo, evidenceEntry, GATEWAY_KEY, outcomeEntry, storeOptions, tempDir } from "./support.ts";


/** Flip one bit of the stored tree node (level, index) — not of any record. */
async function flipNode(backend: AuditBackend, level: number, index: number): Promise<void> {
  const seq = (index + 1) * 2 ** level - 1;
  const key = bundleKeyFor(seq);
  const copy = new Uint8Array((await backend.get(key))!);
  const slot = slotBytes(copy, bundleCount(copy)!, seq % BUNDLE_SIZE)!;
  const at = slot.byteOffset - copy.byteOffset + 1 + 32 * level;
  copy[at] = copy[at]! ^ 1;
  await backend.batch([{ type: "put", key, value: copy }], { sync: true });
}

/** The true root over the stored records (recomputed from the record bytes only). */
async function trueRoot(backend: AuditBackend): Promise<string> {
  const f = new MerkleFrontier();
  for await (const { bytes } of backendLogSource(backend).records()) f.append(recordLeafHash(bytes));
  return toB64u(f.root());
}

describe("stored interior Merkle nodes", () => {
  const t = tempDir("fc-nodes-");
  afterAll(() => t.cleanup());

  const build = async (name: string): Promise<string> => {
    const db = join(t.dir, name);
    const store = await AuditStore.open(db, storeOptions({ checkpointEvery: 16 }));
    for (let i = 0; i < 40; i++) await store.append(evidenceEntry(`task-${i}`));
    await store.close();
    return db;
  };

  it("a flipped interior node is reported by audit verify (and prove does not print a proof that cannot verify)", async () => {
    const db = await build("a");
    let b = await LevelBackend.open(db);
    await flipNode(b, 1, 0); // node over records 0 and 1
    const rep = await replay(backendLogSource(b), { gatewayKeys: [GATEWAY_KEY.keyId] });
    await b.close();
    // Replay "re-verifies ... the Merkle tree": the stored tree now contradicts the records.
    const io = captureIo();
    const verifyExit = await runAudit(["verify", "--db", db, "--gateway-key", GATEWAY_KEY.keyId, "--trust-log-authorities"], io);
    const pio = captureIo();
    const proveExit = await runAudit(["prove", "--db", db, "--seq", "2"], pio);
    const bundleOk = proveExit === 0 ? verifyProofBundle(JSON.parse(pio.stdout()), [GATEWAY_KEY.keyId]).ok : undefined;
    b = await LevelBackend.open(db);
    await b.close();
    // Replay names the record whose slot stores the node; verify exits 1; prove refuses (exit 1).
    expect(rep.ok).toBe(false);
    expect(rep.divergences.map((d) => [d.seq, d.kind])).toEqual([[1, "TREE_NODE_MISMATCH"]]);
    expect(verifyExit).toBe(1);
    expect(proveExit).toBe(1);
    expect(bundleOk).toBeUndefined();
  });

  it("the store refuses to open on a flipped frontier peak instead of signing checkpoints over a wrong root", async () => {
    const db = await build("b");
    let b = await LevelBackend.open(db);
    await flipNode(b, 5, 0); // frontier peak over records [0, 32)
    await b.close();
    let opened: AuditStore | undefined;
    let openError: unknown;
    try {
      opened = await AuditStore.open(db, storeOptions({ checkpointEvery: 16 }));
    } catch (e) {
      openError = e;
    }
    let signedRoot: string | undefined;
    let actualRoot: string | undefined;
    if (opened !== undefined) {
      await opened.append(outcomeEntry(99));
      const cp = await opened.checkpoint();
      signedRoot = cp?.payload.root;
      await opened.close();
      b = await LevelBackend.open(db);
      // the root of the records the checkpoint covers (all but the checkpoint itself)
      const f = new MerkleFrontier();
      let n = 0;
      for await (const { bytes } of backendLogSource(b).records()) if (n++ < cp!.payload.size) f.append(recordLeafHash(bytes));
      actualRoot = toB64u(f.root());
      await b.close();
    }
    // Either open refuses (AUDIT_CORRUPT) or, at the very least, what it signs is the log's real root.
    expect({ refused: openError !== undefined, signedRootIsTrue: signedRoot === actualRoot }).toEqual({ refused: true, signedRootIsTrue: true });
  });

  it("trueRoot helper sanity", async () => {
    const db = await build("c");
    const b = await LevelBackend.open(db);
    const s = await AuditStore.open(b, storeOptions({ checkpointEvery: 16 }));
    expect(await trueRoot(b)).toBe(s.root());
    await s.close();
  });
});
