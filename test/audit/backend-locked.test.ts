// Found by review (a user's journey through the API): a second runtime on a data directory in use
// failed with BACKEND_IO, the code of a failing disk. A directory another open holds is now its
// own code, so a caller can tell "in use" from "broken".
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { BackendError, LevelBackend } from "../../src/audit/backend.ts";

it("opening a LevelDB directory another open holds fails with BackendError BACKEND_LOCKED; once it is closed, it opens", async () => {
  const dir = await mkdtemp(join(tmpdir(), "failclosed-locked-"));
  try {
    const first = await LevelBackend.open(dir);
    const e = await LevelBackend.open(dir).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(BackendError);
    expect(e).toMatchObject({ code: "BACKEND_LOCKED" });
    expect((e as Error).message).toMatch(/^BACKEND_LOCKED: LevelDB at .* is in use/);
    await first.close();
    const again = await LevelBackend.open(dir);
    await again.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it("a missing log, opened read-only, is BACKEND_MISSING and leaves nothing behind (LevelDB made the directory, its LOCK and LOG); a data dir given for its log says where the log is", async () => {
  const dir = await mkdtemp(join(tmpdir(), "failclosed-locked-"));
  try {
    const fail = (p: string, createIfMissing: boolean): Promise<unknown> => LevelBackend.open(p, { createIfMissing }).then(async (b) => (await b.close(), undefined), (x: unknown) => x);
    expect(await fail(join(dir, "missing"), false)).toMatchObject({ name: "BackendError", code: "BACKEND_MISSING" });
    expect(existsSync(join(dir, "missing"))).toBe(false);
    // A gateway's data dir: its log is in audit/.
    await (await LevelBackend.open(join(dir, "gw", "audit"))).close();
    const e = await fail(join(dir, "gw"), false);
    expect(e).toMatchObject({ code: "BACKEND_MISSING" });
    expect(String((e as Error).message)).toContain(join(dir, "gw", "audit"));
    expect(readdirSync(join(dir, "gw"))).toEqual(["audit"]);
    // A path that cannot be a LevelDB directory at all (a file) is BACKEND_IO.
    writeFileSync(join(dir, "file"), "x");
    expect(await fail(join(dir, "file"), true)).toMatchObject({ name: "BackendError", code: "BACKEND_IO" });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
