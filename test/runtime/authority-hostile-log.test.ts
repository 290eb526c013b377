// Hostile bytes in an authority's --revocation-log file (truncated, edited, duplicate keys, another
// key's revocations) and a revocation handed to publishRevocation that its key did not sign. The
// authority must refuse a log it cannot trust before it publishes anything, restore only what its
// key signed, and never let one bad revocation break its log.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { artifactId, revoke } from "../../src/core/artifacts.ts";
import type { SignedRevocation } from "../../src/core/types.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot } from "../gateway/client-support.ts";
import { authorityKey, expectValidTaskRuns, heldOn, rogue, sleep, worldPerTest } from "./authority-hostile-support.ts";

const world = worldPerTest();
const revocationOf = (name: string): SignedRevocation => revoke(authorityKey, { type: "key", keyId: namedKey(name).keyId }, `revoked ${name}`, Date.now());

describe("a hostile revocation log", () => {
  it("truncated, edited, duplicate keys, another key's revocation, not an array: refused at connect, before anything is published", async () => {
    const w = await world();
    const a = revocationOf("agent-5");
    const good = JSON.stringify([a], null, 1);
    const cases: [string, string][] = [
      ["truncated", good.slice(0, good.length - 7)],
      ["empty", ""],
      ["edited target", good.replace(a.payload.target.type === "key" ? a.payload.target.keyId : "", namedKey("agent-6").keyId)],
      ["edited signature", good.replace(a.sig, `${a.sig.slice(0, -4)}AAAA`)],
      ["duplicate keys", good.replace('"sig"', `"sig": "${a.sig}",\n  "sig"`)],
      ["another key's revocation", JSON.stringify([revoke(rogue, { type: "key", keyId: namedKey("agent-5").keyId }, "x", Date.now())])],
      ["not an array", JSON.stringify(a)],
      ["an extra member", JSON.stringify([{ ...a, extra: 1 }])],
    ];
    await w.h.authority.close();
    for (const [what, text] of cases) {
      const path = join(w.h.dir, `log-${what.replace(/\W/g, "-")}.json`);
      await writeFile(path, text);
      await expect(Authority.connect({ natsUrl: w.h.url, key: authorityKey, revocationLog: path }), what).rejects.toBeInstanceOf(TypeError);
    }
    expect(await heldOn(w, SUBJECTS.revocation)).toBe(0);
  });

  it("duplicates of its own revocations in the log: restored once each, counted once", async () => {
    const w = await world();
    const a = revocationOf("agent-5");
    const b = revocationOf("agent-6");
    const b2 = revoke(authorityKey, b.payload.target, "again, another reason", Date.now() + 1);
    const path = join(w.h.dir, "revocations.json");
    await writeFile(path, JSON.stringify([a, a, b, b2]));
    await w.h.authority.close();
    const again = await Authority.connect({ natsUrl: w.h.url, key: authorityKey, revocationLog: path });
    try {
      expect(again.revocationsPublished).toBe(2);
      // (Each entry the feed lacked at start is published: duplicates too, which gateways count once.)
      expect(await heldOn(w, SUBJECTS.revocation)).toBeGreaterThanOrEqual(2);
      await again.publishPolicy(DEFAULT_POLICY); // (in force already: nothing written)
      await again.startHeartbeats(200);
      await sleep(300);
      await expectValidTaskRuns({ ...w, h: { ...w.h, authority: again } }, "after the restore");
    } finally {
      await again.close();
    }
  });

  it("a revocation naming its key that its key did not sign, handed to publishRevocation: refused, and the log and later revocations are unharmed", async () => {
    const w = await world();
    const path = join(w.h.dir, "revocations.json");
    await w.h.authority.close();
    const a = await Authority.connect({ natsUrl: w.h.url, key: authorityKey, revocationLog: path });
    try {
      await a.publishPolicy(DEFAULT_POLICY);
      await a.startHeartbeats(200);
      const real = revocationOf("agent-5");
      // An edited revocation file (failclosed revoke --out), read by code that calls publishRevocation.
      const forged: SignedRevocation = { ...real, sig: `${real.sig.slice(0, -4)}AAAA` };
      const outcome = await a.publishRevocation(forged).then(
        () => "published",
        (e: unknown) => (e instanceof TypeError ? "refused" : String(e)),
      );
      expect(outcome).toBe("refused");
      expect(await heldOn(w, SUBJECTS.revocation)).toBe(0);
      // The log holds only what its key signed: a later revocation is kept, and the log reopens.
      const t = newTaskId();
      const artifact = await grantRoot({ ...w.h, authority: a }, t);
      await a.revoke({ type: "artifact", id: artifactId(artifact) }, "leaked");
      expect(a.revocationsPublished).toBe(1);
      expect((JSON.parse(await readFile(path, "utf8")) as unknown[]).length).toBe(1);
    } finally {
      await a.close();
    }
    const reopened = await Authority.connect({ natsUrl: w.h.url, key: authorityKey, revocationLog: path });
    try {
      await reopened.publishPolicy(DEFAULT_POLICY);
      await reopened.startHeartbeats(200);
      await sleep(300);
      await expectValidTaskRuns({ ...w, h: { ...w.h, authority: reopened } }, "after the reopen");
    } finally {
      await reopened.close();
    }
  });
});
